// mmb calibrate: temperature scaling (the calibration study). Fits one temperature per confidence method
// (multiple-choice letter, yes/no) on a calibration split of the world, reports ECE / NLL before
// and after on the test split, and stores the temperatures with the model (DIR/calibration.json)
// so that `mmb eval` and `mmb generate` use them.
#include <cstdio>
#include <iostream>
#include <sstream>

#include "commands.h"
#include "common.h"
#include "mmb/calibrate.h"
#include "mmb/error.h"

namespace mmb::app {
namespace {

struct CalibrateCliOptions {
  CommonOptions common;
  std::string model, data, tasks = "mc,yes_no", device = "cpu";
  CalibrateOptions cal;
  bool no_image = false, dry_run = false, json = false;
};

double get(const Json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : 0.0;
}

void run(const CLI::App& cmd, CalibrateCliOptions& o) {
  apply_common_options(o.common);
  CalibrateOptions c = o.cal;
  c.tasks.clear();
  std::stringstream ss(o.tasks);
  for (std::string t; std::getline(ss, t, ',');)
    if (!t.empty()) c.tasks.push_back(t);
  c.fit_with_image = !o.no_image;
  auto run_dir = open_run_dir(cmd, o.common);
  Vlm vlm = Vlm::load(o.model, torch::Device(o.device));
  Json results = calibrate_temperatures(vlm, o.data, c);
  results["model"] = o.model;
  results["data"] = o.data;
  if (o.json) {
    std::cout << results.dump(2) << "\n";
  } else {
    std::printf("temperature scaling: fit on %s (%s), measured on %s\n", c.fit_split.c_str(),
                c.fit_with_image ? "with the image" : "text only", c.test_split.c_str());
    std::printf("%-8s %9s %9s %8s %8s %8s %8s %8s %8s %7s\n", "task", "T", "T(other)", "NLL", "NLL(T)", "ECE",
                "ECE(T)", "Brier", "Brier(T)", "acc");
    for (const auto& t : c.tasks) {
      const Json& r = results[t];
      if (!r.value("fitted", false)) {
        std::printf("%-8s not fitted: %s\n", t.c_str(), r.value("reason", std::string("?")).c_str());
        continue;
      }
      const std::string other = c.fit.method == "grid" ? "optimize" : "grid";
      std::printf("%-8s %9.4f %9.4f %8.4f %8.4f %8.4f %8.4f %8.4f %8.4f %7.3f\n", t.c_str(),
                  get(r["fit"], "temperature"), get(r[other], "temperature"), get(r, "test_nll_before"),
                  get(r, "test_nll_after"), get(r["test_before"], "ece"), get(r["test_after"], "ece"),
                  get(r["test_before"], "brier"), get(r["test_after"], "brier"), get(r["test_before"], "accuracy"));
    }
  }
  if (!o.dry_run) {
    write_calibration_file(o.model, results["calibration"]);
    std::cerr << "wrote " << o.model << "/calibration.json\n";
  }
  if (run_dir) {
    write_json_file(run_dir->path("results.json"), results);
    for (const auto& t : c.tasks) {
      if (!results[t].value("fitted", false)) continue;
      run_dir->log_metrics({{"phase", "calibrate/" + t}, {"temperature", results[t]["fit"]["temperature"]},
                            {"ece_before", results[t]["test_before"]["ece"]},
                            {"ece_after", results[t]["test_after"]["ece"]}});
      run_dir->set_result(t, {{"temperature", results[t]["fit"]["temperature"]},
                              {"ece_before", results[t]["test_before"]["ece"]},
                              {"ece_after", results[t]["test_after"]["ece"]}});
    }
    run_dir->finish();
    std::cerr << "wrote " << run_dir->path("results.json") << "\n";
  }
}

}  // namespace

void setup_calibrate(CLI::App& cmd) {
  auto o = std::make_shared<CalibrateCliOptions>();
  CalibrateOptions& c = o->cal;
  add_common_options(cmd, o->common, /*with_out=*/true);
  add_examples(cmd,
               "mmb calibrate --model DIR --data WORLD_DIR [--fit-split val] [--test-split test]\n"
               "              [--tasks mc,yes_no] [--method optimize|grid] [--no-image] [--dry-run] [--out RUN]\n");
  cmd.add_option("--model", o->model, "Model directory (calibration.json is written here)")->required();
  cmd.add_option("--data", o->data, "World directory (mmb world generate --out)")->required();
  cmd.add_option("--device", o->device, "cpu | cuda")->capture_default_str();
  cmd.add_flag("--json", o->json, "Print results as JSON instead of the table");
  cmd.add_flag("--dry-run", o->dry_run, "Report only; do not write DIR/calibration.json");
  const char* fit = "Fitting";
  cmd.add_option("--tasks", o->tasks, "Confidence methods, comma-separated: mc, yes_no")
      ->group(fit)
      ->capture_default_str();
  cmd.add_option("--fit-split", c.fit_split, "Split the temperatures are fitted on")->group(fit)->capture_default_str();
  cmd.add_option("--test-split", c.test_split, "Split ECE before/after is measured on")
      ->group(fit)
      ->capture_default_str();
  cmd.add_option("--fit-limit", c.fit_limit, "Questions per task to fit on (-1 = all)")
      ->group(fit)
      ->capture_default_str();
  cmd.add_option("--test-limit", c.test_limit, "Questions per task to test on (-1 = all)")
      ->group(fit)
      ->capture_default_str();
  cmd.add_option("--method", c.fit.method,
                 "optimize (golden section on log T) | grid (the calibration study's: 0.01..9.99)")
      ->group(fit)
      ->capture_default_str();
  cmd.add_flag("--no-image", o->no_image, "Fit on text-only prompts, as the calibration study's released code did")
      ->group(fit);
  const char* running = "Running";
  cmd.add_option("--mc-style", c.mc_style, "calibration-study | world (as mmb eval)")
      ->group(running)
      ->capture_default_str();
  cmd.add_option("--bins", c.num_bins, "ECE bins")->group(running)->capture_default_str();
  cmd.add_option("--batch", c.batch_size, "Prompts per forward pass")->group(running)->capture_default_str();
  cmd.add_flag("!--no-progress", c.progress, "No progress lines")->group(running);
  cmd.callback([&cmd, o] { run(cmd, *o); });
}

}  // namespace mmb::app
