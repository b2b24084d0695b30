// Metrics: hand-computed cases for every definition, a cross-check against scikit-learn (and
// independent numpy code) on random data with ties, verbalised-confidence parsing, prediction
// files and their bad inputs, and `mmb metrics` end to end.
#include "mmb/metrics.h"

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>

#include "mmb/atomic_file.h"
#include "mmb/elicitation.h"
#include "mmb/verifier.h"
#include "test_util.h"
#include "world_test_util.h"

using mmb::testing::run_capture;

using mmb::testing::expect_throw_with;
using mmb::testing::TempDir;

namespace {

mmb::world::Verdict verdict(mmb::world::Truth t, uint32_t mentioned, uint32_t hallucinated) {
  mmb::world::Verdict v;
  v.truth = t;
  v.mentioned = mentioned;
  v.hallucinated = hallucinated;
  return v;
}

}  // namespace

TEST(Metrics, AccuracyBrierNll) {
  EXPECT_DOUBLE_EQ(mmb::accuracy({true, false, true, true}), 0.75);
  EXPECT_NEAR(mmb::brier_score({0.8, 0.3}, {true, false}), (0.04 + 0.09) / 2, 1e-15);
  EXPECT_NEAR(mmb::binary_nll({0.8, 0.3}, {true, false}), -(std::log(0.8) + std::log(0.7)) / 2, 1e-15);
  // Clipping: a confident wrong answer costs -log(eps), not infinity.
  EXPECT_NEAR(mmb::binary_nll({1.0}, {false}, 1e-12), -std::log(1e-12), 1e-3);
}

TEST(Metrics, EceEqualWidthFollowsTheCalibrationStudysBinning) {
  // Bins: 0.05 -> 0, 0.15 -> 1, 0.95 -> 9 (twice).
  const std::vector<double> c = {0.05, 0.15, 0.95, 0.95};
  const std::vector<bool> y = {false, false, true, false};
  EXPECT_NEAR(mmb::expected_calibration_error(c, y), 0.25 * 0.05 + 0.25 * 0.15 + 0.5 * 0.45, 1e-12);
  EXPECT_NEAR(mmb::maximum_calibration_error(c, y), 0.45, 1e-12);
  // Edges: conf 1.0 goes to the last bin, 0.1 to bin 1 ([0.1, 0.2)), 0.0 to bin 0.
  auto bins = mmb::reliability_bins({1.0, 0.1, 0.0}, {true, true, false}, 10);
  ASSERT_EQ(bins.size(), 10u);
  EXPECT_EQ(bins[9].count, 1);
  EXPECT_EQ(bins[1].count, 1);
  EXPECT_EQ(bins[0].count, 1);
  EXPECT_DOUBLE_EQ(bins[1].lower, 0.1);
  EXPECT_DOUBLE_EQ(bins[1].upper, 0.2);
  EXPECT_EQ(bins[5].count, 0);  // empty bins are listed, skipped by ECE
  // Perfect calibration in every bin -> 0.
  EXPECT_NEAR(mmb::expected_calibration_error({0.5, 0.5, 1.0}, {true, false, true}), 0.0, 1e-15);
  // 2 bins.
  EXPECT_NEAR(mmb::expected_calibration_error({0.2, 0.9}, {true, true}, 2), 0.5 * 0.8 + 0.5 * 0.1, 1e-12);
}

TEST(Metrics, EceEqualMassSplitsSortedRunsLargerFirst) {
  // Sorted runs of sizes 3 and 2: {0.1, 0.2, 0.3} acc 1/3, {0.4, 0.5} acc 1.
  const std::vector<double> c = {0.5, 0.1, 0.4, 0.3, 0.2};
  const std::vector<bool> y = {true, false, true, false, true};
  const double e = mmb::expected_calibration_error(c, y, 2, mmb::Binning::kEqualMass);
  EXPECT_NEAR(e, 0.6 * std::abs(1.0 / 3 - 0.2) + 0.4 * std::abs(1.0 - 0.45), 1e-12);
  auto bins = mmb::reliability_bins(c, y, 2, mmb::Binning::kEqualMass);
  EXPECT_DOUBLE_EQ(bins[0].lower, 0.1);
  EXPECT_DOUBLE_EQ(bins[0].upper, 0.3);
  EXPECT_EQ(bins[1].count, 2);
  // More bins than samples: the extra bins are empty.
  EXPECT_NEAR(mmb::expected_calibration_error({0.7}, {true}, 10, mmb::Binning::kEqualMass), 0.3, 1e-12);
}

TEST(Metrics, AurocAndAveragePrecisionHandCases) {
  // scikit-learn's documented example: AUROC 0.75, AP 0.8333.
  const std::vector<double> s = {0.1, 0.4, 0.35, 0.8};
  const std::vector<bool> y = {false, false, true, true};
  EXPECT_NEAR(mmb::auroc(s, y), 0.75, 1e-12);
  EXPECT_NEAR(mmb::average_precision(s, y), 0.5 * 1.0 + 0.5 * (2.0 / 3.0), 1e-12);
  // Ties count one half.
  EXPECT_NEAR(mmb::auroc({0.2, 0.5, 0.5}, {false, true, false}), 0.75, 1e-12);
  EXPECT_NEAR(mmb::auroc({0.5, 0.5, 0.5, 0.5}, {true, false, true, false}), 0.5, 1e-12);
  // A tie group enters AP as one threshold: precision 1/2 at recall 1.
  EXPECT_NEAR(mmb::average_precision({0.5, 0.5}, {true, false}), 0.5, 1e-12);
  // Undefined -> NaN.
  EXPECT_TRUE(std::isnan(mmb::auroc({0.1, 0.2}, {true, true})));
  EXPECT_TRUE(std::isnan(mmb::average_precision({0.1, 0.2}, {false, false})));
}

TEST(Metrics, RiskCoverageHandCase) {
  // Risks of the k most confident: 0, 1/2, 1/3, 2/4.
  auto rc = mmb::risk_coverage({0.9, 0.8, 0.7, 0.6}, {true, false, true, false});
  EXPECT_NEAR(rc.aurc, (0 + 0.5 + 1.0 / 3 + 0.5) / 4, 1e-12);
  // Perfect order (T, T, F, F): 0, 0, 1/3, 1/2.
  EXPECT_NEAR(rc.e_aurc, rc.aurc - (1.0 / 3 + 0.5) / 4, 1e-12);
  ASSERT_EQ(rc.coverage.size(), 4u);
  EXPECT_DOUBLE_EQ(rc.coverage.back(), 1.0);
  // One tie group: a single point at full coverage.
  auto tie = mmb::risk_coverage({0.5, 0.5}, {true, false});
  EXPECT_EQ(tie.coverage.size(), 1u);
  EXPECT_NEAR(tie.aurc, 0.5, 1e-12);
}

TEST(Metrics, PopeCountsPredictionsNotLabels) {
  // tp: 0, 5; fp: 1; tn: 2, 4 (unparsed counts as "no"); fn: 3. Correct: 0, 2, 5.
  auto m = mmb::pope_metrics({1, 1, 0, 0, -1, 1}, {true, false, false, true, false, true});
  EXPECT_EQ(m.tp, 2);
  EXPECT_EQ(m.fp, 1);
  EXPECT_EQ(m.tn, 2);
  EXPECT_EQ(m.fn, 1);
  EXPECT_EQ(m.unparsed, 1);
  EXPECT_DOUBLE_EQ(m.accuracy, 0.5);
  EXPECT_DOUBLE_EQ(m.precision, 2.0 / 3);
  EXPECT_DOUBLE_EQ(m.recall, 2.0 / 3);
  EXPECT_NEAR(m.f1, 2.0 / 3, 1e-15);
  EXPECT_DOUBLE_EQ(m.yes_ratio, 0.5);  // of predictions (labels are 3/6 too; next case differs)
  auto all_yes = mmb::pope_metrics({1, 1, 1, 1}, {true, false, false, false});
  EXPECT_DOUBLE_EQ(all_yes.yes_ratio, 1.0);
  EXPECT_DOUBLE_EQ(all_yes.accuracy, 0.25);
  auto all_no = mmb::pope_metrics({0, 0}, {true, false});
  EXPECT_DOUBLE_EQ(all_no.precision, 0.0);
  EXPECT_DOUBLE_EQ(all_no.f1, 0.0);
  EXPECT_EQ(mmb::parse_yes_no("Yes."), 1);
  EXPECT_EQ(mmb::parse_yes_no("  no, there is not"), 0);
  EXPECT_EQ(mmb::parse_yes_no("NO"), 0);
  EXPECT_EQ(mmb::parse_yes_no("Maybe."), -1);
  EXPECT_EQ(mmb::parse_yes_no("yesterday"), -1);
  EXPECT_EQ(mmb::parse_yes_no(""), -1);
}

TEST(Metrics, ChairAndStepsFromVerdicts) {
  using mmb::world::Truth;
  // Caption 1 mentions kinds 0, 1 then hallucinates kind 2; caption 2 is clean; caption 3 empty.
  std::vector<std::vector<mmb::world::Verdict>> caps = {
      {verdict(Truth::kTrue, 0b011, 0), verdict(Truth::kFalse, 0b100, 0b100)},
      {verdict(Truth::kUnverifiable, 0b001, 0)},
      {}};
  auto c = mmb::chair_metrics(caps);
  EXPECT_EQ(c.captions, 3);
  EXPECT_EQ(c.captions_hallucinating, 1);
  EXPECT_EQ(c.mentions, 4);
  EXPECT_EQ(c.hallucinated_mentions, 1);
  EXPECT_DOUBLE_EQ(c.chair_s, 1.0 / 3);
  EXPECT_DOUBLE_EQ(c.chair_i, 0.25);
  EXPECT_EQ(c.unverifiable_sentences, 1);
  EXPECT_EQ(c.empty_captions, 1);
  EXPECT_EQ(c.sentences, 3);

  auto s = mmb::step_metrics(
      {{Truth::kTrue, Truth::kTrue, Truth::kTrue}, {Truth::kTrue, Truth::kFalse, Truth::kUnverifiable}});
  EXPECT_EQ(s.steps, 6);
  EXPECT_DOUBLE_EQ(s.step_accuracy, 4.0 / 6);
  EXPECT_DOUBLE_EQ(s.verifiable_step_accuracy, 4.0 / 5);
  EXPECT_DOUBLE_EQ(s.chain_accuracy, 0.5);
  EXPECT_EQ(s.unverifiable_steps, 1);
}

TEST(Metrics, BadInputsThrowWithTheFunctionName) {
  expect_throw_with([] { mmb::expected_calibration_error({}, {}); }, "empty input");
  expect_throw_with([] { mmb::brier_score({0.5}, {true, false}); }, "brier_score: 1 scores but 2 labels");
  expect_throw_with([] { mmb::expected_calibration_error({1.5}, {true}); }, "expected a value in [0, 1]");
  expect_throw_with([] { mmb::expected_calibration_error({0.5}, {true}, 0); }, "num_bins must be >= 1");
  expect_throw_with([] { mmb::auroc({NAN, 0.1}, {true, false}); }, "not finite");
  expect_throw_with([] { mmb::pope_metrics({}, {}); }, "pope_metrics: empty input");
  expect_throw_with([] { mmb::pope_metrics({2}, {true}); }, "expected 1, 0 or -1");
  expect_throw_with([] { mmb::chair_metrics({}); }, "no captions");
}

// Cross-check on random data with many ties against scikit-learn / independent numpy code.
TEST(Metrics, MatchScikitLearnOnRandomData) {
  TempDir tmp;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> conf;
  std::vector<bool> correct;
  std::vector<int> pope_pred;
  std::vector<bool> pope_label;
  for (int i = 0; i < 997; ++i) {
    // Rounded to 2 decimals: ties, and values on bin edges (0.1, 0.2, ...).
    double c = std::round((0.02 + 0.96 * u(rng)) * 100) / 100;
    if (i % 50 == 0) c = 1.0;
    conf.push_back(c);
    correct.push_back(u(rng) < c * 0.8 + 0.1);
    pope_label.push_back(u(rng) < 0.5);
    const double r = u(rng);
    pope_pred.push_back(r < 0.05 ? -1 : (r < 0.55) == bool(pope_label.back()) ? 1 : 0);
  }
  mmb::Json in = {{"confidence", conf}, {"correct", correct}, {"pope_pred", pope_pred},
                  {"pope_label", pope_label}, {"bins", 10}};
  mmb::write_file_atomic(tmp.file("in.json"), in.dump());
  int status = 0;
  const std::string out = run_capture(std::string(MMB_PYTHON) + " " + MMB_SOURCE_DIR +
                                          "/tests/reference/metrics_ref.py " + tmp.file("in.json"),
                                      &status);
  ASSERT_EQ(status, 0) << out;
  auto ref = mmb::Json::parse(out);
  auto ours = mmb::calibration_summary(conf, correct);
  for (const char* k : {"auroc", "auprc", "brier", "nll", "ece", "mce", "ece_equal_mass", "aurc", "e_aurc"}) {
    const double diff = std::abs(ours[k].get<double>() - ref[k].get<double>());
    std::printf("  %-16s mmb %.12f  reference %.12f  |diff| %.2e\n", k, ours[k].get<double>(), ref[k].get<double>(),
                diff);
    EXPECT_LT(diff, 1e-9) << k;
  }
  auto p = mmb::pope_metrics(pope_pred, pope_label);
  EXPECT_NEAR(p.precision, ref["pope_precision"].get<double>(), 1e-12);
  EXPECT_NEAR(p.recall, ref["pope_recall"].get<double>(), 1e-12);
  EXPECT_NEAR(p.f1, ref["pope_f1"].get<double>(), 1e-12);
  EXPECT_NEAR(p.accuracy, ref["pope_accuracy"].get<double>(), 1e-12);
  EXPECT_NEAR(p.yes_ratio, ref["pope_yes_ratio"].get<double>(), 1e-12);
}

TEST(Elicitation, VerbalisedConfidence) {
  auto v = mmb::parse_verbal_confidence("I'm 80% sure it is red.");
  EXPECT_TRUE(v.found);
  EXPECT_TRUE(v.numeric);
  EXPECT_DOUBLE_EQ(v.value, 0.8);
  EXPECT_DOUBLE_EQ(mmb::parse_verbal_confidence("Confidence: 0.75").value, 0.75);
  EXPECT_DOUBLE_EQ(mmb::parse_verbal_confidence("about 65 percent").value, 0.65);
  EXPECT_DOUBLE_EQ(mmb::parse_verbal_confidence("8/10").value, 0.8);
  EXPECT_DOUBLE_EQ(mmb::parse_verbal_confidence("7 out of 10").value, 0.7);
  EXPECT_DOUBLE_EQ(mmb::parse_verbal_confidence("There is a red circle with total certainty.").value, 0.9);
  EXPECT_DOUBLE_EQ(mmb::parse_verbal_confidence("The star is yellow, but I'm not sure.").value, 0.3);
  EXPECT_DOUBLE_EQ(mmb::parse_verbal_confidence("The star is yellow, but I\xE2\x80\x99m not sure.").value, 0.3);
  EXPECT_DOUBLE_EQ(mmb::parse_verbal_confidence("but I can't be entirely sure").value, 0.5);
  EXPECT_DOUBLE_EQ(mmb::parse_verbal_confidence("and I believe this is right").value, 0.7);
  EXPECT_DOUBLE_EQ(mmb::parse_verbal_confidence("and it needs checking").value, 0.1);
  EXPECT_DOUBLE_EQ(mmb::parse_verbal_confidence("That is unlikely.").value, 0.3);
  EXPECT_DOUBLE_EQ(mmb::parse_verbal_confidence("Likely a star.").value, 0.7);
  EXPECT_FALSE(mmb::parse_verbal_confidence("There are two circles.").found);
  EXPECT_FALSE(mmb::parse_verbal_confidence("There are 3 circles.").found);  // a count, not a probability
  EXPECT_FALSE(mmb::parse_verbal_confidence("I am 150% sure").numeric);
  EXPECT_FALSE(mmb::parse_verbal_confidence("uncertainty").found);  // whole words only
  EXPECT_NEAR(mmb::sequence_confidence({std::log(0.5f), std::log(0.125f)}), 0.25, 1e-6);
}

TEST(PredictionFile, ReadsGroupsLabelsAndPope) {
  TempDir tmp;
  mmb::write_file_atomic(
      tmp.file("p.jsonl"),
      "{\"confidence\": 0.9, \"correct\": true, \"group\": \"a\", \"label\": \"yes\", \"prediction\": \"Yes.\"}\n"
      "\n"
      "{\"confidence\": 0.6, \"correct\": 0, \"group\": \"a\", \"label\": \"no\", \"prediction\": \"yes\"}\n"
      "{\"confidence\": 0.7, \"correct\": 1, \"group\": \"b\", \"label\": \"no\", \"prediction\": \"no\"}\n");
  auto recs = mmb::read_prediction_records(tmp.file("p.jsonl"));
  ASSERT_EQ(recs.size(), 3u);
  auto m = mmb::prediction_metrics(recs);
  EXPECT_EQ(m["all"]["n"], 3);
  EXPECT_EQ(m["groups"]["a"]["n"], 2);
  EXPECT_EQ(m["labels"]["no"]["n"], 2);
  EXPECT_DOUBLE_EQ(m["pope"]["all"]["yes_ratio"].get<double>(), 2.0 / 3);
}

TEST(PredictionFile, BadLinesNameFileAndLine) {
  TempDir tmp;
  auto check = [&](const std::string& text, const std::string& needle) {
    mmb::write_file_atomic(tmp.file("bad.jsonl"), text);
    expect_throw_with([&] { mmb::read_prediction_records(tmp.file("bad.jsonl")); }, needle);
  };
  const std::string good = "{\"confidence\": 0.5, \"correct\": true}\n";
  check(good + "{\"correct\": true}\n", "bad.jsonl:2: missing key 'confidence'");
  check(good + good + "{\"confidence\": 1.2, \"correct\": true}\n", "bad.jsonl:3: 'confidence' is 1.2");
  check(good + "{\"confidence\": 0.5, \"correct\": \"yes\"}\n", "bad.jsonl:2: 'correct' must be true/false or 0/1");
  check(good + "{\"confidence\": 0.5, \"correct\": true, \"group\": [1]}\n", "bad.jsonl:2: key 'group'");
  check(good + "[1, 2]\n", "bad.jsonl:2: expected a JSON object");
  check(good + "{not json\n", "bad.jsonl:2");
  check("", "no predictions");
  check("\n\n", "no predictions");
}

TEST(PredictionFile, MetricsCommandEndToEnd) {
  TempDir tmp;
  mmb::write_file_atomic(tmp.file("p.jsonl"),
                         "{\"confidence\": 0.9, \"correct\": true, \"group\": \"g1\"}\n"
                         "{\"confidence\": 0.2, \"correct\": false, \"group\": \"g2\"}\n");
  int status = 0;
  std::string out = run_capture(std::string(MMB_BINARY_DIR) + "/mmb metrics --in " + tmp.file("p.jsonl") +
                                    " --out " + tmp.file("run"),
                                &status);
  ASSERT_EQ(status, 0) << out;
  EXPECT_NE(out.find("group g1"), std::string::npos) << out;
  EXPECT_NE(out.find("ECE"), std::string::npos) << out;
  auto r = mmb::read_json_file(tmp.file("run/results.json"));
  EXPECT_EQ(r["all"]["n"], 2);
  EXPECT_TRUE(r["groups"].contains("g2"));
  mmb::write_file_atomic(tmp.file("empty.jsonl"), "");
  out = run_capture(std::string(MMB_BINARY_DIR) + "/mmb metrics --in " + tmp.file("empty.jsonl"), &status);
  EXPECT_EQ(status, 1);
  EXPECT_NE(out.find("error: read_prediction_records"), std::string::npos) << out;
  EXPECT_NE(out.find("no predictions"), std::string::npos) << out;
}

TEST(Metrics, RepeatsASentenceIgnoresCaseAndSpacing) {
  EXPECT_FALSE(mmb::repeats_a_sentence(""));
  EXPECT_FALSE(mmb::repeats_a_sentence("There is a red star. There is a blue star."));
  EXPECT_TRUE(mmb::repeats_a_sentence("There is a red star. There is a blue star. There is a red star."));
  EXPECT_TRUE(mmb::repeats_a_sentence("There is a red star.  there is a  red star."));
  EXPECT_EQ(mmb::first_repeated_sentence(""), -1);
  EXPECT_EQ(mmb::first_repeated_sentence("There is a red star. There is a blue star."), -1);
  EXPECT_EQ(mmb::first_repeated_sentence("A star. A moon. A star. A moon. A star."), 2);
  EXPECT_EQ(mmb::first_repeated_sentence("A star.  a STAR. A moon."), 1);
  EXPECT_EQ(mmb::repeated_sentences("A star. A moon. A star. A moon. A star."), 3);
}

TEST(Metrics, MentionRecallCountsNamedObjectsTrueOrNot) {
  const mmb::world::Verifier v;
  auto scene = mmb::testing::hand_scene();  // a red circle and a yellow star visible, a square hidden
  const auto verdicts = [&](const std::vector<std::string>& sentences) {
    std::vector<mmb::world::Verdict> out;
    for (const auto& s : sentences) out.push_back(v.verify(scene, s));
    return out;
  };
  const auto both = verdicts({"There is a red circle.", "There is a yellow star."});
  EXPECT_DOUBLE_EQ(mmb::mention_recall(scene, both), 1.0);
  EXPECT_DOUBLE_EQ(mmb::object_recall(scene, both), 1.0);
  // A wrong colour still names the circle: mentioned, not recalled.
  const auto wrong = verdicts({"There is a blue circle."});
  EXPECT_DOUBLE_EQ(mmb::mention_recall(scene, wrong), 0.5);
  EXPECT_DOUBLE_EQ(mmb::object_recall(scene, wrong), 0.0);
  // A hallucinated kind, a kindless sentence and the hidden square name no visible object.
  EXPECT_DOUBLE_EQ(mmb::mention_recall(scene, verdicts({"There is a green heart.", "There is an object.",
                                                         "There is a square."})),
                   0.0);
  EXPECT_DOUBLE_EQ(mmb::mention_recall(scene, {}), 0.0);
  // Two circles: one true sentence names one of them, twice said still one; two wrong ones name both.
  scene.objects[1].shape = mmb::world::Shape::kCircle;
  EXPECT_DOUBLE_EQ(mmb::mention_recall(scene, verdicts({"There is a red circle.", "There is a red circle."})), 0.5);
  EXPECT_DOUBLE_EQ(mmb::mention_recall(scene, verdicts({"There is a blue circle.", "There is a green circle."})), 1.0);
  EXPECT_DOUBLE_EQ(mmb::mention_recall(scene, verdicts({"There is a red circle.", "There is a green circle."})), 1.0);
  EXPECT_DOUBLE_EQ(mmb::mention_recall(scene, verdicts({"There are two circles."})), 1.0);
  EXPECT_DOUBLE_EQ(mmb::mention_recall(scene, verdicts({"There is a blue circle.", "There is a green circle.",
                                                         "There is a pink circle."})),
                   1.0);  // at most the kind's visible objects
  scene.objects.clear();
  EXPECT_DOUBLE_EQ(mmb::mention_recall(scene, {}), 1.0);
}
