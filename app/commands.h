// The subcommands of `mmb`. Each cmd_<name>.cpp defines one setup function that adds its flags,
// sub-subcommands and callback to the CLI11 app it is given. main.cpp lists them in a table.
#pragma once
#include <CLI/CLI.hpp>

namespace mmb::app {

void setup_info(CLI::App& cmd);
void setup_world(CLI::App& cmd);
void setup_tokenizer(CLI::App& cmd);
void setup_model(CLI::App& cmd);
void setup_generate(CLI::App& cmd);
void setup_score(CLI::App& cmd);
void setup_metrics(CLI::App& cmd);
void setup_eval(CLI::App& cmd);
void setup_report(CLI::App& cmd);
void setup_calibrate(CLI::App& cmd);
void setup_prompt_search(CLI::App& cmd);
void setup_prefs(CLI::App& cmd);
void setup_prefs_world(CLI::App& prefs);  // `mmb prefs corrected | bpo` (cmd_prefs_world.cpp)
void setup_boundary(CLI::App& cmd);
void setup_align(CLI::App& cmd);
void setup_train(CLI::App& cmd);
void setup_train_rl(CLI::App& cmd);  // `mmb train rl` (cmd_train_rl.cpp)

}  // namespace mmb::app
