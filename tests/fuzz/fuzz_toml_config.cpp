// A --config FILE.toml as every mmb command reads it (app/common.cpp's TOML reader behind CLI11),
// on a command with flags of each type.
#include <CLI/CLI.hpp>

#include "../../app/common.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmb;
  const std::string path = fuzz::write_scratch("config.toml", fuzz::bytes_of(data, size));
  CLI::App app("fuzz");
  app::install_toml_config(app);
  CLI::App* train = app.add_subcommand("train");
  CLI::App* base = train->add_subcommand("base");
  int steps = 10;
  double lr = 1e-3;
  std::string out = "runs";
  std::vector<std::string> tasks;
  bool freeze = false;
  base->add_option("--steps", steps);
  base->add_option("--lr", lr);
  base->add_option("--out", out);
  base->add_option("--tasks", tasks);
  base->add_flag("--freeze", freeze);
  std::vector<std::string> args = {"fuzz", "train", "base", "--config", path};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  try {
    app.parse(int(argv.size()), argv.data());
  } catch (const CLI::Error&) {  // CLI11's own error type: printed as a usage error by mmb
  }
  return 0;
}
