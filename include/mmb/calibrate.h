// Fitting a model's confidence temperatures on the world (`mmb calibrate`): collects the
// answer-step logits on a calibration split, fits them with fit_temperature (calibration.h) and
// measures ECE before and after on the test split. Not thread-safe: it drives one Vlm.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mmb/calibration.h"
#include "mmb/json.h"
#include "mmb/vlm.h"

namespace mmb {

struct CalibrateOptions {
  std::string fit_split = "val";                      // world split the temperatures are fitted on
  std::string test_split = "test";                    // split ECE before / after is reported on
  std::vector<std::string> tasks = {"mc", "yes_no"};  // mc: letter step (mc.jsonl); yes_no: POPE
  int64_t fit_limit = 600;                            // questions per task on the fit split (-1 = all)
  int64_t test_limit = 600;                           // questions per task on the test split (-1 = all)
  bool fit_with_image = true;  // false: fit on text-only prompts (the calibration study's released code)
  TemperatureFitOptions fit;   // method of the stored temperature (the other is reported too)
  std::string mc_style = "calibration-study";  // prompt style, as EvalOptions::mc_style
  int num_bins = 10;
  int64_t batch_size = 32;
  bool progress = true;
};

// Collects the answer-step logits on the fit split (MC: full vocabulary at the first letter
// step, rows without a letter skipped as the calibration study does; yes/no: the yes and no columns of the first
// answer token), fits one temperature per task, and measures the test split at T = 1 and at the
// fitted T (predictions unchanged: MC = the argmax letter, yes/no = p(yes) >= 0.5). Returns
// {"calibration": <the calibration.json object>, "<task>": {"fit", "grid" | "optimize" (the
// other method, for comparison), "test_before", "test_after" (calibration summaries),
// "fit_questions", "test_questions", "skipped_no_letter", "fitted": true}}; a task with no usable
// answer (MC: no option letter at all) is {"fitted": false, "reason", counts} and left out of
// "calibration" (its temperature stays 1). The caller decides whether to write
// "calibration" into the model directory (write_calibration_file).
Json calibrate_temperatures(Vlm& vlm, const std::string& world_dir, const CalibrateOptions& options);

}  // namespace mmb
