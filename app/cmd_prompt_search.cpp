// mmb prompt-search: the calibration study's iterative prompt optimisation. Start prompts (suffixes) are paraphrased
// and scored (letter-method accuracy and ECE on multiple-choice questions of a training split) for n rounds, keeping
// the best k; the winner is measured again on a held-out split.
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "mmb/error.h"
#include "mmb/prompt_search.h"

namespace mmb::app {
namespace {

struct PromptSearchCliOptions {
  CommonOptions common;
  std::string model, data, paraphraser = "template", device = "cpu";
  PromptSearchOptions search;
  bool json = false;
};

void print_row(const char* name, const Json& s) {
  std::printf("  %-8s acc %.3f  ECE %.3f  answered %lld/%lld  \"%s\"\n", name, s["accuracy"].get<double>(),
              s["ece"].get<double>(), static_cast<long long>(s["answered"].get<int64_t>()),
              static_cast<long long>(s["n"].get<int64_t>()), s["prompt"].get<std::string>().c_str());
}

void run(const CLI::App& cmd, PromptSearchCliOptions& o) {
  apply_common_options(o.common);
  PromptSearchOptions p = o.search;
  p.seed = o.common.seed;
  auto run_dir = open_run_dir(cmd, o.common);
  Vlm vlm = Vlm::load(o.model, torch::Device(o.device));
  std::unique_ptr<Paraphraser> para;
  if (o.paraphraser == "template") para = make_template_paraphraser();
  else if (o.paraphraser == "model") para = make_model_paraphraser(vlm);
  else fail("mmb prompt-search: --paraphraser must be template or model, got '", o.paraphraser, "'");
  Json results = prompt_search(vlm, o.data, *para, p);
  results["model"] = o.model;
  results["data"] = o.data;
  if (o.json) {
    std::cout << results.dump(2) << "\n";
  } else {
    std::printf("prompt search (%s paraphraser): %lld prompts scored over %d rounds on %s\n",
                o.paraphraser.c_str(), static_cast<long long>(results["candidates_scored"].get<int64_t>()), p.rounds,
                p.train_split.c_str());
    print_row("best", results["best"]);
    std::printf("held-out split %s:\n", p.test_split.c_str());
    print_row("best", results["test"]["best"]);
    for (const auto& s : results["test"]["start_prompts"]) print_row("start", s);
    print_row("none", results["test"]["none"]);
  }
  if (run_dir) {
    write_json_file(run_dir->path("results.json"), results);
    for (size_t r = 0; r < results["rounds"].size(); ++r) {
      const Json& best = results["rounds"][r][0];
      run_dir->log_metrics({{"step", int64_t(r)}, {"best_prompt", best["prompt"]}, {"accuracy", best["accuracy"]},
                            {"ece", best["ece"]}});
    }
    run_dir->set_result("best", results["best"]);
    run_dir->set_result("test", results["test"]);
    run_dir->finish();
    std::cerr << "wrote " << run_dir->path("results.json") << "\n";
  }
}

}  // namespace

void setup_prompt_search(CLI::App& cmd) {
  auto o = std::make_shared<PromptSearchCliOptions>();
  PromptSearchOptions& p = o->search;
  add_common_options(cmd, o->common, /*with_out=*/true);
  add_examples(cmd,
               "mmb prompt-search --model DIR --data WORLD_DIR [--paraphraser template|model] [--rounds 10]\n"
               "                  [--paraphrases 5] [--keep 5] [--train-limit 100] [--out RUN]\n");
  cmd.add_option("--model", o->model, "Model directory")->required();
  cmd.add_option("--data", o->data, "World directory (mmb world generate --out)")->required();
  cmd.add_option("--device", o->device, "cpu | cuda")->capture_default_str();
  cmd.add_flag("--json", o->json, "Print results as JSON instead of the table");
  const char* search = "Search (the calibration study's defaults)";
  cmd.add_option("--start-prompts", p.start_prompts, "Prompt suffixes the search starts from (repeatable)")
      ->group(search)
      ->capture_default_str();
  cmd.add_option("--paraphraser", o->paraphraser, "template (rules) | model (the VLM's own language model)")
      ->group(search)->capture_default_str();
  cmd.add_option("--rounds", p.rounds, "Rounds n")->group(search)->capture_default_str();
  cmd.add_option("--paraphrases", p.paraphrases, "Paraphrases m per kept prompt per round")
      ->group(search)
      ->capture_default_str();
  cmd.add_option("--keep", p.keep, "Prompts k kept per round")->group(search)->capture_default_str();
  cmd.add_option("--accuracy-bucket", p.accuracy_bucket, "Sort key floor(acc / bucket), then ECE")
      ->group(search)
      ->capture_default_str();
  const char* data = "Data";
  cmd.add_option("--train-split", p.train_split, "Split candidates are scored on")->group(data)->capture_default_str();
  cmd.add_option("--test-split", p.test_split, "Held-out split for the winner and the start prompts")
      ->group(data)
      ->capture_default_str();
  cmd.add_option("--train-limit", p.train_limit, "Multiple-choice questions per candidate")
      ->group(data)
      ->capture_default_str();
  cmd.add_option("--test-limit", p.test_limit, "Multiple-choice questions on the held-out split")
      ->group(data)
      ->capture_default_str();
  cmd.add_option("--mc-style", p.mc_style, "calibration-study | world (as mmb eval)")
      ->group(data)
      ->capture_default_str();
  cmd.add_option("--bins", p.num_bins, "ECE bins")->group(data)->capture_default_str();
  cmd.add_option("--batch", p.batch_size, "Prompts per forward pass")->group(data)->capture_default_str();
  cmd.callback([&cmd, o] { run(cmd, *o); });
}

}  // namespace mmb::app
