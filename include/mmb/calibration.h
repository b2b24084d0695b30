// Temperature scaling (seed 001 §2.2, SPEC §2.2): one scalar T > 0 divides the answer step's
// logits; fitted on a calibration split by minimising the mean negative log-likelihood of the
// true answer, it changes confidences but never the argmax, so accuracy is unchanged.
//
// The fit is posed over a matrix of logits and a mask of the columns that count as the true
// answer (a letter has two SentencePiece forms, "A" and "▁A"; "yes" has several), so one
// routine serves the multiple-choice letter step (full vocabulary, as the seed) and the yes/no
// step (the yes and no columns only: exactly p(yes)/(p(yes)+p(no)) of elicitation.h).
//
//   NLL(T) = -(1/N) Σ_i log Σ_{c ∈ true_i} softmax(logits_i / T)_c
//
// Methods: "grid" is the seed's grid T ∈ {0.01, 0.02, ..., 9.99} (exact, the seed's code);
// "optimize" (our default) brackets the minimum on a log-spaced grid of T ∈ [1e-2, 1e2] and
// refines it by golden-section search on log T to a relative 1e-7 (a proper 1-D optimiser; not
// capped at 9.99). With a single true column per row NLL is convex in 1/T, so the bracket holds
// the global minimum; with several it is in practice unimodal and the grid guards the bracket.
// docs/metrics.md ("Temperature scaling") has the details and our choices.
#pragma once
#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "mmb/json.h"
#include "mmb/vlm.h"

namespace mmb {

// NLL(T) as above. logits (N, C) float, true_mask (N, C) bool with >= 1 true column per row.
// Throws mmb::Error on mismatched shapes, N = 0, a row without a true column, T <= 0.
double temperature_nll(const torch::Tensor& logits, const torch::Tensor& true_mask, double temperature);

struct TemperatureFitOptions {
  std::string method = "optimize";  // "optimize" (log-grid bracket + golden section) or "grid"
  double grid_min = 0.01, grid_max = 9.99, grid_step = 0.01;  // the seed's grid ("grid")
  double t_min = 1e-2, t_max = 1e2;  // search range of "optimize"
};

struct TemperatureFit {
  double temperature = 1.0;
  double nll_before = 0;  // at T = 1
  double nll_after = 0;   // at the fitted T
  int64_t n = 0;          // rows fitted
  std::string method;
  int64_t evaluations = 0;  // NLL evaluations spent
  Json to_json() const;
};

// Fits T (see the methods above). Same preconditions as temperature_nll.
TemperatureFit fit_temperature(const torch::Tensor& logits, const torch::Tensor& true_mask,
                               const TemperatureFitOptions& options = {});

// ---- the model directory's calibration.json ---------------------------------------------------

// Temperatures stored with a model, one per confidence method (1 = uncalibrated). Read by
// Vlm::load, used by `mmb eval` and `mmb generate`.
struct ConfidenceTemperatures {
  double mc = 1.0;      // multiple-choice letter step (seed 001's letter method)
  double yes_no = 1.0;  // first answer token of a yes/no question
  bool calibrated() const { return mc != 1.0 || yes_no != 1.0; }
};

// DIR/calibration.json: {"mc": {"temperature": T, ...fit details}, "yes_no": {...}}; a missing
// file gives all 1; a present one is validated (T finite and > 0; unknown methods rejected),
// errors name the file and key.
ConfidenceTemperatures read_confidence_temperatures(const std::string& model_dir);
// Writes (atomically) `calibration` as DIR/calibration.json after validating it the same way.
void write_calibration_file(const std::string& model_dir, const Json& calibration);

// ---- fitting a model's temperatures on the world (`mmb calibrate`) -----------------------------

struct CalibrateOptions {
  std::string fit_split = "val";    // world split the temperatures are fitted on
  std::string test_split = "test";  // split ECE before / after is reported on
  std::vector<std::string> tasks = {"mc", "yes_no"};  // mc: letter step (mc.jsonl); yes_no: POPE
  int64_t fit_limit = 600;          // questions per task on the fit split (-1 = all)
  int64_t test_limit = 600;         // questions per task on the test split (-1 = all)
  bool fit_with_image = true;       // false: fit on text-only prompts (the seed's released code)
  TemperatureFitOptions fit;        // method of the stored temperature (the other is reported too)
  std::string mc_style = "seed";    // prompt style, as EvalOptions::mc_style
  int num_bins = 10;
  int64_t batch_size = 32;
  bool progress = true;
};

// Collects the answer-step logits on the fit split (MC: full vocabulary at the first letter
// step, rows without a letter skipped as the seed; yes/no: the yes and no columns of the first
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
