// mmb eval: the evaluation suite on a world split, and official POPE files.
// Confidences use the temperatures in DIR/calibration.json (`mmb calibrate`) unless --uncalibrated.
// With --out: RUN_DIR/results.json, samples.jsonl (every question, answer and verdict),
// predictions.jsonl (the `mmb metrics --in` format) and manifest.json.
#include <cstdio>
#include <iostream>
#include <sstream>

#include "commands.h"
#include "mmb/strings.h"
#include "common.h"
#include "mmb/eval.h"
#include "mmb/jsonl.h"

namespace mmb::app {
namespace {

struct EvalCliOptions {
  CommonOptions common;
  std::string model, data, suite = "pope,chair,mc,idk,reasoning", device = "cpu";
  EvalOptions eval;
  bool json = false;
  bool uncalibrated = false;
};

void run(const CLI::App& cmd, EvalCliOptions& o) {
  apply_common_options(o.common);
  EvalOptions e = o.eval;
  if (o.data.empty()) {
    if (e.pope_files.empty()) fail("mmb eval: give --data WORLD_DIR, or --pope FILE with --images DIR");
    e.suite.clear();
  } else {
    e.suite = split_list(o.suite);
  }
  auto run_dir = open_run_dir(cmd, o.common);
  e.keep_samples = run_dir != nullptr;
  Vlm vlm = Vlm::load(o.model, torch::Device(o.device));
  if (!o.uncalibrated) e.temperatures = read_confidence_temperatures(o.model);
  if (e.temperatures.calibrated())
    std::cerr << "[mmb] confidence temperatures from " << o.model << "/calibration.json: mc " << e.temperatures.mc
              << ", yes/no " << e.temperatures.yes_no << "\n";
  Json results = run_eval(vlm, o.data, e);
  results["model"] = o.model;
  results["data"] = o.data;
  Json samples = results.contains("samples") ? std::move(results["samples"]) : Json::array();
  results.erase("samples");
  if (o.json) std::cout << results.dump(2) << "\n";
  else std::cout << format_eval_headline(results);
  if (run_dir) {
    write_json_file(run_dir->path("results.json"), results);
    JsonlWriter all(run_dir->path("samples.jsonl")), preds(run_dir->path("predictions.jsonl"));
    for (const auto& s : samples) {
      all.write(s);
      if (s.contains("confidence")) preds.write(s);
    }
    all.close();
    preds.close();
    run_dir->log_metrics({{"phase", "eval"}, {"seconds", results["seconds"]["total"]}});
    for (const char* k : {"pope", "chair", "mc", "idk", "reasoning", "pope_files"})
      if (results.contains(k)) run_dir->set_result(k, results[k].is_object() ? results[k] : Json(nullptr));
    run_dir->finish();
    std::cerr << "wrote " << run_dir->path("results.json") << "\n";
  }
}

}  // namespace

void setup_eval(CLI::App& cmd) {
  auto o = std::make_shared<EvalCliOptions>();
  EvalOptions& e = o->eval;
  add_common_options(cmd, o->common, /*with_out=*/true);
  add_examples(cmd,
               "mmb eval --model DIR --data WORLD_DIR [--split test] [--suite pope,chair,mc,idk,reasoning]\n"
               "         [--limit N] [--batch 32] [--out RUN_DIR]\n"
               "mmb eval --model DIR --pope coco_pope_random.json --images val2014/ [--out RUN_DIR]\n");
  cmd.add_option("--model", o->model, "Model directory")->required();
  cmd.add_option("--data", o->data, "World directory (mmb world generate --out)");
  cmd.add_option("--split", e.split, "World split")->capture_default_str();
  cmd.add_option("--suite", o->suite, "Tasks, comma-separated: pope,chair,mc,idk,reasoning")->capture_default_str();
  cmd.add_option("--device", o->device, "cpu | cuda")->capture_default_str();
  cmd.add_flag("--json", o->json, "Print results as JSON instead of the table");
  cmd.add_flag("--uncalibrated", o->uncalibrated, "Ignore the model's calibration.json (temperatures 1)");
  const char* lim = "Limits (questions per task)";
  cmd.add_option("--limit", e.limit, "Every task: > 0 = this many, -1 = all, 0 = the defaults below")
      ->group(lim)
      ->capture_default_str();
  cmd.add_option("--pope-limit", e.pope_limit, "POPE questions per category")->group(lim)->capture_default_str();
  cmd.add_option("--chair-limit", e.chair_limit, "Descriptions")->group(lim)->capture_default_str();
  cmd.add_option("--mc-limit", e.mc_limit, "Multiple-choice questions")->group(lim)->capture_default_str();
  cmd.add_option("--idk-limit", e.idk_limit, "IDK questions per prompt variant")->group(lim)->capture_default_str();
  cmd.add_option("--modality-limit", e.modality_limit, "Text-vs-image questions per condition")
      ->group(lim)
      ->capture_default_str();
  cmd.add_option("--reasoning-limit", e.reasoning_limit, "Reasoning questions")->group(lim)->capture_default_str();
  const char* running = "Running";
  cmd.add_option("--batch", e.batch_size, "Prompts per forward pass")->group(running)->capture_default_str();
  cmd.add_option("--bins", e.num_bins, "ECE bins")->group(running)->capture_default_str();
  cmd.add_option("--mc-style", e.mc_style, "calibration-study (its prompt, answer primed with '(') | world")
      ->group(running)
      ->capture_default_str();
  cmd.add_option("--idk-hint", e.idk_hint, "Suffix of the IDK prompt variant")->group(running)->capture_default_str();
  cmd.add_option("--reasoning-suffix", e.reasoning_prompt_suffix,
                 "Text appended to reasoning questions (e.g. asking for confidence per step)")
      ->group(running);
  cmd.add_option("--short-tokens", e.short_tokens, "Max new tokens: POPE, IDK")->group(running)->capture_default_str();
  cmd.add_option("--description-tokens", e.description_tokens, "Max new tokens: descriptions")
      ->group(running)
      ->capture_default_str();
  cmd.add_option("--reasoning-tokens", e.reasoning_tokens, "Max new tokens: reasoning")
      ->group(running)
      ->capture_default_str();
  cmd.add_flag("!--no-progress", e.progress, "No progress lines")->group(running);
  const char* pope = "Official POPE files";
  cmd.add_option("--pope", e.pope_files, "POPE question file (question_id, image, text, label); repeatable")
      ->group(pope);
  cmd.add_option("--images", e.pope_images, "Folder of the POPE files' images")->group(pope);
  cmd.callback([&cmd, o] { run(cmd, *o); });
}

}  // namespace mmb::app
