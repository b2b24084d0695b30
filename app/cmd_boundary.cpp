// mmb boundary: MMBoundary's step confidence on a world. `signals` answers a split and writes each
// step's four signals with the verifier's truth (and their AUROCs); `fit` turns a step file into
// confidence.json (normalisation, fusion, level cuts); `sft-data` writes the verbal-confidence SFT
// warm-up data (docs/boundary.md).
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "mmb/boundary.h"
#include "mmb/error.h"

namespace mmb::app {
namespace {

struct AnswerCmd {
  CommonOptions common;
  BoundaryAnswerOptions o;
  std::string steps_out, confidence, phrases, out;
  bool quiet = false;
};

struct FitCmd {
  CommonOptions common;
  std::string steps, out, test_steps;
  std::vector<std::string> without;
  ConfidenceFitOptions o;
};

void add_answer_options(CLI::App& cmd, AnswerCmd& c, const char* default_split) {
  auto& o = c.o;
  o.split = default_split;
  cmd.add_option("--model", o.model_dir, "The VLM that answers (its log-probs and entropies are the signals)")
      ->required();
  cmd.add_option("--clip", o.clip_dir, "CLIP model directory (TokenSAR's similarity, CLIPScore)")->required();
  cmd.add_option("--world", o.world_dir, "World directory")->required();
  cmd.add_option("--split", o.split, "World split")->capture_default_str();
  cmd.add_option("--tasks", o.tasks, "reasoning, description")->delimiter(',')->capture_default_str();
  cmd.add_option("--limit", o.limit, "Questions per task, the first of the split (-1: all)")->capture_default_str();
  cmd.add_option("--batch", o.batch_size, "Prompts per generation batch")->capture_default_str();
  cmd.add_option("--max-new-tokens", o.max_new_tokens, "Longest answer")->capture_default_str();
  cmd.add_option("--prompt-suffix", o.prompt_suffix, "Text appended to every question");
  cmd.add_flag("--quiet", c.quiet, "No progress line");
}

void print_report(const Json& r) {
  auto line = [](const std::string& name, const Json& s) {
    std::printf("%-12s steps %6lld  accuracy %.3f  AUROC", name.c_str(), static_cast<long long>(s["steps"].get<int64_t>()),
                s["accuracy"].get<double>());
    if (s.contains("level_ece") && s["level_ece"].is_number()) std::printf("  level ECE %.3f", s["level_ece"].get<double>());
    for (auto& [k, v] : s["auroc"].items()) {
      if (v.is_null())
        std::printf("  %s -", k.c_str());
      else
        std::printf("  %s %.3f", k.c_str(), v.get<double>());
    }
    std::printf("\n");
  };
  line("all", r);
  for (auto& [task, s] : r["by_task"].items()) line(task, s);
}

void setup_signals(CLI::App& cmd) {
  auto c = std::make_shared<AnswerCmd>();
  add_common_options(cmd, c->common, /*with_out=*/false);
  add_examples(cmd,
               "mmb boundary signals --model models/base/vlm --clip models/base/clip --world runs/world --split val "
               "--steps runs/boundary/val_steps.jsonl\n");
  add_answer_options(cmd, *c, "test");
  cmd.add_option("--steps", c->steps_out, "Output: one JSON line per step")->required();
  cmd.add_option("--confidence", c->confidence, "confidence.json: adds each step's fused score and level");
  cmd.callback([c] {
    apply_common_options(c->common);
    c->o.progress = !c->quiet;
    std::unique_ptr<ConfidenceEstimator> est;
    if (!c->confidence.empty()) est = std::make_unique<ConfidenceEstimator>(ConfidenceEstimator::load(c->confidence));
    const auto answers = collect_boundary_answers(c->o);
    write_boundary_steps(c->steps_out, answers, est.get());
    const Json r = signal_report(read_boundary_steps(c->steps_out), est.get());
    print_report(r);
    write_json_file(c->steps_out + ".report.json", r);
    std::cerr << "wrote " << c->steps_out << " and " << c->steps_out << ".report.json\n";
  });
}

void setup_fit(CLI::App& cmd) {
  auto c = std::make_shared<FitCmd>();
  add_common_options(cmd, c->common, /*with_out=*/false);
  add_examples(cmd,
               "mmb boundary fit --steps runs/boundary/val_steps.jsonl --out runs/boundary/confidence.json\n"
               "mmb boundary fit --steps S --fusion logistic --out C   # beyond the paper\n"
               "mmb boundary fit --steps S --without tsar --out C      # the ablation without TokenSAR\n");
  cmd.add_option("--steps", c->steps, "Reference steps (mmb boundary signals --steps)")->required();
  cmd.add_option("--fusion", c->o.fusion, "mean (the paper) | max (its ablation) | logistic (fitted on step truth)")
      ->capture_default_str();
  cmd.add_option("--without", c->without, "Signals left out of the fusion: lnlp, mte, tsar, clips")->delimiter(',');
  cmd.add_option("--out", c->out, "Output: confidence.json (e.g. MODEL_DIR/confidence.json)")->required();
  cmd.add_option("--test-steps", c->test_steps, "Another step file to report the fitted estimator on (e.g. the test split)");
  cmd.callback([c] {
    apply_common_options(c->common);
    for (const auto& s : c->without) c->o.use[size_t(signal_index(s))] = false;
    const StepTable t = read_boundary_steps(c->steps);
    const ConfidenceEstimator e = fit_confidence(t.signals, t.correct, c->o);
    e.save(c->out);
    print_report(signal_report(t, &e));
    const auto cuts = e.cuts();
    std::printf("fused mean %.4f sd %.4f  level cuts %.4f %.4f %.4f %.4f\n", e.mu, e.sigma, cuts[0], cuts[1], cuts[2],
                cuts[3]);
    if (!c->test_steps.empty()) {
      const Json r = signal_report(read_boundary_steps(c->test_steps), &e);
      std::printf("%s:\n", c->test_steps.c_str());
      print_report(r);
      write_json_file(c->out + ".test_report.json", r);
    }
    std::cerr << "wrote " << c->out << "\n";
  });
}

void setup_sft_data(CLI::App& cmd) {
  auto c = std::make_shared<AnswerCmd>();
  add_common_options(cmd, c->common, /*with_out=*/false);
  add_examples(cmd,
               "mmb boundary sft-data --model models/base/vlm --clip models/base/clip --world runs/world "
               "--confidence runs/boundary/confidence.json --limit 2000 --out runs/boundary/sft.json\n"
               "mmb train sft --model models/base/vlm --data runs/boundary/sft.json --image-root runs/world ...\n");
  add_answer_options(cmd, *c, "train");
  cmd.add_option("--confidence", c->confidence, "confidence.json (mmb boundary fit)")->required();
  cmd.add_option("--phrases", c->phrases, "Phrase pools, JSON (default: the built-in data/confidence_phrases.json)");
  cmd.add_option("--out", c->out, "Output: LLaVA JSON of [z1 c1 ... zT cT] answers")->required();
  cmd.add_option("--steps", c->steps_out, "Also write the answers' steps (as mmb boundary signals)");
  cmd.callback([c] {
    apply_common_options(c->common);
    c->o.progress = !c->quiet;
    const auto est = ConfidenceEstimator::load(c->confidence);
    const ConfidencePhrases phrases =
        c->phrases.empty() ? ConfidencePhrases::builtin() : ConfidencePhrases::load(c->phrases);
    const auto answers = collect_boundary_answers(c->o);
    if (!c->steps_out.empty()) write_boundary_steps(c->steps_out, answers, &est);
    const Json records = boundary_sft_records(answers, est, phrases, c->common.seed);
    write_json_file(c->out, records, 0);
    std::vector<int64_t> per_level(5, 0);
    int64_t steps = 0;
    for (const auto& a : answers)
      for (const auto& s : a.steps) {
        ++per_level[size_t(est.level(est.fuse(s.signals)) - 1)];
        ++steps;
      }
    std::printf("records %zu  steps %lld  levels 1..5:", records.size(), static_cast<long long>(steps));
    for (auto n : per_level) std::printf(" %lld", static_cast<long long>(n));
    std::printf("\n");
    std::cerr << "wrote " << c->out << "\n";
  });
}

}  // namespace

void setup_boundary(CLI::App& cmd) {
  cmd.require_subcommand(1);
  setup_signals(*cmd.add_subcommand("signals", "Answer a split; each step's LNLP, MTE, TokenSAR, CLIPScore and truth"));
  setup_fit(*cmd.add_subcommand("fit", "confidence.json from reference steps: normalisation, fusion, level cuts"));
  setup_sft_data(*cmd.add_subcommand("sft-data", "Verbal-confidence SFT data: each step followed by its level's phrase"));
}

}  // namespace mmb::app
