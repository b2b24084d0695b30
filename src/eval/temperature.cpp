// Temperature scaling, the calibration study (Guo et al. 2017's single-parameter variant). The calibration study fits
// T on a grid 0.01..9.99 (kept as method "grid"); our default is a golden-section search on
// log T inside a bracket from a log-spaced grid, which finds the same minimum without the grid's
// 0.01 resolution or its 9.99 cap. The calibration study's released code fits without the image (a bug); the
// caller chooses what the logits were computed from (`mmb calibrate --no-image`).
#include "mmb/calibration.h"

#include <cmath>
#include <fstream>
#include <limits>

#include "mmb/error.h"

namespace mmb {
namespace {

void check_inputs(const torch::Tensor& logits, const torch::Tensor& true_mask, const char* fn) {
  if (logits.dim() != 2) fail(fn, ": expected logits (N, C), got ", logits.dim(), " dimensions");
  if (true_mask.sizes() != logits.sizes())
    fail(fn, ": true_mask ", true_mask.sizes(), " does not match logits ", logits.sizes());
  if (logits.size(0) == 0 || logits.size(1) == 0) fail(fn, ": no rows to fit");
  auto rows_with_truth = true_mask.to(torch::kBool).any(1);
  if (!rows_with_truth.all().item<bool>())
    fail(fn, ": ", (~rows_with_truth).sum().item<int64_t>(), " row(s) have no true column");
}

// The logits in float64, and the same with every column outside the true set at -inf: NLL(T) is
// then mean(logsumexp(z / T) - logsumexp(truth / T)), with no masking per evaluation.
struct NllTerms {
  torch::Tensor z, truth;  // (N, C) float64
  NllTerms(const torch::Tensor& logits, const torch::Tensor& true_mask)
      : z(logits.to(torch::kFloat64)),
        truth(z.masked_fill(~true_mask.to(torch::kBool), -std::numeric_limits<double>::infinity())) {}
  double operator()(double t) const {
    torch::NoGradGuard ng;
    return (torch::logsumexp(z / t, 1) - torch::logsumexp(truth / t, 1)).mean().item<double>();
  }
};

}  // namespace

double temperature_nll(const torch::Tensor& logits, const torch::Tensor& true_mask, double temperature) {
  check_inputs(logits, true_mask, "temperature_nll");
  if (!(temperature > 0) || !std::isfinite(temperature))
    fail("temperature_nll: temperature must be finite and > 0, got ", temperature);
  torch::NoGradGuard ng;
  return NllTerms(logits, true_mask)(temperature);
}

TemperatureFit fit_temperature(const torch::Tensor& logits, const torch::Tensor& true_mask,
                               const TemperatureFitOptions& o) {
  check_inputs(logits, true_mask, "fit_temperature");
  TemperatureFit fit;
  fit.method = o.method;
  fit.n = logits.size(0);
  torch::NoGradGuard ng;
  const NllTerms terms(logits, true_mask);  // checked once above; every evaluation reuses them
  auto nll = [&](double t) {
    fit.evaluations++;
    return terms(t);
  };
  fit.nll_before = nll(1.0);
  if (o.method == "grid") {
    if (!(o.grid_min > 0) || !(o.grid_step > 0) || o.grid_max < o.grid_min)
      fail("fit_temperature: bad grid [", o.grid_min, ", ", o.grid_max, "] step ", o.grid_step);
    const int64_t steps = int64_t(std::floor((o.grid_max - o.grid_min) / o.grid_step + 1e-9)) + 1;
    double best_t = o.grid_min, best = std::numeric_limits<double>::infinity();
    for (int64_t k = 0; k < steps; ++k) {
      const double t = o.grid_min + double(k) * o.grid_step;
      const double v = nll(t);
      if (v < best) best = v, best_t = t;  // first minimum on ties, as numpy.argmin
    }
    fit.temperature = best_t;
    fit.nll_after = best;
    return fit;
  }
  if (o.method != "optimize") fail("fit_temperature: method must be optimize or grid, got '", o.method, "'");
  if (!(o.t_min > 0) || !(o.t_max > o.t_min))
    fail("fit_temperature: bad search range [", o.t_min, ", ", o.t_max, "]");
  // Bracket: 8 points per decade of T.
  const double lo = std::log(o.t_min), hi = std::log(o.t_max);
  const int64_t points = std::max<int64_t>(3, int64_t(std::ceil((hi - lo) / std::log(10.0) * 8)) + 1);
  std::vector<double> grid_nll(static_cast<size_t>(points));
  int64_t best = 0;
  for (int64_t k = 0; k < points; ++k) {
    grid_nll[size_t(k)] = nll(std::exp(lo + (hi - lo) * double(k) / double(points - 1)));
    if (grid_nll[size_t(k)] < grid_nll[size_t(best)]) best = k;
  }
  auto at = [&](int64_t k) {
    return lo + (hi - lo) * double(std::clamp<int64_t>(k, 0, points - 1)) / double(points - 1);
  };
  double a = at(best - 1), b = at(best + 1);
  // Golden section on u = log T.
  const double g = (std::sqrt(5.0) - 1) / 2;
  double c = b - g * (b - a), d = a + g * (b - a);
  double fc = nll(std::exp(c)), fd = nll(std::exp(d));
  while (b - a > 1e-7) {
    if (fc < fd) {
      b = d, d = c, fd = fc;
      c = b - g * (b - a);
      fc = nll(std::exp(c));
    } else {
      a = c, c = d, fc = fd;
      d = a + g * (b - a);
      fd = nll(std::exp(d));
    }
  }
  double u = (a + b) / 2, fu = nll(std::exp(u));
  // The bracket's own best point wins if the search ended at the range's edge above it.
  if (grid_nll[size_t(best)] < fu) u = at(best), fu = grid_nll[size_t(best)];
  fit.temperature = std::exp(u);
  fit.nll_after = fu;
  return fit;
}

Json TemperatureFit::to_json() const {
  return {{"temperature", temperature}, {"nll_before", nll_before}, {"nll_after", nll_after},
          {"n", n}, {"method", method}, {"evaluations", evaluations}};
}

// ---- calibration.json -------------------------------------------------------------------------

namespace {

double read_temperature(const Json& j, const char* key, const std::string& path) {
  if (!j.contains(key)) return 1.0;
  const Json& entry = j[key];
  if (!entry.is_object()) fail(path, ": '", key, "' must be an object with a 'temperature'");
  const double t = json_get<double>(entry, "temperature", path + " '" + key + "'");
  if (!std::isfinite(t) || !(t > 0)) fail(path, ": '", key, "'.temperature must be finite and > 0, got ", t);
  return t;
}

void validate(const Json& j, const std::string& path) {
  if (!j.is_object()) fail(path, ": expected a JSON object");
  for (auto& [k, v] : j.items()) {
    if (k != "mc" && k != "yes_no" && k != "fitted")
      fail(path, ": unknown key '", k, "' (expected mc, yes_no, fitted)");
  }
  read_temperature(j, "mc", path);
  read_temperature(j, "yes_no", path);
}

}  // namespace

ConfidenceTemperatures read_confidence_temperatures(const std::string& model_dir) {
  const std::string path = model_dir + "/calibration.json";
  if (!std::ifstream(path)) return {};
  Json j = read_json_file(path);
  validate(j, path);
  ConfidenceTemperatures t;
  t.mc = read_temperature(j, "mc", path);
  t.yes_no = read_temperature(j, "yes_no", path);
  return t;
}

void write_calibration_file(const std::string& model_dir, const Json& calibration) {
  const std::string path = model_dir + "/calibration.json";
  validate(calibration, path);
  write_json_file(path, calibration);
}

}  // namespace mmb
