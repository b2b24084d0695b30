// Shared pieces of the `mmb` command: options every subcommand can take, the TOML config
// reader, and the run-directory wrapper. Subcommand files (cmd_<name>.cpp) stay thin: parse flags
// into an options struct, call the library, print a summary.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "mmb/json.h"
#include "mmb/run_dir.h"
#include "mmb/train.h"

namespace mmb {
struct DpoRunOptions;
struct PairBuildReport;
struct PromptShard;
}

namespace mmb::app {

// Options shared by every subcommand. Not every command uses `out`.
struct CommonOptions {
  std::string config_file;  // --config FILE.toml: keys are flag names; flags override the file
  int threads = 0;          // --threads N: 0 = the cores not busy now, with the measured policy
  uint64_t seed = 1234;     // --seed S: applied to every RNG
  std::string out;          // --out DIR: run directory for commands that write results
};

// Adds --config, --threads, --seed (and --out when `with_out`) to `cmd`, in a "Common" group.
void add_common_options(CLI::App& cmd, CommonOptions& opts, bool with_out);

// Puts usage examples (lines ending in '\n') in `cmd`'s --help footer, above the config note that
// add_common_options writes; call after it. A command without common options gets the examples only.
void add_examples(CLI::App& cmd, const std::string& examples);

// Applies threads and seed (prints the seed to stderr). Call at the start of every callback.
void apply_common_options(const CommonOptions& opts);

// Opens the run directory for `cmd` if --out was given: manifest.json gets the command line and
// the resolved config (every option of `cmd`, flags merged over the config file).
std::unique_ptr<RunDir> open_run_dir(const CLI::App& cmd, const CommonOptions& opts);

// Prints a training run's last step: "step N  loss L  lr R  grad_norm G  <extra keys>".
void print_step_stats(const StepStats& s);

// The loss, online-DPO and training flags of `mmb train dpo` (groups "Loss", "Online DPO",
// "Training"), shared with `mmb align`. The model, data and world flags are each command's own.
void add_dpo_options(CLI::App& cmd, DpoRunOptions& o);

// A preference builder run by `mmb prefs`: one process calls `build` as it is. Under torchrun
// (WORLD_SIZE > 1) each rank sets `shard` to its slice of the prompts and writes its pairs to
// <out>.shard<rank>; after all ranks are done rank 0 joins the slices, in rank order, into `out`
// and removes them. Only rank 0 shows `progress`. Returns every rank's totals on rank 0 (the
// rank's own elsewhere).
PairBuildReport run_sharded_build(std::string& out, PromptShard& shard, bool& progress,
                                  const std::function<PairBuildReport()>& build);

// Installs the TOML config reader (toml++) on the root app; see common.cpp.
void install_toml_config(CLI::App& app);

// The command line as given, for manifests (set by main()).
const std::vector<std::string>& command_line();
void set_command_line(int argc, char** argv);

// Every option of `cmd` (and its parents' options) as JSON: the resolved config.
Json resolved_config(const CLI::App& cmd);

}  // namespace mmb::app
