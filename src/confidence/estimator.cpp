// Normalisation, fusion and levels of step signals (SPEC.md §1.2–1.3; include/mmb/confidence.h),
// and the confidence.json file that stores them beside a model.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "mmb/atomic_file.h"
#include "mmb/confidence.h"
#include "mmb/error.h"

namespace mmb {
namespace {

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

void check_fusion(const std::string& f) {
  if (f != "mean" && f != "max" && f != "logistic")
    fail("confidence: unknown fusion \"", f, "\" (expected mean, max or logistic)");
}

// Ridge-penalised logistic regression by Newton's method on features x (N, K): returns
// (coefficients, intercept). Solves the (K+1)² system by Gaussian elimination.
std::pair<std::vector<double>, double> fit_logistic(const std::vector<std::vector<double>>& x,
                                                    const std::vector<bool>& y, double l2, int iterations) {
  const size_t N = x.size(), K = x.empty() ? 0 : x[0].size(), D = K + 1;
  std::vector<double> w(D, 0.0);  // w[K] = intercept
  for (int it = 0; it < iterations; ++it) {
    std::vector<double> g(D, 0.0), H(D * D, 0.0);
    for (size_t n = 0; n < N; ++n) {
      double z = w[K];
      for (size_t k = 0; k < K; ++k) z += w[k] * x[n][k];
      const double p = sigmoid(z), r = p - (y[n] ? 1.0 : 0.0), s = p * (1 - p);
      for (size_t a = 0; a < D; ++a) {
        const double xa = a < K ? x[n][a] : 1.0;
        g[a] += r * xa;
        for (size_t b = 0; b < D; ++b) H[a * D + b] += s * xa * (b < K ? x[n][b] : 1.0);
      }
    }
    for (size_t k = 0; k < K; ++k) {
      g[k] += l2 * double(N) * w[k];
      H[k * D + k] += l2 * double(N);
    }
    H[K * D + K] += 1e-9 * double(N);
    // Solve H d = g.
    std::vector<double> A = H, d = g;
    for (size_t c = 0; c < D; ++c) {
      size_t piv = c;
      for (size_t r = c + 1; r < D; ++r)
        if (std::fabs(A[r * D + c]) > std::fabs(A[piv * D + c])) piv = r;
      if (std::fabs(A[piv * D + c]) < 1e-300) fail("fit_confidence: singular Hessian in the logistic fit");
      for (size_t b = 0; b < D; ++b) std::swap(A[c * D + b], A[piv * D + b]);
      std::swap(d[c], d[piv]);
      for (size_t r = 0; r < D; ++r) {
        if (r == c) continue;
        const double f = A[r * D + c] / A[c * D + c];
        for (size_t b = c; b < D; ++b) A[r * D + b] -= f * A[c * D + b];
        d[r] -= f * d[c];
      }
    }
    double step = 0;
    for (size_t a = 0; a < D; ++a) {
      const double da = d[a] / A[a * D + a];
      w[a] -= da;
      step = std::max(step, std::fabs(da));
    }
    if (step < 1e-10) break;
  }
  return {std::vector<double>(w.begin(), w.begin() + long(K)), w[K]};
}

}  // namespace

StepSignals ConfidenceEstimator::normalised(const StepSignals& raw) const {
  StepSignals c{};
  for (int i = 0; i < kNumSignals; ++i) {
    const double span = hi[size_t(i)] - lo[size_t(i)];
    double n = span > 0 ? (raw[size_t(i)] - lo[size_t(i)]) / span : 0.5;
    n = std::clamp(n, 0.0, 1.0);
    c[size_t(i)] = is_uncertainty(i) ? 1.0 - n : n;
  }
  return c;
}

double ConfidenceEstimator::fuse(const StepSignals& raw) const {
  const StepSignals c = normalised(raw);
  if (fusion == "logistic") {
    double z = intercept;
    for (int i = 0; i < kNumSignals; ++i)
      if (use[size_t(i)]) z += coef[size_t(i)] * c[size_t(i)];
    return sigmoid(z);
  }
  double best = 0, sum = 0;
  int n = 0;
  for (int i = 0; i < kNumSignals; ++i)
    if (use[size_t(i)]) {
      best = std::max(best, c[size_t(i)]);
      sum += c[size_t(i)];
      ++n;
    }
  if (n == 0) fail("ConfidenceEstimator::fuse: no signal in use");
  return fusion == "max" ? best : sum / n;
}

std::array<double, 4> ConfidenceEstimator::cuts() const {
  return {mu - 1.5 * sigma, mu - 0.5 * sigma, mu + 0.5 * sigma, mu + 1.5 * sigma};
}

int ConfidenceEstimator::level(double fused) const {
  int l = 1;
  for (double c : cuts())
    if (fused >= c) ++l;
  return l;
}

Json ConfidenceEstimator::to_json() const {
  Json signals = Json::object();
  for (int i = 0; i < kNumSignals; ++i)
    signals[signal_name(i)] = {{"min", lo[size_t(i)]},
                               {"max", hi[size_t(i)]},
                               {"use", use[size_t(i)]},
                               {"kind", is_uncertainty(i) ? "uncertainty" : "confidence"},
                               {"coef", coef[size_t(i)]}};
  return {{"format", "mmb-confidence-1"},
          {"fusion", fusion},
          {"signals", signals},
          {"intercept", intercept},
          {"mu", mu},
          {"sigma", sigma},
          {"cuts", cuts()},
          {"reference_steps", reference_steps}};
}

ConfidenceEstimator ConfidenceEstimator::from_json(const Json& j, const std::string& where) {
  if (!j.is_object()) fail(where, ": expected a JSON object");
  const std::string format = json_get<std::string>(j, "format", where);
  if (format != "mmb-confidence-1") fail(where, ": format \"", format, "\" (expected mmb-confidence-1)");
  ConfidenceEstimator e;
  e.fusion = json_get<std::string>(j, "fusion", where);
  check_fusion(e.fusion);
  const Json signals = json_get<Json>(j, "signals", where);
  for (int i = 0; i < kNumSignals; ++i) {
    const std::string w = where + " signals." + signal_name(i);
    const Json s = json_get<Json>(signals, signal_name(i), where + " signals");
    e.lo[size_t(i)] = json_get<double>(s, "min", w);
    e.hi[size_t(i)] = json_get<double>(s, "max", w);
    e.use[size_t(i)] = json_get<bool>(s, "use", w);
    e.coef[size_t(i)] = json_get<double>(s, "coef", w);
    if (!(e.hi[size_t(i)] >= e.lo[size_t(i)])) fail(w, ": max below min");
  }
  e.intercept = json_get<double>(j, "intercept", where);
  e.mu = json_get<double>(j, "mu", where);
  e.sigma = json_get<double>(j, "sigma", where);
  if (!(e.sigma >= 0)) fail(where, ": sigma must be >= 0");
  e.reference_steps = json_get<int64_t>(j, "reference_steps", where);
  if (std::none_of(e.use.begin(), e.use.end(), [](bool u) { return u; })) fail(where, ": no signal in use");
  return e;
}

ConfidenceEstimator ConfidenceEstimator::load(const std::string& path) {
  return from_json(read_json_file(path), path);
}

void ConfidenceEstimator::save(const std::string& path) const { write_json_file(path, to_json()); }

ConfidenceEstimator fit_confidence(const std::vector<StepSignals>& reference, const std::vector<bool>& correct,
                                   const ConfidenceFitOptions& o) {
  check_fusion(o.fusion);
  if (reference.empty()) fail("fit_confidence: no reference steps");
  if (std::none_of(o.use.begin(), o.use.end(), [](bool u) { return u; })) fail("fit_confidence: no signal in use");
  if (o.fusion == "logistic" && correct.size() != reference.size())
    fail("fit_confidence: logistic fusion needs the truth of every step (", correct.size(), " for ",
         reference.size(), " steps)");
  ConfidenceEstimator e;
  e.fusion = o.fusion;
  e.use = o.use;
  e.reference_steps = int64_t(reference.size());
  for (int i = 0; i < kNumSignals; ++i) {
    e.lo[size_t(i)] = e.hi[size_t(i)] = reference[0][size_t(i)];
    for (const auto& s : reference) {
      if (!std::isfinite(s[size_t(i)])) fail("fit_confidence: a non-finite ", signal_name(i), " value");
      e.lo[size_t(i)] = std::min(e.lo[size_t(i)], s[size_t(i)]);
      e.hi[size_t(i)] = std::max(e.hi[size_t(i)], s[size_t(i)]);
    }
  }
  if (o.fusion == "logistic") {
    std::vector<int> used;
    for (int i = 0; i < kNumSignals; ++i)
      if (o.use[size_t(i)]) used.push_back(i);
    std::vector<std::vector<double>> x;
    for (const auto& s : reference) {
      const StepSignals c = e.normalised(s);
      std::vector<double> row;
      for (int i : used) row.push_back(c[size_t(i)]);
      x.push_back(std::move(row));
    }
    auto [w, b] = fit_logistic(x, correct, o.l2, o.max_iterations);
    for (size_t k = 0; k < used.size(); ++k) e.coef[size_t(used[k])] = w[k];
    e.intercept = b;
  }
  double sum = 0, sq = 0;
  for (const auto& s : reference) sum += e.fuse(s);
  e.mu = sum / double(reference.size());
  for (const auto& s : reference) sq += (e.fuse(s) - e.mu) * (e.fuse(s) - e.mu);
  e.sigma = std::sqrt(sq / double(reference.size()));
  return e;
}

}  // namespace mmb
