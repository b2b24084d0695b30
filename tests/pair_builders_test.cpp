// The builders that write through the world's grammar: corrections change only false sentences,
// each to a true one; every injected error is false (or, for a deletion, an omission) and stays
// in the grammar the verifier parses; and the corrected and BPO builders make judged pairs from
// the shipped base model on a small world.
#include <gtest/gtest.h>

#include <map>

#include "mmb/pair_builders.h"
#include "mmb/prefs.h"
#include "mmb/sentences.h"
#include "test_util.h"
#include "world_test_util.h"

namespace {

using mmb::world::Truth;

const std::string kShipped = std::string(MMB_SOURCE_DIR) + "/models/base";
const std::string kMmb = std::string(MMB_BINARY_DIR) + "/mmb";

Truth truth_of(const mmb::world::Verifier& v, const mmb::world::Scene& s, const std::string& sentence) {
  return v.verify(s, sentence).truth;
}

// The scene's ground-truth description as the world writes it.
std::string description_of(const mmb::world::Scene& scene, const mmb::world::ShapeStats& stats) {
  const auto tasks = mmb::world::make_tasks(scene, mmb::world::WorldConfig{}, stats, 5);
  std::string text;
  for (const auto& s : tasks.description) text += (text.empty() ? "" : " ") + s;
  return text;
}

}  // namespace

TEST(GrammarEdits, CorrectionRewritesOnlyFalseSentencesEachToATrueOne) {
  const mmb::world::Verifier v;
  const auto scene = mmb::testing::hand_scene();
  const std::string answer =
      "There is a large red circle at the top left. I can see a small blue star in the center.  It is nice. "
      "There is a large red circle at the top right.";
  const auto fixed = mmb::correct_response(v, scene, answer);
  ASSERT_EQ(fixed.edits.size(), 2u);
  EXPECT_EQ(fixed.edits[0].sentence, 1);
  EXPECT_EQ(fixed.edits[0].after, "I can see a small yellow star in the center.");  // one word changed
  EXPECT_EQ(fixed.edits[1].sentence, 3);
  // The nearest true sentence is already said: another true one takes its place, never a repeat.
  EXPECT_NE(fixed.edits[1].after, "There is a large red circle at the top left.");
  EXPECT_EQ(truth_of(v, scene, fixed.edits[1].after), Truth::kTrue);
  const auto before = mmb::split_sentences(answer), after = mmb::split_sentences(fixed.text);
  ASSERT_EQ(before.size(), after.size());
  EXPECT_EQ(after[0], before[0]);
  EXPECT_EQ(after[2], "It is nice.");  // unverifiable: untouched
  EXPECT_NE(fixed.text.find("center.  It is nice."), std::string::npos);  // the bytes between sentences too
  // A response with no false sentence is left as it is.
  const auto same = mmb::correct_response(v, scene, before[0]);
  EXPECT_TRUE(same.edits.empty());
  EXPECT_EQ(same.text, before[0]);
}

TEST(GrammarEdits, InjectedErrorsAreFalseInTheGrammarAndCorrectionsUndoThem) {
  const mmb::world::Verifier v;
  const mmb::world::WorldConfig config;
  std::vector<mmb::world::Scene> scenes;
  for (int64_t i = 0; i < 300; ++i) scenes.push_back(mmb::world::sample_scene(config, 21, mmb::world::Split::kTrain, i));
  const auto stats = mmb::world::shape_stats(scenes);
  std::mt19937_64 rng(3);
  std::map<std::string, int> made;
  for (const auto& scene : scenes) {
    const std::string truth = description_of(scene, stats);
    const auto base = mmb::judge_response(v, scene, truth);
    ASSERT_EQ(base.false_sentences + base.unverifiable_sentences, 0) << truth;
    for (const auto& kind : mmb::injected_error_kinds()) {
      mmb::EditedResponse bad;
      if (!mmb::inject_error(v, scene, truth, stats, rng, bad, kind)) continue;
      made[kind]++;
      ASSERT_EQ(bad.edits.size(), 1u);
      const auto judged = mmb::judge_response(v, scene, bad.text);
      EXPECT_EQ(judged.unverifiable_sentences, 0) << kind << ": " << bad.text;  // still the grammar
      if (kind == "delete") {
        EXPECT_EQ(judged.sentences + 1, base.sentences);
        EXPECT_LT(judged.recall, base.recall) << bad.text;
        continue;
      }
      EXPECT_EQ(judged.false_sentences, 1) << kind << ": " << bad.text;
      EXPECT_EQ(truth_of(v, scene, bad.edits[0].after), Truth::kFalse) << bad.edits[0].after;
      if (kind == "add_object") {
        EXPECT_GE(judged.hallucinated, 1);
      }
      EXPECT_LT(mmb::compare_judgements(judged, base), 0);
      // The correction makes every sentence true again, with the sentence count kept.
      const auto fixed = mmb::correct_response(v, scene, bad.text);
      const auto again = mmb::judge_response(v, scene, fixed.text);
      EXPECT_EQ(again.false_sentences, 0) << bad.text << " -> " << fixed.text;
      EXPECT_EQ(again.sentences, judged.sentences);
      if (kind != "add_object") {
        EXPECT_EQ(fixed.edits[0].sentence, bad.edits[0].sentence);
      }
    }
  }
  for (const auto& kind : mmb::injected_error_kinds()) EXPECT_GT(made[kind], 30) << kind;
  mmb::EditedResponse e;
  mmb::testing::expect_throw_with([&] { mmb::inject_error(v, scenes[0], "x", stats, rng, e, "recolour"); },
                                  "unknown kind 'recolour'");
}

TEST(PairBuilders, CorrectedAndBpoPairsFromTheShippedBase) {
  mmb::testing::TempDir tmp;
  int status = 0;
  std::string out = mmb::testing::run_capture(kMmb + " world generate --config " + kShipped +
                                                  "/world.toml --train 40 --val 0 --test 0 --shifted 0 --quiet --out " +
                                                  tmp.file("world"),
                                              &status);
  ASSERT_EQ(status, 0) << out;
  const mmb::world::Verifier v;
  mmb::CorrectedBuildOptions c;
  c.model_dir = kShipped + "/vlm";
  c.world_dir = tmp.file("world");
  c.limit = 24;
  c.out = tmp.file("corrected.jsonl");
  c.progress = false;
  const auto rc = mmb::build_corrected_pairs(c);
  EXPECT_EQ(rc.prompts, 24);
  EXPECT_GT(rc.pairs, 0);
  int64_t dropped = 0;
  for (const auto& [reason, n] : rc.dropped) dropped += n;
  EXPECT_EQ(rc.pairs + dropped, 24);  // one greedy answer per prompt: a pair or a counted drop
  const auto pairs = mmb::read_preference_pairs(c.out);
  ASSERT_EQ(int64_t(pairs.size()), rc.pairs);
  for (const auto& p : pairs) {
    EXPECT_EQ(p.extra["source"], "corrected");
    EXPECT_EQ(mmb::split_sentences(p.chosen).size(), mmb::split_sentences(p.rejected).size());
    const auto chosen = mmb::ResponseJudgement::from_json(p.extra["chosen_judgement"], p.where);
    const auto rejected = mmb::ResponseJudgement::from_json(p.extra["rejected_judgement"], p.where);
    EXPECT_GT(rejected.false_sentences, chosen.false_sentences);
    EXPECT_EQ(p.extra["corrected"]["rewritten"].get<int64_t>(), int64_t(p.extra["corrected"]["edits"].size()));
  }
  mmb::BpoBuildOptions b;
  b.model_dir = c.model_dir;
  b.world_dir = c.world_dir;
  b.limit = 12;
  b.out = tmp.file("bpo.jsonl");
  b.progress = false;
  const auto rb = mmb::build_bpo_pairs(b);
  EXPECT_GT(rb.generated_tokens, 0);
  const auto bpo = mmb::read_preference_pairs(b.out);
  std::map<std::string, int> sources;
  for (const auto& p : bpo) {
    sources[p.extra["source"].get<std::string>()]++;
    const auto chosen = mmb::ResponseJudgement::from_json(p.extra["chosen_judgement"], p.where);
    const auto rejected = mmb::ResponseJudgement::from_json(p.extra["rejected_judgement"], p.where);
    EXPECT_GT(mmb::compare_judgements(chosen, rejected), 0) << p.rejected;
    EXPECT_EQ(chosen.errors(), 0) << p.chosen;  // the ground truth
  }
  EXPECT_GT(sources["bpo_inject"], 6);
  EXPECT_GT(sources["bpo_noise"], 0);
  b.sampler = "sideways";
  mmb::testing::expect_throw_with([&] { mmb::build_bpo_pairs(b); }, "--sampler must be noised or two_pass");
}
