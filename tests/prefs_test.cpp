// Preference pieces: TRL preference JSONL, the DPO losses against an independent PyTorch
// implementation (tests/reference/dpo_ref.py), the diffusion noise and mDPO's crop.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "mmb/atomic_file.h"
#include "mmb/dpo.h"
#include "mmb/image_noise.h"
#include "mmb/prefs.h"
#include "test_util.h"
#include "world_test_util.h"

using mmb::Json;
using mmb::testing::expect_throw_with;
using mmb::testing::TempDir;

namespace {

torch::Tensor vec(const std::vector<double>& v) { return torch::tensor(v, torch::kFloat64); }

}  // namespace

TEST(PreferencePairs, ReadsStringAndConversationalFormsAndKeepsExtraFields) {
  TempDir d;
  mmb::write_file_atomic(
      d.file("p.jsonl"),
      R"({"prompt": "<image>\nIs there a star?", "chosen": "Yes.", "rejected": "No.", "images": ["a.png"], "source": "csr", "chosen_false": 0}
{"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe it."}]}, {"role": "assistant", "content": "A star."}, {"role": "user", "content": "Its colour?"}], "chosen": [{"role": "assistant", "content": "Red."}], "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "Blue."}]}]}

)");
  mmb::PairFileReport rep;
  auto pairs = mmb::read_preference_pairs(d.file("p.jsonl"), false, &rep);
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[0].prompt.size(), 1u);
  EXPECT_EQ(pairs[0].prompt[0].user, "Is there a star?");
  EXPECT_EQ(pairs[0].image, "a.png");
  EXPECT_EQ(pairs[0].extra["source"], "csr");
  EXPECT_EQ(pairs[0].extra["chosen_false"], 0);
  EXPECT_EQ(pairs[0].where, d.file("p.jsonl") + ":1");
  ASSERT_EQ(pairs[1].prompt.size(), 2u);
  EXPECT_EQ(pairs[1].prompt[0].user, "Describe it.");
  EXPECT_EQ(pairs[1].prompt[0].assistant, "A star.");
  EXPECT_EQ(pairs[1].prompt[1].user, "Its colour?");
  EXPECT_EQ(pairs[1].chosen, "Red.");
  EXPECT_EQ(pairs[1].rejected, "Blue.");
  EXPECT_EQ(pairs[1].image, "");
  EXPECT_EQ(rep.pairs, 2);
  EXPECT_EQ(rep.sources.at("csr"), 1);
  EXPECT_EQ(rep.sources.at(""), 1);

  mmb::write_preference_pairs(d.file("back.jsonl"), pairs);
  auto again = mmb::read_preference_pairs(d.file("back.jsonl"));
  ASSERT_EQ(again.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(again[i].chosen, pairs[i].chosen);
    EXPECT_EQ(again[i].rejected, pairs[i].rejected);
    EXPECT_EQ(again[i].image, pairs[i].image);
    EXPECT_EQ(again[i].extra, pairs[i].extra);
    ASSERT_EQ(again[i].prompt.size(), pairs[i].prompt.size());
    for (size_t t = 0; t < pairs[i].prompt.size(); ++t) {
      EXPECT_EQ(again[i].prompt[t].user, pairs[i].prompt[t].user);
      EXPECT_EQ(again[i].prompt[t].assistant, pairs[i].prompt[t].assistant);
    }
  }
}

TEST(PreferencePairs, BadLinesAreNamedOrSkippedAndCounted) {
  TempDir d;
  const std::string good = R"({"prompt": "Q", "chosen": "A", "rejected": "B"})";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"prompt": "Q", "chosen": "A"})", "missing key 'rejected'"},
      {R"({"prompt": "Q", "chosen": "A", "rejected": "A"})", "chosen and rejected are the same text"},
      {R"({"prompt": "Q", "chosen": " ", "rejected": "B"})", "'chosen' is empty"},
      {R"({"prompt": "Q", "chosen": "A", "rejected": "B", "images": ["x.png", "y.png"]})", "2 images"},
      {R"({"prompt": [{"role": "assistant", "content": "A"}], "chosen": "A", "rejected": "B"})",
       "an assistant message must follow a user message"},
      {R"({"prompt": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}], "chosen": "A", "rejected": "B"})",
       "'prompt' must end with a user message"},
      {R"({"prompt": "Q", "chosen": [{"role": "user", "content": "A"}], "rejected": "B"})", "expected assistant"},
      {R"({"prompt": 3, "chosen": "A", "rejected": "B"})", "'prompt' must be a string or a message list"},
      {R"({"prompt": "Q", "chosen": "A", "rejected": "B"} trailing)", "invalid JSON"},
  };
  for (const auto& [line, why] : bad) {
    mmb::write_file_atomic(d.file("b.jsonl"), good + "\n" + line + "\n" + good + "\n");
    expect_throw_with([&] { mmb::read_preference_pairs(d.file("b.jsonl")); }, d.file("b.jsonl") + ":2");
    expect_throw_with([&] { mmb::read_preference_pairs(d.file("b.jsonl")); }, why);
    mmb::PairFileReport rep;
    auto pairs = mmb::read_preference_pairs(d.file("b.jsonl"), /*skip_bad=*/true, &rep);
    EXPECT_EQ(pairs.size(), 2u) << line;
    EXPECT_EQ(rep.skipped, 1) << line;
    EXPECT_EQ(rep.lines, 3) << line;
    ASSERT_EQ(rep.skipped_examples.size(), 1u);
    EXPECT_NE(rep.skipped_examples[0].find(":2"), std::string::npos) << rep.skipped_examples[0];
  }
  mmb::write_file_atomic(d.file("none.jsonl"), R"({"prompt": "Q"})"
                                               "\n");
  expect_throw_with([&] { mmb::read_preference_pairs(d.file("none.jsonl"), true); }, "no preference pair");
  expect_throw_with([&] { mmb::read_preference_pairs(d.file("absent.jsonl")); }, "absent.jsonl");
}

TEST(DpoLoss, EveryFormMatchesAnIndependentPyTorchImplementation) {
  TempDir d;
  const Json in = {{"pc", {-12.5, -3.0, -40.25, -7.5}},
                   {"pr", {-14.0, -2.5, -38.0, -20.0}},
                   {"rc", {-13.0, -3.5, -39.0, -8.0}},
                   {"rr", {-13.5, -2.0, -39.5, -18.0}},
                   {"nc", {5, 2, 17, 4}},
                   {"nr", {6, 2, 15, 9}},
                   {"pcc", {-15.0, -3.1, -41.0, -9.0}},
                   {"rcc", {-14.0, -3.3, -40.0, -9.5}}};
  mmb::write_file_atomic(d.file("in.json"), in.dump());
  int status = 0;
  const std::string out = mmb::testing::run_capture(
      std::string(MMB_PYTHON) + " " + MMB_SOURCE_DIR + "/tests/reference/dpo_ref.py " + d.file("in.json"), &status);
  ASSERT_EQ(status, 0) << out;
  const Json ref = Json::parse(out);
  mmb::DpoInputs x;
  x.policy_chosen = vec(in["pc"]);
  x.policy_rejected = vec(in["pr"]);
  x.ref_chosen = vec(in["rc"]);
  x.ref_rejected = vec(in["rr"]);
  x.chosen_tokens = vec(in["nc"]);
  x.rejected_tokens = vec(in["nr"]);
  x.policy_chosen_corrupt = vec(in["pcc"]);
  x.ref_chosen_corrupt = vec(in["rcc"]);
  struct Case {
    const char* name;
    mmb::DpoLossOptions o;
  };
  const Case cases[] = {{"sigmoid", {"sigmoid", 0.1}},
                        {"cdpo", {"sigmoid", 0.1, 0.2}},
                        {"robust", {"robust", 0.3, 0.1}},
                        {"hinge", {"hinge", 0.5}},
                        {"ipo", {"ipo", 0.1}},
                        {"ipo_sum", {"ipo_sum", 0.1}},
                        {"rpo_anchor_image", {"sigmoid", 0.2, 0.0, 0.5, 1.0, 0.7}}};
  for (const Case& c : cases) {
    const auto t = mmb::dpo_loss(x, c.o);
    const auto& r = ref[c.name];
    double max_diff = 0;
    for (int64_t i = 0; i < 4; ++i) {
      max_diff = std::max(max_diff, std::abs(t.loss[i].item<double>() - r["loss"][i].get<double>()));
      max_diff =
          std::max(max_diff, std::abs(t.chosen_rewards[i].item<double>() - r["chosen_rewards"][i].get<double>()));
      max_diff =
          std::max(max_diff, std::abs(t.rejected_rewards[i].item<double>() - r["rejected_rewards"][i].get<double>()));
    }
    std::printf("  %-16s max |mmb - PyTorch| = %.3g\n", c.name, max_diff);
    EXPECT_LE(max_diff, 1e-6) << c.name;
  }
  // The schedule of the diffusion noise, the same reference.
  const auto abar = mmb::diffusion_alphas_cumprod();
  ASSERT_EQ(abar.numel(), 1000);
  double max_diff = 0;
  for (int64_t t = 0; t < 1000; ++t)
    max_diff = std::max(max_diff, std::abs(abar[t].item<double>() - ref["alphas_cumprod"][t].get<double>()));
  EXPECT_LE(max_diff, 1e-12);
}

TEST(DpoLoss, GradientsPushChosenUpAndRejectedDownAndBadOptionsAreNamed) {
  auto pc = vec({-5.0, -6.0}).requires_grad_(), pr = vec({-5.0, -4.0}).requires_grad_();
  mmb::DpoInputs x{pc, pr, vec({-5.0, -6.0}), vec({-5.0, -4.0}), vec({2, 3}), vec({2, 3})};
  for (const char* loss : {"sigmoid", "robust", "hinge", "ipo", "ipo_sum"}) {
    if (pc.grad().defined()) pc.grad().zero_(), pr.grad().zero_();
    mmb::DpoLossOptions o;
    o.loss = loss;
    o.label_smoothing = std::string(loss) == "robust" ? 0.1 : 0.0;
    mmb::dpo_loss(x, o).loss.sum().backward();
    EXPECT_LT(pc.grad()[0].item<double>(), 0) << loss;  // descending the loss raises log π(y+)
    EXPECT_GT(pr.grad()[0].item<double>(), 0) << loss;
  }
  mmb::DpoLossOptions o;
  o.loss = "kto";
  expect_throw_with([&] { mmb::dpo_loss(x, o); }, "unknown loss 'kto'");
  o = {};
  o.beta = 0;
  expect_throw_with([&] { mmb::dpo_loss(x, o); }, "beta must be > 0");
  o = {};
  o.label_smoothing = 0.5;
  expect_throw_with([&] { mmb::dpo_loss(x, o); }, "label_smoothing must be in [0, 0.5)");
  o = {};
  o.image_weight = 1;
  expect_throw_with([&] { mmb::dpo_loss(x, o); }, "needs the chosen log-probs on the corrupted image");
}

TEST(ImageNoise, DiffusionNoiseHasTheScheduledMeanAndVariance) {
  const auto abar = mmb::diffusion_alphas_cumprod();
  EXPECT_LT(abar[999].item<double>(), abar[500].item<double>());
  EXPECT_GT(abar[0].item<double>(), 0.9999);  // β_0 = 2.2e-5
  auto x0 = torch::full({4, 3, 64, 64}, 0.5);
  for (int64_t t : {500, 900}) {
    const double a = abar[t].item<double>();
    auto gen = at::detail::createCPUGenerator(7);
    auto xt = mmb::diffusion_noise(x0, t, gen);
    EXPECT_NEAR(xt.mean().item<double>(), std::sqrt(a) * 0.5, 0.01) << t;
    EXPECT_NEAR(xt.var().item<double>(), 1 - a, 0.01) << t;
    auto again = mmb::diffusion_noise(x0, t, at::detail::createCPUGenerator(7));
    EXPECT_TRUE(torch::equal(xt, again)) << "same generator seed, same noise";
  }
  expect_throw_with([&] { mmb::diffusion_noise(x0, 1000); }, "t must be in [0, 1000)");
  expect_throw_with([&] { mmb::diffusion_noise(torch::zeros({2}, torch::kLong), 5); }, "floating-point");
}

TEST(ImageNoise, RandomCropKeepsAtMostItsShareAndTheSize) {
  // A horizontal ramp: a crop keeping at most 20 % of the area spans at most sqrt(0.2) of the width.
  auto ramp = torch::linspace(0, 1, 64).view({1, 1, 1, 64}).expand({3, 3, 64, 64}).contiguous();
  auto c = mmb::random_crop_image(ramp, 0.2, at::detail::createCPUGenerator(3));
  ASSERT_EQ(c.sizes(), ramp.sizes());
  for (int64_t i = 0; i < 3; ++i) {
    const double span = (c[i].max() - c[i].min()).item<double>();
    EXPECT_LE(span, std::sqrt(0.2) + 0.02) << i;
    EXPECT_GT(span, 0.1) << i;
  }
  expect_throw_with([&] { mmb::random_crop_image(ramp, 0.0); }, "max_keep must be in (0, 1]");
}

TEST(VerifierJudge, CountsErrorsAndRecallAndOrdersResponses) {
  const mmb::world::Verifier v;
  const auto scene = mmb::testing::hand_scene();
  const auto full = mmb::judge_response(v, scene, "There is a red circle. There is a yellow star.");
  EXPECT_EQ(full.sentences, 2);
  EXPECT_EQ(full.true_sentences, 2);
  EXPECT_EQ(full.errors(), 0);
  EXPECT_DOUBLE_EQ(full.recall, 1.0);  // both visible objects; the hidden square does not count
  const auto half = mmb::judge_response(v, scene, "There is a red circle.");
  EXPECT_DOUBLE_EQ(half.recall, 0.5);
  // True of every scene, naming no kind: it recalls nothing.
  EXPECT_DOUBLE_EQ(mmb::judge_response(v, scene, "There is an object.").recall, 0.0);
  const auto wrong = mmb::judge_response(v, scene, "There is a red circle. There is a green heart.");
  EXPECT_EQ(wrong.false_sentences, 1);
  EXPECT_GE(wrong.hallucinated, 1);
  EXPECT_GE(wrong.errors(), 2);
  const auto vague = mmb::judge_response(v, scene, "It is a nice picture.");
  EXPECT_EQ(vague.unverifiable_sentences, 1);
  EXPECT_EQ(vague.errors(), 1);  // vague text cannot win
  EXPECT_EQ(mmb::judge_response(v, scene, "").errors(), 1);
  EXPECT_EQ(full.visible, 2);
  EXPECT_DOUBLE_EQ(full.score(), 1.0);
  EXPECT_DOUBLE_EQ(half.score(), 0.5);
  EXPECT_DOUBLE_EQ(vague.score(), -0.5);  // recall 0, one error per two visible objects
  EXPECT_DOUBLE_EQ(vague.score(2.0), -1.0);
  // The online judge's variants: mention recall counts an object referred to with a wrong
  // attribute; a false sentence may weigh less than a hallucinated object.
  const auto misdescribed = mmb::judge_response(v, scene, "There is a blue circle. There is a yellow star.");
  EXPECT_EQ(misdescribed.false_sentences, 1);
  EXPECT_EQ(misdescribed.hallucinated, 0);
  EXPECT_DOUBLE_EQ(misdescribed.recall, 0.5);
  EXPECT_DOUBLE_EQ(misdescribed.mentioned, 1.0);
  EXPECT_DOUBLE_EQ(misdescribed.score(1.0, "strict", 1.0), misdescribed.score(1.0));
  EXPECT_DOUBLE_EQ(misdescribed.score(1.0, "mention", 1.0), 1.0 - 0.5);
  EXPECT_DOUBLE_EQ(misdescribed.score(1.0, "mention", 0.5), 1.0 - 0.25);
  EXPECT_DOUBLE_EQ(vague.score(1.0, "mention", 0.0), -0.5);  // an unverifiable sentence keeps its full weight
  expect_throw_with([&] { full.score(1.0, "loose", 1.0); }, "recall must be 'strict' or 'mention'");
  expect_throw_with([&] { full.score(1.0, "mention", 1.5); }, "false-sentence weight must be in [0, 1]");
  EXPECT_DOUBLE_EQ(mmb::ResponseJudgement::from_json(misdescribed.to_json(), "t").mentioned, 1.0);
  EXPECT_GT(mmb::compare_judgements(full, half), 0);  // same errors, more recall
  EXPECT_GT(mmb::compare_judgements(half, wrong), 0);
  EXPECT_GT(mmb::compare_judgements(half, vague), 0);
  EXPECT_LT(mmb::compare_judgements(wrong, full), 0);
  EXPECT_EQ(mmb::compare_judgements(full, full), 0);
  // A loop of true sentences is no better than saying each once: every repeat is an error.
  const auto loop = mmb::judge_response(v, scene, "There is a red circle. There is a red circle. there is a red  circle.");
  EXPECT_EQ(loop.true_sentences, 3);
  EXPECT_EQ(loop.repeated, 2);
  EXPECT_EQ(loop.errors(), 2);
  EXPECT_DOUBLE_EQ(loop.score(1.0, "mention", 0.5), 0.5 - 2.0 / 2.0);
  EXPECT_LT(mmb::compare_judgements(loop, half), 0);
  EXPECT_EQ(mmb::ResponseJudgement::from_json(loop.to_json(), "t").repeated, 2);
  EXPECT_EQ(full.repeated, 0);
}

// A reasoning chain: each step against the scene, the answer against the reference's answer.
TEST(VerifierJudge, JudgesReasoningStepsAndTheAnswer) {
  const mmb::world::Verifier v;
  const auto scene = mmb::testing::hand_scene();  // red circle top left, yellow star in the centre
  const std::string reference = "The red circle is at the top left. So, the answer is yes.";
  const auto right = mmb::judge_reasoning(v, scene, reference, "The red circle is at the top left. So, the answer is yes.");
  EXPECT_EQ(right.sentences, 2);
  EXPECT_EQ(right.errors(), 0);
  EXPECT_DOUBLE_EQ(right.recall, 0.0);
  const auto wrong_step = mmb::judge_reasoning(v, scene, reference, "The red circle is at the bottom right. So, the answer is yes.");
  EXPECT_EQ(wrong_step.false_sentences, 1);
  const auto wrong_answer = mmb::judge_reasoning(v, scene, reference, "The red circle is at the top left. So, the answer is no.");
  EXPECT_GE(wrong_answer.false_sentences, 2) << "the answer sentence and the wrong answer";
  const auto no_answer = mmb::judge_reasoning(v, scene, reference, "The red circle is at the top left.");
  EXPECT_EQ(no_answer.false_sentences, 1);
  EXPECT_GT(mmb::compare_judgements(right, wrong_step), 0);
  EXPECT_GT(mmb::compare_judgements(wrong_step, wrong_answer), 0);
  EXPECT_GT(mmb::compare_judgements(right, no_answer), 0);
}

TEST(VerifierJudge, JudgeWeightsParseAndNameTheBadPart) {
  using W = std::map<std::string, double>;
  EXPECT_EQ(mmb::judge_weights("verifier", ""), (W{{"verifier", 1.0}}));
  EXPECT_EQ(mmb::judge_weights("clip", ""), (W{{"clip", 1.0}}));
  EXPECT_EQ(mmb::judge_weights("mix", " verifier=1, clip=0.5 ,likelihood=0"),
            (W{{"verifier", 1.0}, {"clip", 0.5}, {"likelihood", 0.0}}));
  expect_throw_with([] { mmb::judge_weights("gpt4", ""); }, "unknown judge 'gpt4'");
  expect_throw_with([] { mmb::judge_weights("clip", "clip=1"); }, "are for the mix judge");
  expect_throw_with([] { mmb::judge_weights("mix", ""); }, "needs its weights");
  expect_throw_with([] { mmb::judge_weights("mix", "verifier"); }, "is not name=weight");
  expect_throw_with([] { mmb::judge_weights("mix", "human=1"); }, "unknown score 'human'");
  expect_throw_with([] { mmb::judge_weights("mix", "clip=1,clip=2"); }, "given twice");
  expect_throw_with([] { mmb::judge_weights("mix", "clip=-1"); }, "a number >= 0");
  expect_throw_with([] { mmb::judge_weights("mix", "clip=1x"); }, "a number >= 0");
  expect_throw_with([] { mmb::judge_weights("mix", "clip=nan"); }, "a number >= 0");
  expect_throw_with([] { mmb::judge_weights("mix", "clip=0,verifier=0"); }, "all zero");
}

// The split's POPE questions as short-answer prompts: categories chosen by the task name, the
// label as the reference answer, judged as a short answer against the scene.
TEST(WorldPrompts, PopeQuestionsAreShortAnswerPromptsOfTheNamedCategories) {
  TempDir d;
  std::filesystem::create_directories(d.file("train"));
  const mmb::world::Scene scene = mmb::testing::hand_scene();
  auto line = [&](const char* category, const char* label, const char* shape) {
    return Json{{"category", category}, {"label", label}, {"scene", scene.id},
                {"image", "images/" + scene.id + ".png"},
                {"text", std::string("Is there a ") + shape + " in the image?"}}.dump() + "\n";
  };
  mmb::write_file_atomic(d.file("train/pope.jsonl"), line("random", "yes", "circle") +
                                                         line("adversarial", "no", "triangle") +
                                                         line("adversarial", "yes", "star") +
                                                         line("popular", "no", "cross"));
  const std::map<std::string, size_t> index = {{scene.id, 0}};
  const auto all = mmb::read_task_prompts(d.path(), "train", "pope", index);
  ASSERT_EQ(all.size(), 4u);
  const auto adv = mmb::read_task_prompts(d.path(), "train", "pope:adversarial", index);
  ASSERT_EQ(adv.size(), 2u);
  EXPECT_EQ(adv[0].question, "Is there a triangle in the image?");
  EXPECT_EQ(adv[0].reference, "No.");
  EXPECT_EQ(adv[1].reference, "Yes.");
  EXPECT_EQ(adv[0].task, "qa");
  EXPECT_EQ(adv[0].image, "images/" + scene.id + ".png");
  EXPECT_EQ(mmb::read_task_prompts(d.path(), "train", "pope:random,popular", index).size(), 2u);
  // Judged as short answers: right against the label, wrong otherwise.
  const mmb::world::Verifier v;
  EXPECT_EQ(mmb::judge_answer(v, scene, adv[0].reference, "No.").true_sentences, 1);
  EXPECT_EQ(mmb::judge_answer(v, scene, adv[0].reference, "Yes.").false_sentences, 1);
  EXPECT_EQ(mmb::judge_answer(v, scene, adv[1].reference, "Yes, there is.").true_sentences, 1);
  // Names that are not tasks, and files that lie, are named.
  EXPECT_TRUE(mmb::is_prompt_task("pope:adversarial"));
  EXPECT_FALSE(mmb::is_prompt_task("popes"));
  expect_throw_with([&] { mmb::read_task_prompts(d.path(), "train", "pope:hard", index); },
                    "unknown POPE category 'hard'");
  expect_throw_with([&] { mmb::read_task_prompts(d.path(), "train", "popes", index); }, "unknown task 'popes'");
  mmb::write_file_atomic(d.file("train/pope.jsonl"), line("random", "maybe", "circle"));
  expect_throw_with([&] { mmb::read_task_prompts(d.path(), "train", "pope", index); }, "pope.jsonl:1: label 'maybe'");
  mmb::write_file_atomic(d.file("train/pope.jsonl"), line("popular", "no", "cross"));
  expect_throw_with([&] { mmb::read_task_prompts(d.path(), "train", "pope:adversarial", index); },
                    "no pope:adversarial questions");
}
