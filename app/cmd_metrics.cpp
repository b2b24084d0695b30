// mmb metrics: calibration metrics of any model's predictions, with mmb's definitions.
// One JSON object a line: {"confidence": 0.8, "correct": true, "group": "pope/random",
// "label": "yes", "prediction": "yes"} (label, group, prediction optional). Prints the metrics
// overall, per group and per label; with --out writes DIR/results.json (+ manifest.json).
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "mmb/metrics.h"

namespace mmb::app {
namespace {

struct MetricsOptions {
  CommonOptions common;
  std::string in;
  int bins = 10;
  bool json = false;
};

std::string cell(const Json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number()) return "     -";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%6.3f", j[key].get<double>());
  return buf;
}

void print_row(const std::string& name, const Json& s) {
  std::printf("%-30s %6lld %s %s %s %s %s %s %s %s %s %s %s\n", name.c_str(),
              static_cast<long long>(s.value("n", int64_t(0))), cell(s, "accuracy").c_str(),
              cell(s, "mean_confidence").c_str(), cell(s, "ece").c_str(), cell(s, "ece_equal_mass").c_str(),
              cell(s, "mce").c_str(), cell(s, "brier").c_str(), cell(s, "nll").c_str(), cell(s, "auroc").c_str(),
              cell(s, "auprc").c_str(), cell(s, "aurc").c_str(), cell(s, "e_aurc").c_str());
}

void run(const CLI::App& cmd, MetricsOptions& o) {
  apply_common_options(o.common);
  CalibrationOptions co;
  co.num_bins = o.bins;
  if (o.bins < 1) fail("mmb metrics: --bins must be >= 1, got ", o.bins);
  auto records = read_prediction_records(o.in);
  Json results = prediction_metrics(records, co);
  results["input"] = o.in;
  auto run_dir = open_run_dir(cmd, o.common);
  if (o.json) {
    std::cout << results.dump(2) << "\n";
  } else {
    std::printf("%s\n\n", calibration_definition(o.bins).c_str());
    std::printf("%-30s %6s %6s %6s %6s %6s %6s %6s %6s %6s %6s %6s %6s\n", "set", "n", "acc", "conf", "ECE",
                "ECE-m", "MCE", "Brier", "NLL", "AUROC", "AUPRC", "AURC", "E-AURC");
    print_row("all", results["all"]);
    if (results.contains("groups"))
      for (auto& [g, s] : results["groups"].items()) print_row("group " + g, s);
    if (results.contains("labels"))
      for (auto& [l, s] : results["labels"].items()) print_row("label " + l, s);
    if (results.contains("pope"))
      for (auto& [g, p] : results["pope"].items())
        std::printf("POPE %-25s acc %.3f  precision %.3f  recall %.3f  F1 %.3f  yes-ratio %.3f  unparsed %lld\n",
                    g.c_str(), p["accuracy"].get<double>(), p["precision"].get<double>(), p["recall"].get<double>(),
                    p["f1"].get<double>(), p["yes_ratio"].get<double>(),
                    static_cast<long long>(p["unparsed"].get<int64_t>()));
  }
  if (run_dir) {
    write_json_file(run_dir->path("results.json"), results);
    run_dir->log_metrics({{"phase", "metrics"}, {"n", int64_t(records.size())}, {"ece", results["all"]["ece"]}});
    run_dir->set_result("ece", results["all"]["ece"]);
    run_dir->set_result("accuracy", results["all"]["accuracy"]);
    run_dir->finish();
    std::cerr << "wrote " << run_dir->path("results.json") << "\n";
  }
}

}  // namespace

void setup_metrics(CLI::App& cmd) {
  auto o = std::make_shared<MetricsOptions>();
  add_common_options(cmd, o->common, /*with_out=*/true);
  add_examples(cmd, "mmb metrics --in predictions.jsonl [--bins 10] [--out DIR] [--json]\n");
  cmd.add_option("--in", o->in, "Predictions, JSONL: confidence, correct, [group, label, prediction]")->required();
  cmd.add_option("--bins", o->bins, "Bins for ECE / MCE / reliability")->capture_default_str();
  cmd.add_flag("--json", o->json, "Print the results as JSON");
  cmd.callback([&cmd, o] { run(cmd, *o); });
}

}  // namespace mmb::app
