// mmb info: what mmb runs on — build, machine, BLAS, thread policy, library versions.
// With --out, writes a run directory (manifest.json) so a run can be checked end to end.
#include <iostream>

#include <torch/torch.h>

#include "commands.h"
#include "common.h"
#include "mmb/run_dir.h"
#include "mmb/threads.h"
#include "mmb/version.h"

namespace mmb::app {
namespace {

struct InfoOptions {
  CommonOptions common;
  bool json = false;  // print JSON instead of text
};

Json collect_info() {
  Json j = machine_info();
  j["torch_version"] = TORCH_VERSION;
  j["threads"] = describe_threads();
  j["available_cores"] = available_cores();
  j["c10d_gloo"] =
#ifdef USE_C10D_GLOO
      true;
#else
      false;
#endif
  return j;
}

}  // namespace

void setup_info(CLI::App& cmd) {
  auto opts = std::make_shared<InfoOptions>();
  add_common_options(cmd, opts->common, /*with_out=*/true);
  cmd.add_flag("--json", opts->json, "Print JSON");
  cmd.callback([&cmd, opts] {
    apply_common_options(opts->common);
    auto run = open_run_dir(cmd, opts->common);
    Json info = collect_info();
    if (opts->json) {
      std::cout << info.dump(2) << "\n";
    } else {
      for (auto& [k, v] : info.items())
        std::cout << k << ": " << (v.is_string() ? v.get<std::string>() : v.dump()) << "\n";
    }
    if (run) {
      run->set_result("info", info);
      run->log_metrics({{"phase", "info"}});
      run->finish();
    }
  });
}

}  // namespace mmb::app
