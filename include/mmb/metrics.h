// Evaluation metrics: calibration, selective prediction, POPE, CHAIR and step accuracy.
// Free functions over plain vectors; docs/metrics.md gives every definition and how it differs
// from lmms-eval, VLMEvalKit, torchmetrics and netcal.
//
// Conventions (top-label, the calibration study): `confidence[i]` in [0, 1] is the probability the model gave
// to the answer it chose, `correct[i]` whether that answer was right. Every function throws
// mmb::Error "<function>: ..." on an empty input, mismatched lengths, a confidence outside [0, 1]
// or not finite, or a bin count < 1. A value that is undefined (AUROC with one class) is NaN;
// JSON output writes it as null.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mmb/json.h"
#include "mmb/verifier.h"

namespace mmb {

// ---- calibration -----------------------------------------------------------------------------

// How samples are assigned to bins.
enum class Binning {
  kEqualWidth,  // bin = min(floor(conf * n), n - 1): [0, 1/n), [1/n, 2/n), ..., [(n-1)/n, 1]
  kEqualMass,   // sorted by confidence (stable), cut into n runs of sizes differing by at most 1,
                // the larger runs first (numpy.array_split); ties may straddle a cut
};

struct CalibrationBin {
  double lower = 0, upper = 0;  // equal-width: the bin's edges; equal-mass: min / max confidence in it
  int64_t count = 0;
  double mean_confidence = 0;   // 0 when empty
  double accuracy = 0;          // 0 when empty
};

// Share of true values.
double accuracy(const std::vector<bool>& correct);

// Reliability-diagram data: all n bins (empty ones included, count 0), in confidence order.
std::vector<CalibrationBin> reliability_bins(const std::vector<double>& confidence, const std::vector<bool>& correct,
                                             int num_bins = 10, Binning binning = Binning::kEqualWidth);

// ECE = sum over non-empty bins of (n_b / N) * |acc_b - conf_b|.
double expected_calibration_error(const std::vector<double>& confidence, const std::vector<bool>& correct,
                                  int num_bins = 10, Binning binning = Binning::kEqualWidth);
// MCE = max over non-empty bins of |acc_b - conf_b|.
double maximum_calibration_error(const std::vector<double>& confidence, const std::vector<bool>& correct,
                                 int num_bins = 10, Binning binning = Binning::kEqualWidth);
// Brier = mean (conf - correct)^2.
double brier_score(const std::vector<double>& confidence, const std::vector<bool>& correct);
// Binary NLL = -mean [y log p + (1 - y) log(1 - p)], p clipped to [eps, 1 - eps] (eps = the float64
// epsilon, as scikit-learn's log_loss with eps="auto"); nats.
double binary_nll(const std::vector<double>& confidence, const std::vector<bool>& correct,
                  double eps = 2.220446049250313e-16);

// ---- ranking -----------------------------------------------------------------------------------

// Area under the ROC curve of `score` for the positives `label` (ties: average ranks, which is
// exactly sklearn's trapezoid over distinct thresholds). NaN if all labels are equal.
double auroc(const std::vector<double>& score, const std::vector<bool>& label);
// Average precision as sklearn.metrics.average_precision_score: sum over distinct thresholds, in
// decreasing order, of (R_k - R_{k-1}) * P_k (no interpolation). NaN without positives.
double average_precision(const std::vector<double>& score, const std::vector<bool>& label);

// Risk–coverage curve of selective prediction: answer only when confidence >= t. At each distinct
// confidence t (decreasing), coverage = share answered, risk = error rate among them.
// AURC = sum_j (coverage_j - coverage_{j-1}) * risk_j (a step integral; without ties it equals
// (1/N) sum_k risk of the k most confident). E-AURC = AURC minus the AURC of a perfect ordering
// (all correct answers first) with the same accuracy.
struct RiskCoverage {
  std::vector<double> coverage;  // increasing, last = 1
  std::vector<double> risk;
  std::vector<double> threshold; // the confidence of each point
  double aurc = 0;
  double e_aurc = 0;
};
RiskCoverage risk_coverage(const std::vector<double>& confidence, const std::vector<bool>& correct);

// ---- everything at once ----------------------------------------------------------------------

struct CalibrationOptions {
  int num_bins = 10;           // equal-width and equal-mass bins
  bool with_curves = true;     // include reliability bins and the risk-coverage curve
  int max_curve_points = 101;  // risk-coverage points kept (evenly by coverage); 0 = all
};

// {"n", "accuracy", "mean_confidence", "ece", "ece_equal_mass", "mce", "brier", "nll", "auroc",
//  "auprc", "aurc", "e_aurc", "definition", and with curves "reliability" (list of bins) and
//  "risk_coverage" {"coverage", "risk"}}. AUROC / AUPRC rank correct answers above wrong ones
// by confidence (positive class = correct).
Json calibration_summary(const std::vector<double>& confidence, const std::vector<bool>& correct,
                         const CalibrationOptions& options = {});

// The sentence every report prints next to the numbers.
std::string calibration_definition(int num_bins);

// ---- POPE ------------------------------------------------------------------------------------

// Prediction codes: 1 = yes, 0 = no, -1 = neither (unparsed answer).
struct PopeMetrics {
  int64_t n = 0, tp = 0, fp = 0, tn = 0, fn = 0;
  int64_t unparsed = 0;     // predictions neither yes nor no: never correct, and counted as
                            // "no" in tp/fp/tn/fn (as VLMEvalKit)
  double accuracy = 0;      // correct / n (an unparsed answer is never correct)
  double precision = 0;     // tp / (tp + fp), 0 when no "yes" predictions
  double recall = 0;        // tp / (tp + fn)
  double f1 = 0;
  double yes_ratio = 0;     // share of *predictions* that are yes (not of labels)
  Json to_json() const;
};
PopeMetrics pope_metrics(const std::vector<int>& predicted, const std::vector<bool>& label_yes);

// "yes" / "no" / -1 from an answer: its first word, case- and punctuation-insensitive
// ("Yes.", "no, there is not"). Anything else is -1.
int parse_yes_no(const std::string& answer);

// ---- CHAIR and steps (from the world's verifier) ---------------------------------------------

// CHAIR_i = hallucinated object mentions / object mentions; CHAIR_s = captions with >= 1
// hallucinated mention / captions. A mention is a kind asserted by one sentence (a kind named in
// two sentences counts twice, as CHAIR counts word occurrences). Unverifiable sentences are
// counted, and their mentions still count (the verifier names kinds even when it cannot judge).
struct ChairMetrics {
  int64_t captions = 0, captions_hallucinating = 0;
  int64_t mentions = 0, hallucinated_mentions = 0;
  int64_t sentences = 0, true_sentences = 0, false_sentences = 0, unverifiable_sentences = 0;
  int64_t empty_captions = 0;  // no sentences at all (counted in captions)
  double chair_s = 0, chair_i = 0;
  double sentence_precision = 0;  // true / all sentences
  Json to_json() const;
};
ChairMetrics chair_metrics(const std::vector<std::vector<world::Verdict>>& captions);

// Object recall of one description: the share of the scene's visible (not occluded) objects that
// some true sentence naming a kind talks about (Verdict::referents of a sentence with
// Verdict::mentioned != 0; "There is an object." recalls nothing), in [0, 1]; 1 for a scene with no
// visible object. Saying less must not count as hallucinating less: CHAIR's companion.
double object_recall(const world::Scene& scene, const std::vector<world::Verdict>& caption);

// Mention recall of one description (CHAIR's coverage, per object): the share of the scene's
// visible objects whose kind the description names, truly or not, in [0, 1] (1 for a scene with
// no visible object). An object counts when some sentence refers to it (Verdict::referents of a
// sentence naming its kind), and each sentence that names a kind without referring to any object
// of it ("There is a blue circle." about a red circle) counts one more object of that kind, up to
// the kind's visible objects; a hallucinated kind names nothing. Read beside object_recall: what
// a description names against what it gets right.
double mention_recall(const world::Scene& scene, const std::vector<world::Verdict>& caption);

// True when some sentence of `text` (split_sentences) occurs twice, compared without case and
// white space: the description loops ("There is a star. There is a star.").
bool repeats_a_sentence(const std::string& text);
// The number of sentences of `text` that repeat an earlier one (compared as above).
int64_t repeated_sentences(const std::string& text);
// The index (in sentence_spans(text) order) of the first sentence that repeats an earlier one, or
// -1 when none does.
int64_t first_repeated_sentence(const std::string& text);

// Step-level accuracy of reasoning chains: every sentence is a step.
struct StepMetrics {
  int64_t chains = 0, steps = 0, true_steps = 0, false_steps = 0, unverifiable_steps = 0;
  int64_t chains_all_true = 0;
  double step_accuracy = 0;             // true / steps (unverifiable count as not true)
  double verifiable_step_accuracy = 0;  // true / (true + false); NaN when none verifiable
  double chain_accuracy = 0;            // chains whose every step is true / chains
  Json to_json() const;
};
StepMetrics step_metrics(const std::vector<std::vector<world::Truth>>& chains);

// Step F1 by exact matching (MMBoundary's step F1 with the world's reference chains): within a
// chain, a predicted step matches an unmatched reference step with the same key (claim_key, in
// mmb/elicitation.h); counts are summed over chains. precision = matched / predicted, recall =
// matched / reference, f1 their harmonic mean (0 when both are 0). Throws on chains of unequal count.
struct StepF1 {
  int64_t predicted = 0, reference = 0, matched = 0;
  double precision = 0, recall = 0, f1 = 0;
  Json to_json() const;
};
StepF1 step_f1(const std::vector<std::vector<std::string>>& predicted,
               const std::vector<std::vector<std::string>>& reference);

// ---- prediction files (`mmb metrics --in`) ----------------------------------------------------

// One line of a prediction file: {"confidence": 0.8, "correct": true, "label": "yes",
// "group": "pope/random", "prediction": "yes"}; label, group and prediction are optional.
struct PredictionRecord {
  double confidence = 0;
  bool correct = false;
  std::string label;       // "" when absent; numbers and booleans are written as text
  std::string group;       // "" when absent
  std::string prediction;  // "" when absent
};

// Reads a JSONL prediction file. Throws mmb::Error "read_prediction_records: <path>:<line>: ..."
// on a bad line (not an object, missing / mistyped key, confidence outside [0, 1]) and on a file
// without records.
std::vector<PredictionRecord> read_prediction_records(const std::string& path);

// {"all": calibration_summary, "groups": {group: summary}, "labels": {label: summary},
//  "pope": {...} when every record has a yes/no label and prediction}.
Json prediction_metrics(const std::vector<PredictionRecord>& records, const CalibrationOptions& options = {});

}  // namespace mmb
