// MMBoundary's step confidence: the signal formulas and the logistic fusion against an independent
// implementation (tests/reference/boundary_ref.py: PyTorch and scikit-learn), step spans, the
// batched TokenSAR against one text-tower forward per removed token, normalisation, level cuts,
// the phrase file and phrase placement, confidence.json, stated-confidence parsing and step F1,
// the step file reader and the SFT records.
#include <gtest/gtest.h>

#include <cmath>

#include "mmb/atomic_file.h"
#include "mmb/boundary.h"
#include "mmb/confidence.h"
#include "mmb/elicitation.h"
#include "mmb/metrics.h"
#include "mmb/rl.h"
#include "mmb/sentences.h"
#include "mmb/strings.h"
#include "test_util.h"
#include "vlm_test_util.h"

using mmb::Json;
using mmb::testing::expect_throw_with;
using mmb::testing::TempDir;

namespace {

struct ToyText {
  TempDir dir;
  std::unique_ptr<mmb::Tokenizer> tok;
  std::unique_ptr<mmb::ClipScorer> clip;
};

std::unique_ptr<ToyText> make_toy_text() {
  auto t = std::make_unique<ToyText>();
  mmb::TokenizerTrainOptions to;
  for (int i = 0; i < 200; ++i)
    to.lines.push_back("There is one red cube. So, the answer is one. Two hearts are blue. A moon is at the top.");
  to.vocab_size = 300;
  to.output_prefix = t->dir.file("tok");
  mmb::train_tokenizer(to);
  t->tok = std::make_unique<mmb::Tokenizer>(mmb::Tokenizer::load(t->dir.file("tok.model")));
  mmb::ClipConfig cc = mmb::testing::tiny_clip(t->tok->num_ids(), 32);
  cc.text.eos_token_id = t->tok->eos_id();
  mmb::ClipModel clip(cc);
  mmb::init_weights(*clip, 21);
  t->clip = std::make_unique<mmb::ClipScorer>(clip, mmb::Tokenizer::load(t->dir.file("tok.model")), 32);
  return t;
}

std::vector<int64_t> ids64(const std::vector<int32_t>& v) { return {v.begin(), v.end()}; }

}  // namespace

TEST(Confidence, SignalFormulasAndLogisticFitMatchAnIndependentImplementation) {
  TempDir d;
  const Json steps = Json::array({
      {{"logprobs", {-0.1, -2.3, -0.01, -0.7}}, {"entropies", {0.2, 1.9, 0.05, 0.8}}, {"sims", {0.99, 0.7, 1.0, 0.85}}},
      {{"logprobs", {-1.5}}, {"entropies", {2.5}}, {"sims", {0.4}}},
      {{"logprobs", {-0.3, -0.2}}, {"entropies", {0.4, 0.1}}, {"sims", {1.0, 1.0}}},  // no relevance: 0
      {{"logprobs", {-0.3, -0.9, -0.4}}, {"entropies", {0.4, 0.6, 0.3}}, {"sims", {1.02, 0.5, 0.9}}},  // clamp
  });
  // Features and labels for the logistic fusion (a learnable but noisy pattern).
  std::vector<mmb::StepSignals> ref;
  std::vector<bool> y;
  Json x = Json::array(), yj = Json::array();
  for (int i = 0; i < 60; ++i) {
    mmb::StepSignals s{1.0 + 0.05 * (i % 13), 0.1 * (i % 7), 0.03 * (i % 11), 0.01 * (i % 17)};
    ref.push_back(s);
    y.push_back(((i * 7) % 10) > (i % 13) / 2);
  }
  mmb::ConfidenceFitOptions fo;
  fo.fusion = "logistic";
  fo.l2 = 0.01;
  const auto est = mmb::fit_confidence(ref, y, fo);
  for (size_t i = 0; i < ref.size(); ++i) {
    const auto c = est.normalised(ref[i]);
    x.push_back({c[0], c[1], c[2], c[3]});
    yj.push_back(y[i] ? 1 : 0);
  }
  mmb::write_file_atomic(d.file("in.json"),
                         Json({{"steps", steps}, {"x", x}, {"y", yj}, {"C", 1.0 / (fo.l2 * double(ref.size()))}}).dump());
  int status = 0;
  const std::string out = mmb::testing::run_capture(
      std::string(MMB_PYTHON) + " " + MMB_SOURCE_DIR + "/tests/reference/boundary_ref.py " + d.file("in.json"),
      &status);
  ASSERT_EQ(status, 0) << out;
  const Json r = Json::parse(out);
  for (size_t i = 0; i < steps.size(); ++i) {
    const auto lp = steps[i]["logprobs"].get<std::vector<double>>();
    std::vector<double> rel;
    for (double s : steps[i]["sims"].get<std::vector<double>>()) rel.push_back(1 - s);
    EXPECT_NEAR(mmb::lnlp_uncertainty(lp), r["steps"][i]["lnlp"].get<double>(), 1e-12) << i;
    EXPECT_NEAR(mmb::mean_token_entropy(steps[i]["entropies"].get<std::vector<double>>()),
                r["steps"][i]["mte"].get<double>(), 1e-12)
        << i;
    EXPECT_NEAR(mmb::token_sar(lp, rel), r["steps"][i]["tsar"].get<double>(), 1e-12) << i;
  }
  EXPECT_EQ(mmb::token_sar({-0.3, -0.2}, {0.0, 0.0}), 0.0);
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(est.coef[size_t(k)], r["coef"][k].get<double>(), 1e-4) << k;
  EXPECT_NEAR(est.intercept, r["intercept"].get<double>(), 1e-4);
  expect_throw_with([] { mmb::lnlp_uncertainty({}); }, "empty step");
  expect_throw_with([] { mmb::token_sar({-1.0}, {0.1, 0.2}); }, "1 log-probs but 2 relevances");
}

TEST(Confidence, NormalisationFusionAndLevelCuts) {
  // lnlp spans [1, 3], mte [0, 2], tsar [0, 1], clips [0.2, 0.6].
  std::vector<mmb::StepSignals> ref = {{1, 0, 0, 0.2}, {3, 2, 1, 0.6}, {2, 1, 0.5, 0.4}};
  auto e = mmb::fit_confidence(ref, {});
  const auto c = e.normalised({1.5, 2.0, 0.25, 0.5});
  EXPECT_NEAR(c[mmb::kLnlp], 0.75, 1e-12);  // uncertainty flipped: 1 - 0.25
  EXPECT_NEAR(c[mmb::kMte], 0.0, 1e-12);
  EXPECT_NEAR(c[mmb::kTsar], 0.75, 1e-12);
  EXPECT_NEAR(c[mmb::kClips], 0.75, 1e-12);
  const auto out_of_range = e.normalised({0.0, 5.0, -1.0, 0.9});  // clamped to [0, 1]
  EXPECT_EQ(out_of_range[0], 1.0);
  EXPECT_EQ(out_of_range[1], 0.0);
  EXPECT_EQ(out_of_range[2], 1.0);
  EXPECT_EQ(out_of_range[3], 1.0);
  EXPECT_NEAR(e.fuse({1.5, 2.0, 0.25, 0.5}), (0.75 + 0 + 0.75 + 0.75) / 4, 1e-12);
  // Reference fused scores 0.75, 0.25, 0.5: mean 0.5, population sd sqrt(1/24).
  EXPECT_NEAR(e.mu, 0.5, 1e-12);
  EXPECT_NEAR(e.sigma, std::sqrt(1.0 / 24.0), 1e-12);
  e.mu = 0.5;
  e.sigma = 0.1;
  EXPECT_EQ(e.level(0.34), 1);
  EXPECT_EQ(e.level(0.35), 2);  // a cut belongs to the level above it
  EXPECT_EQ(e.level(0.44), 2);
  EXPECT_EQ(e.level(0.5), 3);
  EXPECT_EQ(e.level(0.6), 4);
  EXPECT_EQ(e.level(0.64), 4);
  EXPECT_EQ(e.level(0.66), 5);
  // Ablations: max of the used signals; without clips the mean of three.
  mmb::ConfidenceFitOptions mx;
  mx.fusion = "max";
  EXPECT_NEAR(mmb::fit_confidence(ref, {}, mx).fuse({1.5, 2.0, 0.25, 0.5}), 0.75, 1e-12);
  mmb::ConfidenceFitOptions no_clips;
  no_clips.use[mmb::kClips] = false;
  EXPECT_NEAR(mmb::fit_confidence(ref, {}, no_clips).fuse({1.5, 2.0, 0.9, 0.0}), (0.75 + 0 + 0.1) / 3, 1e-12);
  expect_throw_with([&] { mmb::fit_confidence({}, {}); }, "no reference steps");
  mmb::ConfidenceFitOptions lg;
  lg.fusion = "logistic";
  expect_throw_with([&] { mmb::fit_confidence(ref, {true}, lg); }, "needs the truth of every step");
  mmb::ConfidenceFitOptions bad;
  bad.fusion = "median";
  expect_throw_with([&] { mmb::fit_confidence(ref, {}, bad); }, "unknown fusion \"median\"");
}

TEST(Confidence, EstimatorFileRoundTripsAndNamesBadKeys) {
  TempDir d;
  mmb::ConfidenceFitOptions o;
  o.use[mmb::kTsar] = false;
  const auto e = mmb::fit_confidence({{1, 0, 0, 0.2}, {3, 2, 1, 0.6}, {2, 1.5, 0.5, 0.3}}, {}, o);
  e.save(d.file("confidence.json"));
  const auto back = mmb::ConfidenceEstimator::load(d.file("confidence.json"));
  EXPECT_EQ(back.to_json(), e.to_json());
  EXPECT_FALSE(back.use[mmb::kTsar]);
  EXPECT_EQ(back.fuse({2.5, 0.5, 0.0, 0.45}), e.fuse({2.5, 0.5, 0.0, 0.45}));
  Json j = e.to_json();
  j["signals"].erase("mte");
  expect_throw_with([&] { mmb::ConfidenceEstimator::from_json(j, "c.json"); }, "mte");
  j = e.to_json();
  j["format"] = "other";
  expect_throw_with([&] { mmb::ConfidenceEstimator::from_json(j, "c.json"); }, "c.json: format \"other\"");
  j = e.to_json();
  j["sigma"] = -1.0;
  expect_throw_with([&] { mmb::ConfidenceEstimator::from_json(j, "c.json"); }, "sigma must be >= 0");
}

TEST(Confidence, PhraseFileLevelsAndPlacement) {
  const auto& p = mmb::ConfidencePhrases::builtin();
  ASSERT_EQ(p.levels.size(), 5u);
  const double want[] = {0.1, 0.3, 0.5, 0.7, 0.9};
  for (int l = 1; l <= 5; ++l) {
    EXPECT_EQ(p.at(l).level, l);
    EXPECT_EQ(p.at(l).confidence, want[l - 1]);
    ASSERT_FALSE(p.at(l).pool.empty());
    // Every pool phrase, attached to a sentence, is read back at its level's confidence.
    for (const auto& phrase : p.at(l).pool) {
      const std::string s = mmb::attach_phrase("There is one red cube.", phrase);
      const auto v = mmb::parse_verbal_confidence(s);
      EXPECT_TRUE(v.found) << s;
      EXPECT_EQ(v.value, want[l - 1]) << s;
      EXPECT_EQ(mmb::claim_key(s), "there is one red cube") << s;
      EXPECT_EQ(mmb::split_sentences(s).size(), 1u) << s;
    }
  }
  EXPECT_EQ(mmb::attach_phrase("There is one red cube.", "but i'm not sure"), "There is one red cube, but I'm not sure.");
  EXPECT_EQ(mmb::attach_phrase("Is it red?", "with total certainty"), "Is it red, with total certainty?");
  EXPECT_EQ(mmb::attach_phrase("No period", "and it needs checking"), "No period, and it needs checking.");
  std::mt19937_64 rng(3);
  EXPECT_EQ(p.sample(5, rng), "with total certainty");
  expect_throw_with([&] { p.at(6); }, "level 6 outside 1..5");

  Json j = {{"levels", Json::array()}};
  for (int l = 1; l <= 5; ++l) j["levels"].push_back({{"level", l}, {"confidence", 0.1 + 0.2 * (l - 1)}, {"pool", {"x"}}});
  EXPECT_NO_THROW(mmb::ConfidencePhrases::from_json(j, "p.json"));
  Json bad = j;
  bad["levels"][2]["pool"] = Json::array();
  expect_throw_with([&] { mmb::ConfidencePhrases::from_json(bad, "p.json"); }, "p.json levels[2]: \"pool\" is empty");
  bad = j;
  bad["levels"][3]["confidence"] = 0.2;
  expect_throw_with([&] { mmb::ConfidencePhrases::from_json(bad, "p.json"); }, "confidence must increase");
  bad = j;
  bad["levels"].erase(4);
  expect_throw_with([&] { mmb::ConfidencePhrases::from_json(bad, "p.json"); }, "expected 5 levels, found 4");
}

TEST(Confidence, StepSpansCoverEachSentencesTokens) {
  auto t = make_toy_text();
  const std::string text = "There is one red cube. So, the answer is one.";
  auto tokens = ids64(t->tok->encode(text, false));
  tokens.push_back(t->tok->eos_id());
  const auto spans = mmb::step_spans(*t->tok, tokens);
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_EQ(spans[0].text, "There is one red cube.");
  EXPECT_EQ(spans[1].text, "So, the answer is one.");
  EXPECT_EQ(spans[0].token_begin, 0);
  EXPECT_EQ(spans[0].token_end, spans[1].token_begin);
  EXPECT_EQ(spans[1].token_end, int64_t(tokens.size()) - 1);  // EOS belongs to no step
  for (const auto& s : spans) {
    std::vector<int32_t> ids(tokens.begin() + s.token_begin, tokens.begin() + s.token_end);
    EXPECT_EQ(mmb::trim(t->tok->decode(ids)), s.text);
  }
  EXPECT_TRUE(mmb::step_spans(*t->tok, {t->tok->eos_id()}).empty());
}

TEST(Confidence, BatchedTokenSarEqualsOneForwardPerRemovedToken) {
  auto t = make_toy_text();
  const std::string text = "There is one red cube. Two hearts are blue.";
  auto tokens = ids64(t->tok->encode(text, false));
  std::vector<float> lp, h;
  for (size_t i = 0; i < tokens.size(); ++i) {
    lp.push_back(-0.1f * float(i % 5) - 0.05f);
    h.push_back(0.3f * float(i % 3));
  }
  torch::manual_seed(5);
  auto pixels = torch::randn({1, 3, 16, 16});
  const auto r = mmb::response_signals(*t->tok, *t->clip, pixels, tokens, lp, h);
  ASSERT_EQ(r.steps.size(), 2u);
  for (size_t s = 0; s < r.steps.size(); ++s) {
    const auto& st = r.steps[s];
    std::vector<double> l, e, rel;
    for (int64_t k = st.token_begin; k < st.token_end; ++k) {
      l.push_back(lp[size_t(k)]);
      e.push_back(h[size_t(k)]);
      std::vector<int32_t> without;
      for (int64_t m = st.token_begin; m < st.token_end; ++m)
        if (m != k) without.push_back(int32_t(tokens[size_t(m)]));
      // One forward per variant, the sentence embedded on its own.
      const auto a = t->clip->sentence_embeddings({st.text});
      const auto b = t->clip->sentence_embeddings({t->tok->decode(without)});
      rel.push_back(1.0 - (a * b).sum().item<double>());
    }
    EXPECT_NEAR(r.signals[s][mmb::kLnlp], mmb::lnlp_uncertainty(l), 1e-6);
    EXPECT_NEAR(r.signals[s][mmb::kMte], mmb::mean_token_entropy(e), 1e-6);
    EXPECT_NEAR(r.signals[s][mmb::kTsar], mmb::token_sar(l, rel), 1e-5);
    EXPECT_NEAR(r.signals[s][mmb::kClips], t->clip->score(pixels, {st.text})[0], 1e-6);
  }
  // The similarity of a text with itself is 1; embeddings are unit vectors.
  const auto sim = t->clip->similarity({"There is one red cube."}, {"There is one red cube."});
  EXPECT_NEAR(sim[0], 1.0, 1e-5);
  expect_throw_with([&] { mmb::response_signals(*t->tok, *t->clip, pixels, tokens, lp, {}); }, "entropies");
  expect_throw_with([&] { t->clip->similarity({"a"}, {}); }, "expected pairs");
}

TEST(Confidence, StatedConfidenceKeysAndStepF1) {
  EXPECT_EQ(mmb::claim_key("So, the answer is two, and I believe this is right."), "so the answer is two");
  EXPECT_EQ(mmb::claim_key("So, the answer is two."), "so the answer is two");
  EXPECT_EQ(mmb::claim_key("It is red, but I'm not sure, maybe."), "it is red");
  // Chain 1: 2 of 3 predicted match (a duplicate matches once); chain 2: 1 of 1 against 2.
  const auto m = mmb::step_f1({{"a", "a", "b"}, {"c"}}, {{"a", "b", "d"}, {"c", "e"}});
  EXPECT_EQ(m.predicted, 4);
  EXPECT_EQ(m.reference, 5);
  EXPECT_EQ(m.matched, 3);
  EXPECT_NEAR(m.precision, 0.75, 1e-12);
  EXPECT_NEAR(m.recall, 0.6, 1e-12);
  EXPECT_NEAR(m.f1, 2 * 0.75 * 0.6 / 1.35, 1e-12);
  EXPECT_EQ(mmb::step_f1({{}}, {{}}).f1, 0.0);
  expect_throw_with([] { mmb::step_f1({{"a"}}, {}); }, "1 predicted chains but 0 reference chains");
}

TEST(Boundary, StepFileRoundTripAuroCAndSftRecords) {
  TempDir d;
  mmb::BoundaryAnswer a;
  a.id = "q1";
  a.task = "reasoning";
  a.question = "How many cubes?";
  a.image = "images/test_000001.png";
  a.steps = {{"There is one cube.", mmb::world::Truth::kTrue, {1.0, 0.1, 0.0, 0.8}},
             {"So, the answer is one.", mmb::world::Truth::kFalse, {2.0, 1.5, 0.9, 0.2}},
             {"It is blue.", mmb::world::Truth::kUnverifiable, {1.5, 0.8, 0.4, 0.5}}};
  mmb::BoundaryAnswer empty = a;
  empty.id = "q2";
  empty.steps.clear();
  const auto e = mmb::fit_confidence({a.steps[0].signals, a.steps[1].signals, a.steps[2].signals}, {});
  mmb::write_boundary_steps(d.file("steps.jsonl"), {a, empty}, &e);
  const auto t = mmb::read_boundary_steps(d.file("steps.jsonl"));
  ASSERT_EQ(t.signals.size(), 3u);
  EXPECT_EQ(t.correct, (std::vector<bool>{true, false, false}));  // unverifiable counts as incorrect
  EXPECT_EQ(t.signals[1], a.steps[1].signals);
  const Json r = mmb::signal_report(t, &e);
  EXPECT_EQ(r["steps"].get<int64_t>(), 3);
  EXPECT_NEAR(r["accuracy"].get<double>(), 1.0 / 3, 1e-12);
  // The true step is the most certain on every signal: AUROC 1.
  for (const char* s : {"lnlp", "mte", "tsar", "clips", "fused"}) EXPECT_EQ(r["auroc"][s].get<double>(), 1.0) << s;
  EXPECT_EQ(r["by_task"]["reasoning"]["steps"].get<int64_t>(), 3);

  const Json recs = mmb::boundary_sft_records({a, empty}, e, mmb::ConfidencePhrases::builtin(), 1);
  ASSERT_EQ(recs.size(), 1u);  // the answer without steps is skipped
  EXPECT_EQ(recs[0]["task"], "boundary");
  EXPECT_EQ(recs[0]["image"], a.image);
  EXPECT_EQ(recs[0]["conversations"][0]["value"], "<image>\nHow many cubes?");
  const std::string resp = recs[0]["conversations"][1]["value"];
  const auto sentences = mmb::split_sentences(resp);
  ASSERT_EQ(sentences.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const int level = e.level(e.fuse(a.steps[i].signals));
    const auto v = mmb::parse_verbal_confidence(sentences[i]);
    ASSERT_TRUE(v.found) << sentences[i];
    EXPECT_EQ(v.value, mmb::ConfidencePhrases::builtin().at(level).confidence) << sentences[i];
    EXPECT_EQ(mmb::claim_key(sentences[i]), mmb::claim_key(a.steps[i].text));
  }

  mmb::write_file_atomic(d.file("bad.jsonl"),
                         std::string("{\"lnlp\":1,\"mte\":0,\"tsar\":0,\"clips\":0.5,\"correct\":true,\"task\":\"r\"}\n") +
                             "{\"lnlp\":1,\"mte\":0,\"clips\":0.5,\"correct\":true,\"task\":\"r\"}\n");
  expect_throw_with([&] { mmb::read_boundary_steps(d.file("bad.jsonl")); }, "bad.jsonl:2");
}

TEST(Confidence, ClaimSpansLeaveTheStatedConfidenceOut) {
  EXPECT_EQ(mmb::claim_length("There is one red cube, but I'm not sure."), std::string("There is one red cube").size());
  EXPECT_EQ(mmb::claim_length("There is one red cube."), std::string("There is one red cube.").size());
  EXPECT_EQ(mmb::claim_length("I'm not sure."), std::string("I'm not sure.").size());  // nothing would be left
  auto t = make_toy_text();
  auto tokens = ids64(t->tok->encode("There is one red cube, with total certainty. So, the answer is one.", false));
  const auto spans = mmb::step_spans(*t->tok, tokens);
  ASSERT_EQ(spans.size(), 2u);
  std::vector<int32_t> claim(tokens.begin() + spans[0].token_begin, tokens.begin() + spans[0].claim_end);
  EXPECT_EQ(mmb::trim(t->tok->decode(claim)), "There is one red cube");
  EXPECT_EQ(spans[1].claim_end, spans[1].token_end);
}

TEST(Boundary, RewardsOnHandMadeStepTruth) {
  mmb::BoundaryRewardOptions o;  // 1/3 each, absolute
  // Steps: right at 0.9, wrong at 0.3, right without a stated confidence; internal 0.7, 0.3, 0.5.
  const std::vector<mmb::StepOutcome> s = {{true, 0.9, 0.7}, {false, 0.3, 0.3}, {true, -1, 0.5}};
  auto r = mmb::boundary_reward(s, o);
  EXPECT_NEAR(r.knowledge, 2.0 / 3, 1e-12);
  // Against a 4-step reference chain, skipping a step loses its credit; more steps than the
  // reference are averaged over the response's own.
  EXPECT_NEAR(mmb::boundary_reward(s, o, false, false, 4).knowledge, 2.0 / 4, 1e-12);
  EXPECT_NEAR(mmb::boundary_reward(s, o, false, false, 2).knowledge, 2.0 / 3, 1e-12);
  mmb::BoundaryRewardOptions literal;
  literal.ka_form = "steps";
  EXPECT_NEAR(mmb::boundary_reward(s, literal, false, false, 4).knowledge, 2.0 / 3, 1e-12);
  EXPECT_NEAR(r.calibration, 1 - (0.1 + 0.3 + 1) / 3, 1e-12);
  EXPECT_NEAR(r.self, 1 - (0.2 + 0.0 + 1) / 3, 1e-12);
  EXPECT_NEAR(r.total, (r.knowledge + r.calibration + r.self) / 3, 1e-12);
  o.ec_form = "brier";
  EXPECT_NEAR(mmb::boundary_reward(s, o).calibration, 1 - (0.01 + 0.09 + 1) / 3, 1e-12);
  // Brier is proper: for a step right with probability p, the expected reward peaks at stating p;
  // the absolute form pays stating 0.9 more than the true 0.7.
  auto expected = [&](const std::string& form, double stated, double p) {
    mmb::BoundaryRewardOptions x;
    x.ec_form = form;
    return p * mmb::boundary_reward({{true, stated, 0.5}}, x).calibration +
           (1 - p) * mmb::boundary_reward({{false, stated, 0.5}}, x).calibration;
  };
  EXPECT_GT(expected("brier", 0.7, 0.7), expected("brier", 0.9, 0.7));
  EXPECT_GT(expected("brier", 0.7, 0.7), expected("brier", 0.5, 0.7));
  EXPECT_GT(expected("absolute", 0.9, 0.7), expected("absolute", 0.7, 0.7));
  EXPECT_EQ(mmb::boundary_reward({}, o).total, 0.0);
  // With delta > 0 an always-abstaining policy earns less than an honest one: on a knowable
  // question abstaining costs delta, answering earns the steps' reward.
  mmb::BoundaryRewardOptions d;
  d.delta = 0.5;
  const std::vector<mmb::StepOutcome> idk = {{false, 0.9, 0.5}};  // "I don't know." is not a true step
  const double abstain_knowable = mmb::boundary_reward(idk, d, true, false).total;
  const double abstain_unknowable = mmb::boundary_reward(idk, d, true, true).total;
  const double honest_right = mmb::boundary_reward({{true, 0.9, 0.9}}, d).total;
  const double honest_wrong = mmb::boundary_reward({{false, 0.1, 0.1}}, d).total;
  // Half the questions knowable (the honest policy is right on them), half not (it is wrong but
  // says so with low confidence): the honest policy's mean beats always abstaining.
  EXPECT_GT(0.5 * honest_right + 0.5 * honest_wrong, 0.5 * abstain_knowable + 0.5 * abstain_unknowable);
  EXPECT_GT(abstain_unknowable, abstain_knowable);
  mmb::BoundaryRewardOptions bad;
  bad.ec_form = "square";
  expect_throw_with([&] { mmb::boundary_reward(s, bad); }, "unknown ec_form \"square\"");
}

TEST(Rl, GroupAdvantagesAndGrpoLossMatchAnIndependentImplementation) {
  const auto a = mmb::group_advantages({1, 0, 0.5, 0.5, 2, 2}, 2);
  EXPECT_NEAR(a[0], 0.5 / (0.5 + 1e-4), 1e-6);
  EXPECT_NEAR(a[1], -0.5 / (0.5 + 1e-4), 1e-6);
  EXPECT_EQ(a[2], 0.0f);  // equal rewards: no signal
  EXPECT_EQ(a[5], 0.0f);
  expect_throw_with([] { mmb::group_advantages({1, 2, 3}, 2); }, "do not form groups of 2");

  TempDir d;
  const std::vector<std::vector<double>> logp = {{-0.5, -1.2, -0.1}, {-2.0, -0.3, -0.7}};
  const std::vector<std::vector<double>> old = {{-0.6, -1.0, -0.1}, {-1.5, -0.3, -0.2}};
  const std::vector<std::vector<double>> ref = {{-0.4, -1.5, -0.3}, {-1.8, -0.2, -0.9}};
  const std::vector<std::vector<double>> mask = {{1, 1, 0}, {1, 1, 1}};
  const std::vector<double> adv = {1.3, -0.8};
  const Json g = {{"logp", logp}, {"old", old}, {"ref", ref}, {"mask", mask}, {"adv", adv}, {"eps", 0.2}, {"beta", 0.04}};
  mmb::write_file_atomic(d.file("in.json"), Json({{"steps", Json::array({{{"logprobs", {-1.0}}, {"entropies", {0.1}},
                                                                          {"sims", {0.5}}}})},
                                                  {"x", {{0.1}, {0.9}, {0.2}, {0.8}}},
                                                  {"y", {0, 1, 1, 0}},
                                                  {"C", 1.0},
                                                  {"grpo", g}})
                                                .dump());
  int status = 0;
  const std::string out = mmb::testing::run_capture(
      std::string(MMB_PYTHON) + " " + MMB_SOURCE_DIR + "/tests/reference/boundary_ref.py " + d.file("in.json"),
      &status);
  ASSERT_EQ(status, 0) << out;
  auto t = [](const std::vector<std::vector<double>>& v) {
    return torch::stack({torch::tensor(v[0], torch::kDouble), torch::tensor(v[1], torch::kDouble)});
  };
  auto lp = t(logp).requires_grad_(true);
  const auto loss = mmb::grpo_loss(lp, t(old), t(ref), t(mask), torch::tensor(adv, torch::kDouble), 0.2, 0.04);
  EXPECT_NEAR(loss.loss.item<double>(), Json::parse(out)["grpo_loss"].get<double>(), 1e-12);
  EXPECT_GT(loss.clip_fraction, 0.0);  // row 2's first token has ratio exp(-0.5)
  // On-policy (old = logp) with no KL weight the gradient is the policy gradient −A/|y| per token.
  auto lp2 = t(logp).requires_grad_(true);
  mmb::grpo_loss(lp2, lp2.detach(), t(ref), t(mask), torch::tensor(adv, torch::kDouble), 0.2, 0.0).loss.backward();
  EXPECT_NEAR(lp2.grad()[0][0].item<double>(), -1.3 / 2 / 2, 1e-12);
  EXPECT_NEAR(lp2.grad()[1][2].item<double>(), 0.8 / 3 / 2, 1e-12);
  EXPECT_EQ(lp2.grad()[0][2].item<double>(), 0.0);  // masked
}
