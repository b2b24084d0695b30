// Calibration, ranking, POPE, CHAIR and step metrics. Definitions: docs/metrics.md.
// Each ranking metric follows scikit-learn's definition exactly (tests/reference/metrics_ref.py
// cross-checks them); the binned calibration metrics follow the calibration study's released code (10
// equal-width bins, bin = min(floor(conf * 10), 9), empty bins skipped).
#include "mmb/metrics.h"

#include <algorithm>
#include <array>
#include <bitset>
#include <cctype>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>
#include <sstream>

#include "mmb/error.h"
#include "mmb/sentences.h"

namespace mmb {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void check_inputs(const char* fn, const std::vector<double>& conf, size_t n_other, bool check_range = true) {
  if (conf.empty()) fail(fn, ": empty input (no predictions)");
  if (conf.size() != n_other) fail(fn, ": ", conf.size(), " scores but ", n_other, " labels");
  for (size_t i = 0; i < conf.size(); ++i) {
    if (!std::isfinite(conf[i])) fail(fn, ": value ", i, " is not finite");
    if (check_range && (conf[i] < 0 || conf[i] > 1))
      fail(fn, ": confidence ", i, " is ", conf[i], ", expected a value in [0, 1]");
  }
}

// Bin index of every sample.
std::vector<int> assign_bins(const std::vector<double>& conf, int n, Binning binning) {
  std::vector<int> bin(conf.size());
  if (binning == Binning::kEqualWidth) {
    for (size_t i = 0; i < conf.size(); ++i) bin[i] = std::min(int(std::floor(conf[i] * n)), n - 1);
    return bin;
  }
  std::vector<size_t> order(conf.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return conf[a] < conf[b]; });
  const size_t N = conf.size(), base = N / size_t(n), extra = N % size_t(n);
  size_t pos = 0;
  for (int b = 0; b < n; ++b) {
    const size_t size = base + (size_t(b) < extra ? 1 : 0);
    for (size_t k = 0; k < size; ++k) bin[order[pos++]] = b;
  }
  return bin;
}

Json nan_to_null(double v) { return std::isfinite(v) ? Json(v) : Json(nullptr); }

}  // namespace

double accuracy(const std::vector<bool>& correct) {
  if (correct.empty()) fail("accuracy: empty input (no predictions)");
  return double(std::count(correct.begin(), correct.end(), true)) / double(correct.size());
}

std::vector<CalibrationBin> reliability_bins(const std::vector<double>& confidence, const std::vector<bool>& correct,
                                             int num_bins, Binning binning) {
  check_inputs("reliability_bins", confidence, correct.size());
  if (num_bins < 1) fail("reliability_bins: num_bins must be >= 1, got ", num_bins);
  auto bin = assign_bins(confidence, num_bins, binning);
  std::vector<CalibrationBin> bins(static_cast<size_t>(num_bins));
  std::vector<double> sum_conf(bins.size(), 0), sum_acc(bins.size(), 0);
  for (int b = 0; b < num_bins; ++b) {
    bins[b].lower = binning == Binning::kEqualWidth ? double(b) / num_bins : 1.0;
    bins[b].upper = binning == Binning::kEqualWidth ? double(b + 1) / num_bins : 0.0;
  }
  for (size_t i = 0; i < confidence.size(); ++i) {
    auto& B = bins[bin[i]];
    B.count++;
    sum_conf[bin[i]] += confidence[i];
    sum_acc[bin[i]] += correct[i] ? 1.0 : 0.0;
    if (binning == Binning::kEqualMass) {
      B.lower = std::min(B.lower, confidence[i]);
      B.upper = std::max(B.upper, confidence[i]);
    }
  }
  for (size_t b = 0; b < bins.size(); ++b) {
    if (bins[b].count == 0) {
      if (binning == Binning::kEqualMass) bins[b].lower = bins[b].upper = 0;
      continue;
    }
    bins[b].mean_confidence = sum_conf[b] / double(bins[b].count);
    bins[b].accuracy = sum_acc[b] / double(bins[b].count);
  }
  return bins;
}

double expected_calibration_error(const std::vector<double>& confidence, const std::vector<bool>& correct,
                                  int num_bins, Binning binning) {
  auto bins = reliability_bins(confidence, correct, num_bins, binning);
  double ece = 0;
  for (const auto& b : bins)
    if (b.count > 0) ece += double(b.count) / double(confidence.size()) * std::abs(b.accuracy - b.mean_confidence);
  return ece;
}

double maximum_calibration_error(const std::vector<double>& confidence, const std::vector<bool>& correct,
                                 int num_bins, Binning binning) {
  auto bins = reliability_bins(confidence, correct, num_bins, binning);
  double mce = 0;
  for (const auto& b : bins)
    if (b.count > 0) mce = std::max(mce, std::abs(b.accuracy - b.mean_confidence));
  return mce;
}

double brier_score(const std::vector<double>& confidence, const std::vector<bool>& correct) {
  check_inputs("brier_score", confidence, correct.size());
  double s = 0;
  for (size_t i = 0; i < confidence.size(); ++i) {
    const double d = confidence[i] - (correct[i] ? 1.0 : 0.0);
    s += d * d;
  }
  return s / double(confidence.size());
}

double binary_nll(const std::vector<double>& confidence, const std::vector<bool>& correct, double eps) {
  check_inputs("binary_nll", confidence, correct.size());
  if (!(eps > 0 && eps < 0.5)) fail("binary_nll: eps must be in (0, 0.5), got ", eps);
  double s = 0;
  for (size_t i = 0; i < confidence.size(); ++i) {
    const double p = std::clamp(confidence[i], eps, 1 - eps);
    s -= correct[i] ? std::log(p) : std::log1p(-p);
  }
  return s / double(confidence.size());
}

double auroc(const std::vector<double>& score, const std::vector<bool>& label) {
  check_inputs("auroc", score, label.size(), /*check_range=*/false);
  const size_t N = score.size();
  const double P = double(std::count(label.begin(), label.end(), true)), Q = double(N) - P;
  if (P == 0 || Q == 0) return kNaN;
  std::vector<size_t> order(N);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return score[a] < score[b]; });
  // Average ranks (1-based) over runs of equal scores: Mann–Whitney U.
  double rank_sum_pos = 0;
  for (size_t i = 0; i < N;) {
    size_t j = i;
    while (j < N && score[order[j]] == score[order[i]]) ++j;
    const double avg_rank = (double(i + 1) + double(j)) / 2.0;
    for (size_t k = i; k < j; ++k)
      if (label[order[k]]) rank_sum_pos += avg_rank;
    i = j;
  }
  return (rank_sum_pos - P * (P + 1) / 2.0) / (P * Q);
}

double average_precision(const std::vector<double>& score, const std::vector<bool>& label) {
  check_inputs("average_precision", score, label.size(), /*check_range=*/false);
  const size_t N = score.size();
  const double P = double(std::count(label.begin(), label.end(), true));
  if (P == 0) return kNaN;
  std::vector<size_t> order(N);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return score[a] > score[b]; });
  double tp = 0, fp = 0, prev_recall = 0, ap = 0;
  for (size_t i = 0; i < N;) {
    size_t j = i;
    while (j < N && score[order[j]] == score[order[i]]) {
      (label[order[j]] ? tp : fp) += 1;
      ++j;
    }
    const double recall = tp / P, precision = tp / (tp + fp);
    ap += (recall - prev_recall) * precision;
    prev_recall = recall;
    i = j;
  }
  return ap;
}

RiskCoverage risk_coverage(const std::vector<double>& confidence, const std::vector<bool>& correct) {
  check_inputs("risk_coverage", confidence, correct.size(), /*check_range=*/false);
  const size_t N = confidence.size();
  std::vector<size_t> order(N);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return confidence[a] > confidence[b]; });
  RiskCoverage rc;
  double errors = 0, prev_cov = 0;
  for (size_t i = 0; i < N;) {
    size_t j = i;
    while (j < N && confidence[order[j]] == confidence[order[i]]) {
      if (!correct[order[j]]) errors += 1;
      ++j;
    }
    const double cov = double(j) / double(N), risk = errors / double(j);
    rc.coverage.push_back(cov);
    rc.risk.push_back(risk);
    rc.threshold.push_back(confidence[order[i]]);
    rc.aurc += (cov - prev_cov) * risk;
    prev_cov = cov;
    i = j;
  }
  // Perfect ordering: C correct answers first, then the wrong ones, no ties.
  const double C = double(std::count(correct.begin(), correct.end(), true));
  double best = 0;
  for (size_t k = 1; k <= N; ++k) best += std::max(0.0, double(k) - C) / double(k);
  rc.e_aurc = rc.aurc - best / double(N);
  return rc;
}

std::string calibration_definition(int num_bins) {
  std::ostringstream os;
  os << "top-label: confidence of the chosen answer vs its correctness; ECE/MCE over " << num_bins
     << " equal-width bins, bin = min(floor(conf*" << num_bins << "), " << num_bins - 1
     << "), empty bins skipped (the calibration study); ece_equal_mass over " << num_bins
     << " equal-count bins; AUROC/AUPRC rank correct above wrong; AURC = risk-coverage area";
  return os.str();
}

Json calibration_summary(const std::vector<double>& confidence, const std::vector<bool>& correct,
                         const CalibrationOptions& options) {
  check_inputs("calibration_summary", confidence, correct.size());
  const int nb = options.num_bins;
  auto rc = risk_coverage(confidence, correct);
  Json j;
  j["n"] = int64_t(confidence.size());
  j["accuracy"] = accuracy(correct);
  j["mean_confidence"] = std::accumulate(confidence.begin(), confidence.end(), 0.0) / double(confidence.size());
  j["ece"] = expected_calibration_error(confidence, correct, nb);
  j["ece_equal_mass"] = expected_calibration_error(confidence, correct, nb, Binning::kEqualMass);
  j["mce"] = maximum_calibration_error(confidence, correct, nb);
  j["brier"] = brier_score(confidence, correct);
  j["nll"] = binary_nll(confidence, correct);
  j["auroc"] = nan_to_null(auroc(confidence, correct));
  j["auprc"] = nan_to_null(average_precision(confidence, correct));
  j["aurc"] = rc.aurc;
  j["e_aurc"] = rc.e_aurc;
  j["num_bins"] = nb;
  j["definition"] = calibration_definition(nb);
  if (options.with_curves) {
    Json bins = Json::array();
    for (const auto& b : reliability_bins(confidence, correct, nb))
      bins.push_back({{"lower", b.lower}, {"upper", b.upper}, {"count", b.count},
                      {"mean_confidence", b.mean_confidence}, {"accuracy", b.accuracy}});
    j["reliability"] = bins;
    // Thin the curve evenly by coverage (always keeping the last point).
    Json cov = Json::array(), risk = Json::array();
    const size_t M = rc.coverage.size();
    const size_t keep = options.max_curve_points > 0 ? size_t(options.max_curve_points) : M;
    double next = 0;
    for (size_t i = 0; i < M; ++i) {
      if (rc.coverage[i] + 1e-12 >= next || i + 1 == M || M <= keep) {
        cov.push_back(rc.coverage[i]);
        risk.push_back(rc.risk[i]);
        next = rc.coverage[i] + 1.0 / double(std::max<size_t>(keep - 1, 1));
      }
    }
    j["risk_coverage"] = {{"coverage", cov}, {"risk", risk}};
  }
  return j;
}

// ---- POPE ------------------------------------------------------------------------------------

Json PopeMetrics::to_json() const {
  return {{"n", n}, {"accuracy", accuracy}, {"precision", precision}, {"recall", recall}, {"f1", f1},
          {"yes_ratio", yes_ratio}, {"tp", tp}, {"fp", fp}, {"tn", tn}, {"fn", fn}, {"unparsed", unparsed}};
}

PopeMetrics pope_metrics(const std::vector<int>& predicted, const std::vector<bool>& label_yes) {
  if (predicted.empty()) fail("pope_metrics: empty input (no predictions)");
  if (predicted.size() != label_yes.size())
    fail("pope_metrics: ", predicted.size(), " predictions but ", label_yes.size(), " labels");
  PopeMetrics m;
  m.n = int64_t(predicted.size());
  int64_t yes = 0, correct = 0;
  for (size_t i = 0; i < predicted.size(); ++i) {
    const int p = predicted[i];
    if (p != 1 && p != 0 && p != -1) fail("pope_metrics: prediction ", i, " is ", p, ", expected 1, 0 or -1");
    if (p == -1) m.unparsed++;
    const bool said_yes = p == 1;
    yes += said_yes;
    correct += (p == 1 && label_yes[i]) || (p == 0 && !label_yes[i]);
    if (label_yes[i]) (said_yes ? m.tp : m.fn)++;
    else (said_yes ? m.fp : m.tn)++;
  }
  m.accuracy = double(correct) / double(m.n);
  m.precision = m.tp + m.fp > 0 ? double(m.tp) / double(m.tp + m.fp) : 0.0;
  m.recall = m.tp + m.fn > 0 ? double(m.tp) / double(m.tp + m.fn) : 0.0;
  m.f1 = m.precision + m.recall > 0 ? 2 * m.precision * m.recall / (m.precision + m.recall) : 0.0;
  m.yes_ratio = double(yes) / double(m.n);
  return m;
}

int parse_yes_no(const std::string& answer) {
  size_t i = 0;
  while (i < answer.size() && !std::isalpha(static_cast<unsigned char>(answer[i]))) ++i;
  size_t j = i;
  while (j < answer.size() && std::isalpha(static_cast<unsigned char>(answer[j]))) ++j;
  std::string w = answer.substr(i, j - i);
  for (auto& c : w) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (w == "yes") return 1;
  if (w == "no") return 0;
  return -1;
}

// ---- CHAIR and steps -------------------------------------------------------------------------

Json ChairMetrics::to_json() const {
  return {{"chair_s", chair_s}, {"chair_i", chair_i}, {"captions", captions},
          {"captions_hallucinating", captions_hallucinating}, {"mentions", mentions},
          {"hallucinated_mentions", hallucinated_mentions}, {"sentences", sentences},
          {"true_sentences", true_sentences}, {"false_sentences", false_sentences},
          {"unverifiable_sentences", unverifiable_sentences}, {"empty_captions", empty_captions},
          {"sentence_precision", sentence_precision}};
}

double object_recall(const world::Scene& scene, const std::vector<world::Verdict>& caption) {
  uint32_t said = 0;
  // Only a true sentence that names a kind recalls its objects: "There is an object." is true of
  // every scene and names none of them.
  for (const auto& v : caption)
    if (v.is_true() && v.mentioned != 0) said |= v.referents;
  int64_t visible = 0, recalled = 0;
  for (size_t i = 0; i < scene.objects.size() && i < 32; ++i) {
    if (scene.objects[i].occluded) continue;
    ++visible;
    recalled += (said >> i) & 1u;
  }
  return visible == 0 ? 1.0 : double(recalled) / double(visible);
}

double mention_recall(const world::Scene& scene, const std::vector<world::Verdict>& caption) {
  const size_t n = std::min<size_t>(scene.objects.size(), 32);
  uint32_t referred = 0;                    // objects some sentence truly refers to
  std::array<int64_t, 32> visible{}, vague{};  // per kind: visible objects, mentions without referent
  for (const auto& v : caption)
    for (size_t k = 0; k < 32; ++k) {
      if (!(v.mentioned >> k & 1u)) continue;
      uint32_t of_kind = 0;
      for (size_t i = 0; i < n; ++i)
        if ((v.referents >> i & 1u) && size_t(scene.objects[i].shape) == k) of_kind |= 1u << i;
      referred |= of_kind;
      vague[k] += of_kind == 0;
    }
  std::array<int64_t, 32> named{};
  int64_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    if (scene.objects[i].occluded) continue;
    const size_t k = size_t(scene.objects[i].shape) % 32;
    ++visible[k];
    ++total;
    named[k] += referred >> i & 1u;
  }
  int64_t recalled = 0;
  for (size_t k = 0; k < 32; ++k) recalled += std::min(visible[k], named[k] + vague[k]);
  return total == 0 ? 1.0 : double(recalled) / double(total);
}

ChairMetrics chair_metrics(const std::vector<std::vector<world::Verdict>>& captions) {
  if (captions.empty()) fail("chair_metrics: empty input (no captions)");
  ChairMetrics m;
  m.captions = int64_t(captions.size());
  for (const auto& cap : captions) {
    if (cap.empty()) m.empty_captions++;
    bool hallucinates = false;
    for (const auto& v : cap) {
      m.sentences++;
      if (v.truth == world::Truth::kTrue) m.true_sentences++;
      else if (v.truth == world::Truth::kFalse) m.false_sentences++;
      else m.unverifiable_sentences++;
      m.mentions += int64_t(std::bitset<32>(v.mentioned | v.hallucinated).count());
      const int64_t h = int64_t(std::bitset<32>(v.hallucinated).count());
      m.hallucinated_mentions += h;
      hallucinates |= h > 0;
    }
    m.captions_hallucinating += hallucinates;
  }
  m.chair_s = double(m.captions_hallucinating) / double(m.captions);
  m.chair_i = m.mentions > 0 ? double(m.hallucinated_mentions) / double(m.mentions) : 0.0;
  m.sentence_precision = m.sentences > 0 ? double(m.true_sentences) / double(m.sentences) : 0.0;
  return m;
}

namespace {

// Whether each sentence of `text` repeats an earlier one, compared without case and white space.
std::vector<bool> sentence_repeats(const std::string& text) {
  std::set<std::string> seen;
  std::vector<bool> out;
  for (const auto& s : split_sentences(text)) {
    std::string key;
    for (char c : s)
      if (!std::isspace(static_cast<unsigned char>(c))) key += char(std::tolower(static_cast<unsigned char>(c)));
    out.push_back(!key.empty() && !seen.insert(key).second);
  }
  return out;
}

}  // namespace

int64_t repeated_sentences(const std::string& text) {
  const std::vector<bool> r = sentence_repeats(text);
  return int64_t(std::count(r.begin(), r.end(), true));
}

int64_t first_repeated_sentence(const std::string& text) {
  const std::vector<bool> r = sentence_repeats(text);
  const auto it = std::find(r.begin(), r.end(), true);
  return it == r.end() ? -1 : int64_t(it - r.begin());
}

bool repeats_a_sentence(const std::string& text) { return repeated_sentences(text) > 0; }

Json StepMetrics::to_json() const {
  return {{"step_accuracy", step_accuracy},
          {"verifiable_step_accuracy", nan_to_null(verifiable_step_accuracy)},
          {"chain_accuracy", chain_accuracy},
          {"chains", chains},
          {"steps", steps},
          {"true_steps", true_steps},
          {"false_steps", false_steps},
          {"unverifiable_steps", unverifiable_steps},
          {"chains_all_true", chains_all_true},
          {"unverifiable_share", steps > 0 ? double(unverifiable_steps) / double(steps) : 0.0}};
}

StepMetrics step_metrics(const std::vector<std::vector<world::Truth>>& chains) {
  if (chains.empty()) fail("step_metrics: empty input (no chains)");
  StepMetrics m;
  m.chains = int64_t(chains.size());
  for (const auto& chain : chains) {
    bool all_true = !chain.empty();
    for (auto t : chain) {
      m.steps++;
      if (t == world::Truth::kTrue) m.true_steps++;
      else if (t == world::Truth::kFalse) m.false_steps++;
      else m.unverifiable_steps++;
      all_true &= t == world::Truth::kTrue;
    }
    m.chains_all_true += all_true;
  }
  m.step_accuracy = m.steps > 0 ? double(m.true_steps) / double(m.steps) : 0.0;
  m.verifiable_step_accuracy =
      m.true_steps + m.false_steps > 0 ? double(m.true_steps) / double(m.true_steps + m.false_steps) : kNaN;
  m.chain_accuracy = double(m.chains_all_true) / double(m.chains);
  return m;
}

}  // namespace mmb

namespace mmb {

Json StepF1::to_json() const {
  return {{"predicted", predicted}, {"reference", reference}, {"matched", matched},
          {"precision", precision}, {"recall", recall},       {"f1", f1}};
}

StepF1 step_f1(const std::vector<std::vector<std::string>>& predicted,
               const std::vector<std::vector<std::string>>& reference) {
  if (predicted.size() != reference.size())
    fail("step_f1: ", predicted.size(), " predicted chains but ", reference.size(), " reference chains");
  StepF1 m;
  for (size_t c = 0; c < predicted.size(); ++c) {
    std::vector<bool> used(reference[c].size(), false);
    for (const auto& p : predicted[c])
      for (size_t r = 0; r < reference[c].size(); ++r)
        if (!used[r] && reference[c][r] == p) {
          used[r] = true;
          ++m.matched;
          break;
        }
    m.predicted += int64_t(predicted[c].size());
    m.reference += int64_t(reference[c].size());
  }
  m.precision = m.predicted ? double(m.matched) / double(m.predicted) : 0.0;
  m.recall = m.reference ? double(m.matched) / double(m.reference) : 0.0;
  m.f1 = m.precision + m.recall > 0 ? 2 * m.precision * m.recall / (m.precision + m.recall) : 0.0;
  return m;
}

}  // namespace mmb
