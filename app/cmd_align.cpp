// mmb align: rounds of (build preference pairs -> DPO -> evaluate) with one of mmb's builders, or
// online DPO, resumable phase by phase (docs/prefs.md#mmb-align).
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "mmb/align.h"
#include "mmb/strings.h"

namespace mmb::app {
namespace {

struct AlignCmd {
  CommonOptions common;
  AlignOptions o;
  std::string corrected_tasks = "description,qa,pope:adversarial", bpo_tasks = "description",
              bdhs_tasks = "description,qa";
  std::string suite = "pope,chair,mc,reasoning";
  bool no_eval_start = false, quiet = false;
};

// One row per evaluated model: the alignment table.
void print_table(const Json& summary) {
  std::printf("%-8s %7s %22s %8s %8s %7s %7s %7s %7s\n", "round", "pairs", "POPE rnd/pop/adv", "CHAIR_s", "CHAIR_i",
              "recall", "MC", "steps", "answers");
  auto row = [](const std::string& name, const std::string& pairs, const Json& e) {
    auto v = [&](const char* k) { return e.contains(k) ? e[k].get<double>() : 0.0; };
    std::printf("%-8s %7s %6.3f/%6.3f/%6.3f %8.3f %8.3f %7.3f %7.3f %7.3f %7.3f\n", name.c_str(), pairs.c_str(),
                v("pope_random"), v("pope_popular"), v("pope_adversarial"), v("chair_s"), v("chair_i"),
                v("object_recall"), v("mc_accuracy"), v("reasoning_step_accuracy"), v("reasoning_answer_accuracy"));
  };
  if (summary.contains("start")) row("start", "", summary["start"]["eval"]);
  for (const auto& r : summary["rounds"]) {
    int64_t pairs = 0;
    if (r.contains("pairs"))
      for (auto& [name, rep] : r["pairs"].items())
        if (name != "stats") pairs += rep.value("pairs", int64_t(0));
    row(std::to_string(r["round"].get<int64_t>()), r.contains("pairs") ? std::to_string(pairs) : "online", r["eval"]);
  }
}

}  // namespace

void setup_align(CLI::App& cmd) {
  auto c = std::make_shared<AlignCmd>();
  auto& o = c->o;
  o.eval = default_align_eval();
  o.dpo.steps = 200;
  o.dpo.lr = 5e-6;  // larger rates over-optimise this model's DPO (docs/results/prefs.md)
  add_common_options(cmd, c->common, /*with_out=*/true);
  std::string methods;
  for (const auto& m : align_methods()) methods += "  " + m.name + ": " + m.help + "\n";
  add_examples(cmd,
               "mmb align --method corrected --rounds 1 --model models/base/vlm --world runs/world --out runs/align\n"
               "mmb align --method corrected+csr --clip models/base/clip ...   # the union of two builders' pairs\n"
               "mmb align --method online --rounds 3 ...\n"
               "methods:\n" +
                   methods);
  cmd.add_option("--model", o.model_dir, "Start model (round 1's policy and reference)")->required();
  cmd.add_option("--world", o.world_dir, "World directory: training prompts, the verifier, the test split")
      ->required();
  cmd.add_option("--clip", o.clip_dir, "CLIP of CSR's image reward, BDHS's similarity, online DPO's clip and mix judges");
  cmd.add_option("--method", o.method, "Builder(s) joined by '+', or online")->capture_default_str();
  cmd.add_option("--rounds", o.rounds, "Rounds; each starts from the previous round's model")->capture_default_str();
  cmd.add_option("--limit", o.limit, "Training prompts each builder answers per round")->capture_default_str();
  const char* b = "Builders";
  cmd.add_option("--corrected-temperature", o.corrected.temperature, "corrected: sampling of the answers (0 = greedy)")
      ->group(b)
      ->capture_default_str();
  cmd.add_option("--corrected-samples", o.corrected.samples_per_prompt, "corrected: answers per prompt")
      ->group(b)
      ->capture_default_str();
  cmd.add_option("--corrected-tasks", c->corrected_tasks, "corrected: description, qa, pope, pope:<categories>")
      ->group(b)
      ->capture_default_str();
  cmd.add_option("--corrected-fix", o.corrected.fix, "corrected: false | hallucinated")->group(b)->capture_default_str();
  cmd.add_option("--bpo-tasks", c->bpo_tasks, "bpo: description, qa, pope, pope:<categories>")
      ->group(b)
      ->capture_default_str();
  cmd.add_option("--bdhs-tasks", c->bdhs_tasks, "bdhs: description, qa, pope, pope:<categories>")
      ->group(b)
      ->capture_default_str();
  cmd.add_option("--bpo-sampler", o.bpo.sampler, "bpo: noised | two_pass")->group(b)->capture_default_str();
  cmd.add_option("--bpo-alpha", o.bpo.alpha, "bpo: a of the two-pass sampler")->group(b)->capture_default_str();
  cmd.add_flag("--bpo-match-sentences,!--no-bpo-match-sentences", o.bpo.match_sentences,
               "bpo: cut a description's noised-image negative to the positive's sentence count")
      ->group(b);
  cmd.add_option("--bpo-inject-mode", o.bpo.inject_mode, "bpo: rules | lm (the policy's language model)")
      ->group(b)
      ->capture_default_str();
  cmd.add_option("--bpo-noise-step", o.bpo.noise_step, "bpo: diffusion step of the noised image")
      ->group(b)
      ->capture_default_str();
  cmd.add_option("--bdhs-noise-step", o.bdhs.noise_step, "bdhs: diffusion step of the noised image (-1: none)")
      ->group(b)
      ->capture_default_str();
  cmd.add_option("--csr-reward", o.csr.reward, "csr: score | rank")->group(b)->capture_default_str();
  cmd.add_option("--csr-lambda", o.csr.lambda, "csr: weight of the image reward")->group(b)->capture_default_str();
  add_dpo_options(cmd, o.dpo);
  const char* e = "Evaluation";
  cmd.add_option("--eval-suite", c->suite, "Tasks evaluated after each round")->group(e)->capture_default_str();
  cmd.add_option("--eval-limit", o.eval.limit, "Questions per task (-1: the whole split)")->group(e)->capture_default_str();
  cmd.add_option("--eval-split", o.eval.split, "World split evaluated")->group(e)->capture_default_str();
  cmd.add_flag("--no-eval-start", c->no_eval_start, "Do not evaluate the start model (round 0)")->group(e);
  cmd.add_flag("--quiet", c->quiet, "No progress lines");
  cmd.callback([&cmd, c] {
    apply_common_options(c->common);
    if (c->common.out.empty()) fail("mmb align: --out DIR is required");
    c->o.out = c->common.out;
    c->o.seed = c->common.seed;
    c->o.eval.suite = split_list(c->suite);
    c->o.corrected.tasks = split_list(c->corrected_tasks);
    c->o.bpo.tasks = split_list(c->bpo_tasks);
    c->o.bdhs.tasks = split_list(c->bdhs_tasks);
    c->o.eval_start = !c->no_eval_start;
    c->o.progress = c->o.eval.progress = !c->quiet;
    auto run = open_run_dir(cmd, c->common);
    const Json summary = run_align(c->o, run.get());
    print_table(summary);
    if (run) {
      run->set_result("align", summary);
      run->finish();
    }
    std::cerr << "wrote " << c->o.out << "/align.json\n";
  });
}

}  // namespace mmb::app
