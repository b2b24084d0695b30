// Temperature scaling (the calibration study): one scalar T > 0 divides the answer step's
// logits; fitted on a calibration split by minimising the mean negative log-likelihood of the
// true answer, it changes confidences but never the argmax, so accuracy is unchanged.
//
// The fit is posed over a matrix of logits and a mask of the columns that count as the true
// answer (a letter has two SentencePiece forms, "A" and "▁A"; "yes" has several), so one
// routine serves the multiple-choice letter step (full vocabulary, as the calibration study) and the yes/no
// step (the yes and no columns only: exactly p(yes)/(p(yes)+p(no)) of elicitation.h).
//
//   NLL(T) = -(1/N) Σ_i log Σ_{c ∈ true_i} softmax(logits_i / T)_c
//
// Methods: "grid" is the calibration study's grid T ∈ {0.01, 0.02, ..., 9.99} (exact, its released code);
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

namespace mmb {

// NLL(T) as above. logits (N, C) float, true_mask (N, C) bool with >= 1 true column per row.
// Throws mmb::Error on mismatched shapes, N = 0, a row without a true column, T <= 0.
double temperature_nll(const torch::Tensor& logits, const torch::Tensor& true_mask, double temperature);

struct TemperatureFitOptions {
  std::string method = "optimize";  // "optimize" (log-grid bracket + golden section) or "grid"
  double grid_min = 0.01, grid_max = 9.99, grid_step = 0.01;  // the calibration study's grid ("grid")
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
  double mc = 1.0;      // multiple-choice letter step (the calibration study's letter method)
  double yes_no = 1.0;  // first answer token of a yes/no question
  bool calibrated() const { return mc != 1.0 || yes_no != 1.0; }
};

// DIR/calibration.json: {"mc": {"temperature": T, ...fit details}, "yes_no": {...}}; a missing
// file gives all 1; a present one is validated (T finite and > 0; unknown methods rejected),
// errors name the file and key.
ConfidenceTemperatures read_confidence_temperatures(const std::string& model_dir);
// Writes (atomically) `calibration` as DIR/calibration.json after validating it the same way.
void write_calibration_file(const std::string& model_dir, const Json& calibration);

}  // namespace mmb
