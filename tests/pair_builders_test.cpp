// The builders that write through the world's grammar: corrections change only false sentences,
// each to a true one; every injected error is false (or, for a deletion, an omission) and stays
// in the grammar the verifier parses; and the corrected and BPO builders make judged pairs from
// the shipped base model on a small world.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "mmb/pair_builders.h"
#include "mmb/prefs.h"
#include "mmb/sentences.h"
#include "mmb/vlm.h"
#include "subprocess_util.h"
#include "test_util.h"
#include "world_test_util.h"

namespace {

using mmb::world::Truth;

const std::string kShipped = std::string(MMB_SOURCE_DIR) + "/models/base";
const std::string kMmb = std::string(MMB_BINARY_DIR) + "/mmb";

// A world of the shipped model's config with `train` training scenes, in tmp/world.
void make_world(const mmb::testing::TempDir& tmp, int train) {
  int status = 0;
  const std::string out = mmb::testing::run_capture(
      kMmb + " world generate --config " + kShipped + "/world.toml --train " + std::to_string(train) +
          " --val 0 --test 0 --shifted 0 --quiet --out " + tmp.file("world"),
      &status);
  ASSERT_EQ(status, 0) << out;
}

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

TEST(GrammarEdits, TheUnmentionedObjectSentenceNamesAnObjectNotYetMentionedInTheNearestStyle) {
  const mmb::world::Verifier v;
  const auto scene = mmb::testing::hand_scene();  // visible: the red circle and the yellow star
  const std::string circle = "I can see a large red circle at the top left.";
  const std::string next = mmb::unmentioned_object_sentence(v, scene, circle, circle);
  EXPECT_EQ(next, "I can see a small yellow star in the center.");
  const auto verdict = v.verify(scene, next);
  EXPECT_EQ(verdict.truth, Truth::kTrue);
  EXPECT_EQ(verdict.mentioned, 1u << int(mmb::world::Shape::kStar));
  // Another style of the sentence it stands in for gives another style of the new one.
  const std::string there =
      mmb::unmentioned_object_sentence(v, scene, circle, "There is a large red circle at the top left.");
  EXPECT_EQ(truth_of(v, scene, there), Truth::kTrue);
  EXPECT_NE(there, next);
  // A kind mentioned with wrong attributes is mentioned (mention recall's rule): nothing is left.
  EXPECT_EQ(mmb::unmentioned_object_sentence(v, scene, circle + " There is a large green star at the bottom.", circle),
            "");
  EXPECT_EQ(mmb::unmentioned_object_sentence(v, scene, circle + " " + next, circle), "");
  // A count sentence opens unlike every object sentence: nothing stands in for it.
  EXPECT_EQ(mmb::unmentioned_object_sentence(v, scene, circle, "There are two circles."), "");
  EXPECT_EQ(mmb::unmentioned_object_sentence(v, scene, circle, "There is one circle."), "");
  // Unverifiable text mentions nothing.
  EXPECT_NE(mmb::unmentioned_object_sentence(v, scene, "It is nice.", circle), "");
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
  ASSERT_NO_FATAL_FAILURE(make_world(tmp, 40));
  const mmb::world::Verifier v;
  mmb::CorrectedBuildOptions c;
  c.model_dir = kShipped + "/vlm";
  c.world_dir = tmp.file("world");
  c.limit = 24;
  c.out = tmp.file("corrected.jsonl");
  c.progress = false;
  c.fix = "false";  // every false sentence: most answers have one
  c.tasks = {"description"};
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
  // Only hallucinated kinds: fewer pairs, each rejected naming an absent kind and its chosen none.
  c.fix = "hallucinated";
  c.limit = 40;
  c.out = tmp.file("corrected_h.jsonl");
  const auto rh = mmb::build_corrected_pairs(c);
  EXPECT_GT(rh.pairs, 0);
  EXPECT_LT(rh.pairs, 40);
  for (const auto& p : mmb::read_preference_pairs(c.out)) {
    const auto chosen = mmb::ResponseJudgement::from_json(p.extra["chosen_judgement"], p.where);
    const auto rejected = mmb::ResponseJudgement::from_json(p.extra["rejected_judgement"], p.where);
    EXPECT_GT(rejected.hallucinated, 0);
    EXPECT_EQ(chosen.hallucinated, 0) << p.chosen;
    EXPECT_EQ(chosen.sentences, rejected.sentences);
  }
  // QA prompts: a wrong short answer is paired with the ground truth's.
  c.tasks = {"qa"};
  c.out = tmp.file("corrected_qa.jsonl");
  const auto rq = mmb::build_corrected_pairs(c);
  EXPECT_GT(rq.pairs, 0);
  EXPECT_GT(rq.dropped.at("all_true"), 0);  // most short answers are right
  for (const auto& p : mmb::read_preference_pairs(c.out)) {
    EXPECT_EQ(p.extra["task"], "qa");
    const auto scene = mmb::testing::hand_scene();  // any scene: only the answers are compared
    EXPECT_EQ(mmb::judge_answer(v, scene, p.chosen, p.rejected).false_sentences, 1) << p.chosen << " / " << p.rejected;
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
  // Negative 1 cut to the positive's sentence count: never longer in sentences, and some were cut.
  b.match_sentences = true;
  b.out = tmp.file("bpo_matched.jsonl");
  mmb::build_bpo_pairs(b);
  int cut = 0;
  for (const auto& p : mmb::read_preference_pairs(b.out)) {
    if (p.extra["source"] != "bpo_noise") continue;
    EXPECT_LE(mmb::split_sentences(p.rejected).size(), mmb::split_sentences(p.chosen).size()) << p.rejected;
    cut += p.extra["bpo"].contains("sentences_cut");
  }
  EXPECT_GT(cut, 0);
  b.match_sentences = false;
  // POPE's yes/no questions: the reference answer against the other one, and against the noised
  // image's answer where that is wrong.
  b.tasks = {"pope:adversarial"};
  b.limit = 16;
  b.out = tmp.file("bpo_pope.jsonl");
  const auto rp = mmb::build_bpo_pairs(b);
  EXPECT_EQ(rp.prompts, 16);
  std::map<std::string, int> pope_sources;
  for (const auto& p : mmb::read_preference_pairs(b.out)) {
    pope_sources[p.extra["source"].get<std::string>()]++;
    EXPECT_EQ(p.extra["task"], "qa");
    ASSERT_TRUE(p.chosen == "Yes." || p.chosen == "No.") << p.chosen;
    if (p.extra["source"] == "bpo_inject") {
      EXPECT_EQ(p.rejected, p.chosen == "Yes." ? "No." : "Yes.");
    }
    const auto scene = mmb::testing::hand_scene();  // any scene: only the answers are compared
    EXPECT_EQ(mmb::judge_answer(v, scene, p.chosen, p.rejected).false_sentences, 1) << p.chosen << " / " << p.rejected;
  }
  EXPECT_EQ(pope_sources["bpo_inject"], 16);  // every reference is a yes or a no
  const auto dropped_for = [&](const char* reason) {
    const auto it = rp.dropped.find(reason);
    return it == rp.dropped.end() ? int64_t(0) : it->second;
  };
  EXPECT_EQ(pope_sources["bpo_noise"] + dropped_for("not_worse_bpo_noise") + dropped_for("empty_bpo_noise"), 16);
  // The LM rewrite: one sentence of the ground truth continued by the policy with the image hidden.
  b.tasks = {"description"};
  b.inject_mode = "lm";
  b.noise_negative = false;
  b.limit = 16;
  b.out = tmp.file("bpo_lm.jsonl");
  const auto rl = mmb::build_bpo_pairs(b);
  EXPECT_GT(rl.pairs, 0);
  EXPECT_GT(rl.generated_tokens, 0);
  for (const auto& p : mmb::read_preference_pairs(b.out)) {
    EXPECT_EQ(p.extra["bpo"]["mode"], "lm");
    const auto chosen = mmb::ResponseJudgement::from_json(p.extra["chosen_judgement"], p.where);
    const auto rejected = mmb::ResponseJudgement::from_json(p.extra["rejected_judgement"], p.where);
    EXPECT_GT(mmb::compare_judgements(chosen, rejected), 0) << p.rejected;
    // Every sentence but one is the ground truth's: the rejected text starts with the sentences
    // before the rewritten one and ends with those after it (a continuation without its full stop
    // runs into the next sentence, whose text still ends the response).
    const auto c = mmb::split_sentences(p.chosen);
    size_t head = 0, tail = 0;
    std::string prefix, suffix;
    while (head < c.size() && p.rejected.rfind(prefix + (prefix.empty() ? "" : " ") + c[head], 0) == 0)
      prefix += (prefix.empty() ? "" : " ") + c[head++];
    while (tail < c.size() - head) {
      const std::string next = c[c.size() - 1 - tail] + (suffix.empty() ? "" : " ") + suffix;
      if (p.rejected.size() < next.size() ||
          p.rejected.compare(p.rejected.size() - next.size(), next.size(), next) != 0)
        break;
      suffix = next;
      ++tail;
    }
    EXPECT_GE(head + tail + 1, c.size()) << p.chosen << " / " << p.rejected;
  }
  b.inject_kind = "color";
  mmb::testing::expect_throw_with([&] { mmb::build_bpo_pairs(b); }, "the lm mode writes its own errors");
  b.inject_kind = "";
  b.inject_mode = "rules";
  b.noise_negative = true;
  b.sampler = "sideways";
  mmb::testing::expect_throw_with([&] { mmb::build_bpo_pairs(b); }, "--sampler must be noised or two_pass");
}

TEST(PairBuilders, TwoRanksShareThePromptsAndJoinOneFile) {
#ifndef USE_C10D_GLOO
  FAIL() << "built without c10d Gloo (USE_C10D_GLOO): install libgloo-dev and reconfigure";
#endif
  mmb::testing::TempDir tmp;
  ASSERT_NO_FATAL_FAILURE(make_world(tmp, 12));
  // Greedy answers one prompt at a time: every answer is the same however the prompts are split.
  const std::string cmd = kMmb + " prefs corrected --model " + kShipped + "/vlm --world " + tmp.file("world") +
                          " --tasks description,pope:adversarial --fix false --limit 10 --batch 1 --threads 1 --quiet";
  int status = 0;
  std::string out = mmb::testing::run_capture(cmd + " --pairs " + tmp.file("one.jsonl"), &status);
  ASSERT_EQ(status, 0) << out;
  const std::string env = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(mmb::testing::free_port());
  const std::string two = cmd + " --pairs " + tmp.file("two.jsonl");
  out = mmb::testing::run_capture("(" + env + " RANK=0 LOCAL_RANK=0 " + two + " > " + tmp.file("rank0.log") +
                                      " 2>&1 & " + env + " RANK=1 LOCAL_RANK=1 " + two + " > " + tmp.file("rank1.log") +
                                      " 2>&1; r1=$?; wait $!; r0=$?; exit $((r0 | r1)))",
                                  &status);
  const std::string rank0 = mmb::testing::slurp(tmp.file("rank0.log"));
  ASSERT_EQ(status, 0) << out << rank0 << mmb::testing::slurp(tmp.file("rank1.log"));
  const auto one = mmb::read_preference_pairs(tmp.file("one.jsonl"));
  const auto joined = mmb::read_preference_pairs(tmp.file("two.jsonl"));
  ASSERT_EQ(joined.size(), one.size());
  for (size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(joined[i].chosen, one[i].chosen) << i;
    EXPECT_EQ(joined[i].rejected, one[i].rejected) << i;
    EXPECT_EQ(joined[i].extra["scene"], one[i].extra["scene"]) << i;
  }
  // Rank 0 reports both ranks' prompts; the slices are gone.
  const mmb::Json report =
      mmb::Json::parse(rank0.substr(rank0.find('{'), rank0.find('\n', rank0.find('{')) - rank0.find('{')));
  EXPECT_EQ(report["prompts"], 10);
  EXPECT_EQ(report["pairs"], int64_t(one.size()));
  for (const char* part : {"two.jsonl.shard0", "two.jsonl.shard1", "two.jsonl.shard0.report.json"})
    EXPECT_FALSE(std::filesystem::exists(tmp.file(part))) << part;
  // A shard outside the ranks is refused.
  mmb::testing::expect_throw_with([] { mmb::PromptShard{2, 2}.range(10); }, "the index must be in [0, count)");
  EXPECT_EQ(mmb::PromptShard({1, 3}).range(10), std::make_pair(size_t(3), size_t(6)));
}

TEST(Bdhs, KeepsAboutOnePercentOfImageKeysAndSwapsYesNoAtItsRate) {
  const int64_t image_id = 7;
  auto ids = torch::full({4, 5000}, image_id, torch::kLong);
  ids.narrow(1, 0, 10).fill_(3);  // text positions
  auto gen = at::detail::createCPUGenerator(5);
  const auto keep = mmb::bdhs_key_keep(ids, image_id, 0.99, gen);
  EXPECT_TRUE(keep.narrow(1, 0, 10).all().item<bool>());  // text is never hidden
  const double kept = keep.narrow(1, 10, 4990).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(kept, 0.01, 0.003);
  std::mt19937_64 rng(9);
  int swapped = 0, complete = 0;
  for (int i = 0; i < 4000; ++i) {
    const auto h = mmb::bdhs_sentence_head("Yes.", 0.5, rng);
    swapped += h.swapped;
    complete += h.complete;
    if (h.swapped) EXPECT_EQ(h.text, "No.");
    else EXPECT_EQ(h.text, "");  // a one-word sentence is cut before its word
  }
  EXPECT_NEAR(swapped / 4000.0, 0.5, 0.03);
  EXPECT_EQ(complete, swapped);
  for (int i = 0; i < 200; ++i) {
    const auto h = mmb::bdhs_sentence_head("No, the circle is red.", 1.0, rng);
    EXPECT_EQ(h.text.substr(0, 4), "Yes,");  // the swapped word is always kept
    EXPECT_FALSE(h.complete);
    const auto k = mmb::bdhs_sentence_head("There is a large red circle at the top.", 0.5, rng);
    EXPECT_FALSE(k.swapped);
    EXPECT_EQ(std::string("There is a large red circle at the top.").rfind(k.text, 0), 0u);  // a prefix
    EXPECT_NE(k.text, "There is a large red circle at the top.");  // cut before the last word
  }
}

TEST(Bdhs, PairsFollowTheResampleRule) {
  mmb::testing::TempDir tmp;
  ASSERT_NO_FATAL_FAILURE(make_world(tmp, 20));
  mmb::BdhsBuildOptions b;
  b.model_dir = kShipped + "/vlm";
  b.clip_dir = kShipped + "/clip";
  b.world_dir = tmp.file("world");
  b.limit = 12;
  b.out = tmp.file("bdhs.jsonl");
  b.progress = false;
  b.similarity = 2.0;  // every first draw is dissimilar enough
  const auto r = mmb::build_bdhs_pairs(b);
  EXPECT_EQ(r.prompts, 12);
  EXPECT_GT(r.pairs, 0);
  std::map<std::string, int> tasks;
  int first_try = 0;
  const auto pairs = mmb::read_preference_pairs(b.out);
  for (const auto& p : pairs) {
    // Only a rewrite identical to the ground truth is drawn again at this threshold.
    const int64_t tries = p.extra["bdhs"]["tries"].get<int64_t>();
    EXPECT_GE(tries, 1);
    EXPECT_LE(tries, b.max_tries);
    first_try += tries == 1;
    tasks[p.extra["task"].get<std::string>()]++;
    const auto chosen = mmb::ResponseJudgement::from_json(p.extra["chosen_judgement"], p.where);
    const auto rejected = mmb::ResponseJudgement::from_json(p.extra["rejected_judgement"], p.where);
    EXPECT_GT(mmb::compare_judgements(chosen, rejected), 0) << p.rejected;
  }
  EXPECT_GT(tasks["description"] + tasks["qa"], 0);
  EXPECT_GE(2 * first_try, int(pairs.size()));
  b.similarity = -2.0;  // nothing is ever dissimilar enough: every prompt uses its tries and is dropped
  b.max_tries = 2;
  b.swap_prob = 0.0;
  mmb::testing::expect_throw_with([&] { mmb::build_bdhs_pairs(b); }, "\"similar\":12");
  // ... except a swapped yes/no, which differs in meaning by construction.
  b.swap_prob = 1.0;
  b.tasks = {"pope:adversarial"};
  b.out = tmp.file("bdhs_pope.jsonl");
  const auto swapped = mmb::build_bdhs_pairs(b);
  EXPECT_EQ(swapped.pairs, 12);
  for (const auto& p : mmb::read_preference_pairs(b.out)) {
    EXPECT_EQ(p.rejected, p.chosen == "Yes." ? "No." : "Yes.") << p.chosen;
    EXPECT_EQ(p.extra["bdhs"]["tries"], 1);
  }
}

TEST(VlmPrefix, AnswerPrefixesTokenizeAsTheExchangeWithoutItsEos) {
  const mmb::Vlm vlm = mmb::Vlm::load(kShipped + "/vlm");
  mmb::Image image(64, 64, 3);
  int64_t begin = 0;
  const auto full = vlm.encode_exchange("Describe the image.", &image, "There is a red circle", &begin);
  const auto pre = vlm.encode_prompts({"Describe the image.", "Is there a star?"}, {&image, &image},
                                      {"There is a red circle", ""});
  const int64_t n = full.input_ids.size(1) - 1;  // without EOS
  ASSERT_EQ(full.input_ids[0][n].item<int64_t>(), vlm.tokenizer().eos_id());
  const int64_t T = pre.input_ids.size(1);
  EXPECT_TRUE(pre.input_ids[0].narrow(0, T - n, n).equal(full.input_ids[0].narrow(0, 0, n)));
  const auto plain = vlm.encode_prompts({"Is there a star?"}, {&image});
  const int64_t m = plain.input_ids.size(1);
  EXPECT_TRUE(pre.input_ids[1].narrow(0, T - m, m).equal(plain.input_ids[0]));
  EXPECT_EQ(pre.attention_mask[1].sum().item<int64_t>(), m);  // left-padded
}

// num_return_sequences prefills each prompt once and forks its cache: the same answers as the
// prompts repeated (greedy and sampled with one seed), in the same order.
TEST(VlmAnswer, ReturnSequencesEqualRepeatedPrompts) {
  mmb::Vlm vlm = mmb::Vlm::load(kShipped + "/vlm");
  mmb::Image a(64, 64, 3), b(64, 64, 3);
  for (size_t i = 0; i < b.pixels.size(); ++i) b.pixels[i] = uint8_t(i * 7 % 251);
  const std::vector<std::string> qs = {"Describe the image.", "Is there a star?"};
  const int64_t n = 3;
  std::vector<std::string> rep_q;
  std::vector<const mmb::Image*> rep_i;
  for (size_t p = 0; p < qs.size(); ++p)
    for (int64_t j = 0; j < n; ++j) {
      rep_q.push_back(qs[p]);
      rep_i.push_back(p == 0 ? &a : &b);
    }
  for (double temperature : {0.0, 1.0}) {
    mmb::SampleOptions o;
    o.temperature = temperature;
    o.seed = 5;
    o.stop = vlm.default_stop(16);
    torch::NoGradGuard ng;
    auto forked = vlm.answer(qs, {&a, &b}, o, n);
    auto repeated = vlm.answer(rep_q, rep_i, o);
    ASSERT_EQ(forked.size(), repeated.size());
    for (size_t r = 0; r < forked.size(); ++r) {
      EXPECT_EQ(forked[r].generation.tokens, repeated[r].generation.tokens) << "T " << temperature << " row " << r;
      EXPECT_EQ(forked[r].text, repeated[r].text);
    }
  }
  mmb::testing::expect_throw_with([&] { vlm.answer(qs, {&a, &b}, {}, 0); }, "num_return_sequences must be >= 1");
}
