// mmb: one binary, subcommands dispatched from the table below.
//   mmb <command> [<subcommand>] [flags] [--config FILE.toml]
// Library errors (mmb::Error) are caught here, printed as "error: ..." and exit with status 1.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "common.h"
#include "mmb/error.h"
#include "mmb/version.h"

namespace {

struct Command {
  const char* name;
  const char* group;  // heading in `mmb --help`
  const char* description;
  void (*setup)(CLI::App&);
};

// The dispatch table: one row per subcommand, in the order `mmb --help` lists them.
const Command kCommands[] = {
    {"info", "Inspect", "Machine, build, thread policy and library versions", mmb::app::setup_info},
    {"world", "Data", "Generate, inspect and verify the built-in procedural world", mmb::app::setup_world},
    {"tokenizer", "Data", "Train a SentencePiece tokenizer; encode and decode text", mmb::app::setup_tokenizer},
    {"model", "Model", "Inspect a model directory; create a freshly initialised one", mmb::app::setup_model},
    {"generate", "Model", "Answer a prompt about an image (sampling, beams, per-token log-probs)",
     mmb::app::setup_generate},
    {"score", "Model", "Teacher-forced per-token log-probs and entropies of a response", mmb::app::setup_score},
    {"eval", "Measure", "Evaluation suite: POPE, CHAIR, multiple choice with confidence, IDK, reasoning steps",
     mmb::app::setup_eval},
    {"calibrate", "Measure", "Temperature scaling: fit confidence temperatures, store them with the model",
     mmb::app::setup_calibrate},
    {"prompt-search", "Measure",
     "Iterative prompt optimisation (the calibration study): paraphrase, score by accuracy and ECE, keep the best",
     mmb::app::setup_prompt_search},
    {"metrics", "Measure", "Calibration metrics (ECE, AUROC, AURC, ...) of any model's predictions (JSONL)",
     mmb::app::setup_metrics},
    {"report", "Measure", "One HTML page of run directories: metrics, reliability and risk-coverage charts, examples",
     mmb::app::setup_report},
    {"prefs", "Train",
     "Preference data: CSR, verifier-corrected and BPO pairs; the quality of a pair file, by the verifier",
     mmb::app::setup_prefs},
    {"boundary", "Train",
     "MMBoundary: step signals with their truth, confidence.json, verbal-confidence SFT data",
     mmb::app::setup_boundary},
    {"train", "Train", "Train CLIP and the VLM (SFT, DPO); the default base recipe", mmb::app::setup_train},
    {"align", "Train", "Rounds of preference pairs -> DPO -> evaluation with any builder, or online DPO",
     mmb::app::setup_align},
};

std::string subcommand_names(const std::vector<CLI::App*>& subs) {
  std::string out;
  for (const CLI::App* s : subs) out += (out.empty() ? "" : ", ") + s->get_name();
  return out;
}

// CLI11 takes a word it does not know where a subcommand is expected for an extra argument ("A
// subcommand is required"), and `--help` after it prints the parent's help and succeeds. Walk the
// words before the first flag down the command tree instead: an unknown word is an error that
// names it and lists the real choices, with or without --help; a command that needs a subcommand
// and has none says which it has. Returns the message, or "" when the words are fine.
std::string check_command_words(CLI::App& app, int argc, char** argv) {
  CLI::App* cur = &app;
  std::string path = "mmb";
  int i = 1;
  for (; i < argc; ++i) {
    const std::string word = argv[i];
    if (!word.empty() && word[0] == '-') break;
    const auto subs = cur->get_subcommands([](CLI::App*) { return true; });
    if (subs.empty()) break;  // a leaf command: the rest are its arguments
    CLI::App* next = nullptr;
    for (CLI::App* s : subs)
      if (s->check_name(word)) next = s;
    if (!next) return "unknown command '" + path + " " + word + "' (" + path + " has: " + subcommand_names(subs) + ")";
    cur = next;
    path += " " + word;
  }
  // Only when nothing follows: "mmb --config F.toml train ..." puts a flag before the command.
  const auto subs = cur->get_subcommands([](CLI::App*) { return true; });
  if (i == argc && !subs.empty() && cur->get_require_subcommand_min() > 0)
    return "'" + path + "' needs a command: " + subcommand_names(subs) + " (see " + path + " --help)";
  return "";
}

// CLI11 writes a negated flag ("!--no-progress", or "--freeze-vision,!--train-vision") with the
// value it stores, "--no-progress{false}"; a flag takes no value on the command line, so its
// name is shown without one.
class MmbFormatter : public CLI::Formatter {
 public:
  std::string make_option_name(const CLI::Option* opt, bool is_positional) const override {
    std::string name = CLI::Formatter::make_option_name(opt, is_positional);
    for (size_t open; (open = name.find('{')) != std::string::npos;) {
      const size_t close = name.find('}', open);
      if (close == std::string::npos) break;
      name.erase(open, close - open + 1);
    }
    return name;
  }
};

}  // namespace

int main(int argc, char** argv) {
  mmb::app::set_command_line(argc, argv);
  CLI::App app{"mmb: teach vision-language models where their knowledge ends"};
  app.set_version_flag("--version",
                       std::string("mmb ") + mmb::version() + " (commit " + mmb::git_commit() + ")");
  app.require_subcommand(1);
  app.formatter(std::make_shared<MmbFormatter>());
  app.get_formatter()->column_width(34);
  mmb::app::install_toml_config(app);
  for (const Command& c : kCommands) {
    CLI::App* cmd = app.add_subcommand(c.name, c.description);
    cmd->group(c.group);
    c.setup(*cmd);
  }
  if (const std::string problem = check_command_words(app, argc, argv); !problem.empty()) {
    std::cerr << "error: " << problem << "\n";
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ConfigError& e) {
    // CLI11 words unknown keys as "INI was not able to parse <path.key>"; say what it is.
    std::string msg = e.what();
    const std::string ini = "INI was not able to parse ";
    if (msg.rfind(ini, 0) == 0) msg = "unknown key '" + msg.substr(ini.size()) + "' (keys are flag names)";
    std::cerr << "error: config: " << msg << "\n";
    return 2;
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const mmb::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
