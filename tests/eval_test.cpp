// Evaluation: the letter and yes/no elicitation on a tiny random model (probabilities in [0, 1],
// the sums they must satisfy, agreement with a direct forward pass), the suite end to end on a
// tiny generated world (every key present), and bad inputs (POPE files with a missing image or a
// bad label, unknown tasks) — also through `mmb eval`.
#include "mmb/eval.h"

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>

#include "mmb/atomic_file.h"
#include "mmb/calibrate.h"
#include "mmb/checkpoint.h"
#include "mmb/elicitation.h"
#include "mmb/prompt_search.h"
#include "mmb/tokenizer.h"
#include "mmb/world_tasks.h"
#include "test_util.h"

using mmb::testing::run_capture;

using mmb::testing::expect_throw_with;

namespace {

// One tiny world + tokenizer + random model shared by every test of this file (built once).
class EvalFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new mmb::testing::TempDir();
    world_ = tmp_->file("world");
    model_ = tmp_->file("model");
    mmb::world::WorldConfig wc;
    wc.train_scenes = 150;
    wc.val_scenes = 2;
    wc.test_scenes = 20;
    wc.shifted_scenes = 2;
    wc.threads = 2;
    mmb::world::generate_world(wc, 11, world_, /*progress=*/false);
    mmb::TokenizerTrainOptions to;
    to.corpus_files = {world_ + "/train/llava.json"};
    to.vocab_size = 600;
    to.output_prefix = tmp_->file("tok");
    mmb::train_tokenizer(to);
    auto tok = mmb::Tokenizer::load(tmp_->file("tok.model"));
    mmb::LlavaConfig c;
    c.vision.image_size = 64;
    c.vision.patch_size = 16;  // 16 image tokens
    c.vision.hidden_size = 32;
    c.vision.intermediate_size = 64;
    c.vision.num_hidden_layers = 1;
    c.vision.num_attention_heads = 2;
    c.text.vocab_size = tok.num_ids();
    c.text.hidden_size = 64;
    c.text.intermediate_size = 128;
    c.text.num_hidden_layers = 2;
    c.text.num_attention_heads = 4;
    c.text.num_key_value_heads = 2;
    c.text.max_position_embeddings = 512;
    c.text.bos_token_id = tok.bos_id();
    c.text.eos_token_id = tok.eos_id();
    c.text.pad_token_id = tok.pad_id();
    c.image_token_index = tok.image_id();
    mmb::validate(c);
    mmb::LlavaForConditionalGeneration m(c);
    mmb::init_weights(*m, 5);
    mmb::save_model_dir(model_, mmb::to_json(c), *m);
    mmb::write_file_atomic(model_ + "/tokenizer.model", mmb::read_file(tmp_->file("tok.model")));
  }
  static void TearDownTestSuite() {
    delete tmp_;
    tmp_ = nullptr;
  }

  static mmb::EvalOptions small_options() {
    mmb::EvalOptions o;
    o.limit = 6;
    o.batch_size = 4;
    o.short_tokens = 4;
    o.description_tokens = 12;
    o.reasoning_tokens = 12;
    o.progress = false;
    return o;
  }

  static mmb::testing::TempDir* tmp_;
  static std::string world_, model_;
};

mmb::testing::TempDir* EvalFixture::tmp_ = nullptr;
std::string EvalFixture::world_, EvalFixture::model_;

}  // namespace

TEST_F(EvalFixture, LetterAndYesNoTokensCoverBothSentencePieceForms) {
  auto vlm = mmb::Vlm::load(model_);
  const auto& tok = vlm.tokenizer();
  auto letters = mmb::letter_tokens(tok);
  for (int l = 0; l < mmb::kMaxOptions; ++l) {
    ASSERT_FALSE(letters.ids[l].empty());
    for (auto id : letters.ids[l]) {
      const std::string piece = tok.id_to_piece(int32_t(id));
      EXPECT_TRUE(piece == std::string(1, char('A' + l)) || piece == "\xE2\x96\x81" + std::string(1, char('A' + l)))
          << piece;
      EXPECT_EQ(letters.letter_of(id), l);
    }
  }
  auto yn = mmb::yes_no_tokens(tok);
  // "Yes." as an answer starts with one of the yes tokens.
  EXPECT_NE(std::find(yn.yes.begin(), yn.yes.end(), tok.encode("Yes.", false).front()), yn.yes.end());
  EXPECT_NE(std::find(yn.no.begin(), yn.no.end(), tok.encode("No.", false).front()), yn.no.end());
}

TEST_F(EvalFixture, YesProbabilityMatchesSoftmaxOfAForwardPass) {
  auto vlm = mmb::Vlm::load(model_);
  auto img = mmb::read_image(world_ + "/images/test_000000.png");
  const std::vector<std::string> q = {"Is there a circle in the image?", "Is there a star?"};
  auto in = vlm.encode_prompts(q, {&img, &img});
  auto state = mmb::prefill(vlm.model(), in, 4);
  auto yn = mmb::yes_no_tokens(vlm.tokenizer());
  auto p = mmb::yes_probability(state.last_logits, yn);
  ASSERT_EQ(p.size(), 2u);
  for (size_t b = 0; b < 2; ++b) {
    EXPECT_GE(p[b], 0.0);
    EXPECT_LE(p[b], 1.0);
    // Direct: softmax of the full forward's last position.
    torch::NoGradGuard ng;
    auto single = vlm.encode_prompt(q[b], &img);
    auto logits = vlm.model()->forward(single);  // (1, T, V)
    auto probs = torch::softmax(logits[0][-1].to(torch::kFloat64), -1);
    double y = 0, n = 0;
    for (auto id : yn.yes) y += probs[id].item<double>();
    for (auto id : yn.no) n += probs[id].item<double>();
    EXPECT_NEAR(p[b], y / (y + n), 1e-4);
  }
}

TEST_F(EvalFixture, LetterMethodGivesALetterProbabilityAndDistribution) {
  auto vlm = mmb::Vlm::load(model_);
  auto img = mmb::read_image(world_ + "/images/test_000001.png");
  const auto prompt =
      mmb::calibration_study_mc_prompt("What colour is the circle?", {"red", "green", "blue", "yellow", "white"});
  EXPECT_NE(prompt.find("\nC. blue\n"), std::string::npos);
  EXPECT_NE(prompt.find("Please provide the option letter directly."), std::string::npos);
  // A random model rarely says a letter. Make it say one at the first step: every other row of
  // the LM head is zero (logit 0), A's forms get a row v and B's forms -v, so one of them has a
  // positive logit whatever the hidden state.
  {
    torch::NoGradGuard ng;
    auto letters = mmb::letter_tokens(vlm.tokenizer());
    bool found_head = false;
    for (auto& p : vlm.model()->named_parameters()) {
      if (p.key().find("lm_head") == std::string::npos) continue;
      found_head = true;
      auto w = p.value();  // (V, H)
      auto rows = w.index_select(0, torch::tensor(letters.ids[2], torch::kLong)).clone();
      w.zero_();
      auto v = torch::randn({w.size(1)}) * 3.0;
      for (auto id : letters.ids[0]) w[id].copy_(v);
      for (auto id : letters.ids[1]) w[id].copy_(-v);
      for (size_t i = 0; i < letters.ids[2].size(); ++i) w[letters.ids[2][i]].copy_(rows[long(i)]);
    }
    ASSERT_TRUE(found_head);
  }
  mmb::LetterOptions lo;
  lo.keep_logits = true;
  auto answers = mmb::letter_answers(vlm, {prompt, prompt, prompt}, {&img, &img, &img}, lo);
  ASSERT_EQ(answers.size(), 3u);
  int found = 0;
  for (const auto& a : answers) {
    if (a.letter < 0) continue;
    ++found;
    EXPECT_LT(a.letter, mmb::kMaxOptions);
    EXPECT_GT(a.confidence, 0.0);
    EXPECT_LE(a.confidence, 1.0);
    double sum = 0;
    for (double p : a.letter_probs) {
      EXPECT_GE(p, 0.0);
      sum += p;
    }
    EXPECT_NEAR(sum, 1.0, 1e-6);
    // The chosen token's probability is at most its letter's share among the letters.
    EXPECT_GE(a.letter_probs[a.letter] + 1e-9, a.confidence);
    EXPECT_EQ(a.step, 0);
    ASSERT_TRUE(a.logits.defined());
    auto probs = torch::softmax(a.logits, -1);
    EXPECT_NEAR(probs.max().item<double>(), a.confidence, 1e-5);
    EXPECT_GE(a.step, 0);
    EXPECT_LT(a.step, lo.max_steps);
  }
  EXPECT_EQ(found, 3);
  // Identical rows give identical answers (batching with padding does not leak).
  EXPECT_EQ(answers[0].letter, answers[2].letter);
  EXPECT_NEAR(answers[0].confidence, answers[2].confidence, 1e-5);
}

TEST_F(EvalFixture, SuiteRunsEndToEndAndProducesEveryKey) {
  auto vlm = mmb::Vlm::load(model_);
  auto o = small_options();
  o.keep_samples = true;
  auto r = mmb::run_eval(vlm, world_, o);
  for (const char* k :
       {"split", "suite", "definition", "limits", "seconds", "pope", "chair", "mc", "idk", "reasoning", "samples"})
    EXPECT_TRUE(r.contains(k)) << k;
  for (const char* cat : {"random", "popular", "adversarial", "all"}) {
    ASSERT_TRUE(r["pope"].contains(cat)) << cat;
    for (const char* k :
         {"accuracy", "precision", "recall", "f1", "yes_ratio", "unparsed", "yes_prob_auroc", "calibration"})
      EXPECT_TRUE(r["pope"][cat].contains(k)) << cat << " " << k;
    for (const char* k : {"ece", "auroc", "brier", "mce", "nll", "aurc", "reliability"})
      EXPECT_TRUE(r["pope"][cat]["calibration"].contains(k)) << k;
  }
  EXPECT_EQ(r["pope"]["random"]["n"], 6);
  for (const char* k : {"chair_s", "chair_i", "sentences", "unverifiable_sentences", "captions"})
    EXPECT_TRUE(r["chair"].contains(k)) << k;
  EXPECT_EQ(r["chair"]["captions"], 6);
  for (const char* k : {"accuracy", "no_letter", "answered", "calibration", "predicted_letters"})
    EXPECT_TRUE(r["mc"].contains(k)) << k;
  for (const char* v : {"plain", "hint"})
    for (const char* k : {"accuracy_answerable", "idk_recall", "false_idk_rate", "calibration", "no_answer"})
      EXPECT_TRUE(r["idk"][v].contains(k)) << v << " " << k;
  EXPECT_NE(r["idk"]["hint"]["prompt_suffix"], "");
  for (const char* c : {"image", "blank", "none"})
    for (const char* k : {"mean_entropy", "first_token_entropy", "mean_confidence", "accuracy"})
      EXPECT_TRUE(r["idk"]["modality"][c].contains(k)) << c << " " << k;
  for (const char* k : {"step_accuracy", "verifiable_step_accuracy", "answer_accuracy", "unverifiable_steps", "steps"})
    EXPECT_TRUE(r["reasoning"].contains(k)) << k;
  // Every sentence is accounted for: true + false + unverifiable = all.
  const auto& ch = r["chair"];
  EXPECT_EQ(ch["true_sentences"].get<int64_t>() + ch["false_sentences"].get<int64_t>() +
                ch["unverifiable_sentences"].get<int64_t>(),
            ch["sentences"].get<int64_t>());
  // POPE confidences are probabilities; samples carry the `mmb metrics` keys.
  int64_t pope_samples = 0;
  for (const auto& s : r["samples"]) {
    ASSERT_TRUE(s.contains("task") && s.contains("correct"));
    if (s.contains("confidence")) {
      EXPECT_GE(s["confidence"].get<double>(), 0.0);
      EXPECT_LE(s["confidence"].get<double>(), 1.0);
    }
    pope_samples += s["task"] == "pope";
  }
  EXPECT_EQ(pope_samples, 18);
  EXPECT_FALSE(mmb::format_eval_headline(r).empty());
}

TEST_F(EvalFixture, OfficialPopeFilesAndTheirBadInputs) {
  auto vlm = mmb::Vlm::load(model_);
  const std::string dir = tmp_->file("pope_files");
  std::filesystem::create_directories(dir);
  const std::string images = world_ + "/images";
  mmb::write_file_atomic(dir + "/coco_pope_random.json",
                         "{\"question_id\": 1, \"image\": \"test_000000.png\", \"text\": \"Is there a star in the "
                         "image?\", \"label\": \"yes\"}\n"
                         "{\"question_id\": 2, \"image\": \"test_000001.png\", \"text\": \"Is there a dog in the "
                         "image?\", \"label\": \"no\"}\n");
  auto o = small_options();
  o.suite.clear();
  o.pope_files = {dir + "/coco_pope_random.json"};
  o.pope_images = images;
  auto r = mmb::run_eval(vlm, "", o);
  ASSERT_TRUE(r["pope_files"].contains("coco_pope_random.json"));
  const auto& m = r["pope_files"]["coco_pope_random.json"];
  EXPECT_TRUE(m.contains("coco_pope_random"));  // category = file stem
  EXPECT_EQ(m["all"]["n"], 2);

  mmb::write_file_atomic(
      dir + "/missing.json",
      "{\"question_id\": 1, \"image\": \"test_000000.png\", \"text\": \"Is there a star?\", \"label\": \"yes\"}\n"
      "{\"question_id\": 2, \"image\": \"nope.jpg\", \"text\": \"Is there a dog?\", \"label\": \"no\"}\n");
  o.pope_files = {dir + "/missing.json"};
  expect_throw_with([&] { mmb::run_eval(vlm, "", o); }, "missing.json:2: " + images + "/nope.jpg");

  mmb::write_file_atomic(
      dir + "/label.json",
      "{\"question_id\": 1, \"image\": \"test_000000.png\", \"text\": \"Is there a star?\", \"label\": \"maybe\"}\n");
  o.pope_files = {dir + "/label.json"};
  expect_throw_with([&] { mmb::run_eval(vlm, "", o); }, "label.json:1: label 'maybe' is not yes or no");

  mmb::write_file_atomic(dir + "/empty.json", "");
  o.pope_files = {dir + "/empty.json"};
  expect_throw_with([&] { mmb::run_eval(vlm, "", o); }, "empty.json: no questions");

  o.pope_files.clear();
  o.suite = {"pope", "vqa"};
  expect_throw_with([&] { mmb::run_eval(vlm, world_, o); }, "unknown task 'vqa'");
  o.suite = {"mc"};
  expect_throw_with([&] { mmb::run_eval(vlm, tmp_->file("nowhere"), o); }, "mc.jsonl not found");
}

TEST_F(EvalFixture, EvalCommandWritesRunDirectoryAndFailsClearly) {
  const std::string mmb = std::string(MMB_BINARY_DIR) + "/mmb";
  const std::string out = tmp_->file("run");
  int status = 0;
  std::string log = run_capture(mmb + " eval --model " + model_ + " --data " + world_ +
                                    " --suite pope,mc --limit 4 --batch 4 --short-tokens 3 --no-progress --out " + out,
                                &status);
  ASSERT_EQ(status, 0) << log;
  EXPECT_NE(log.find("pope/random"), std::string::npos) << log;
  auto r = mmb::read_json_file(out + "/results.json");
  EXPECT_TRUE(r.contains("pope"));
  EXPECT_TRUE(r.contains("mc"));
  EXPECT_FALSE(r.contains("samples"));
  EXPECT_TRUE(std::filesystem::exists(out + "/manifest.json"));
  // predictions.jsonl is the `mmb metrics --in` format.
  log = run_capture(mmb + " metrics --in " + out + "/predictions.jsonl", &status);
  EXPECT_EQ(status, 0) << log;
  EXPECT_NE(log.find("group pope/random"), std::string::npos) << log;

  mmb::write_file_atomic(
      tmp_->file("bad_pope.json"),
      "{\"question_id\": 1, \"image\": \"absent.png\", \"text\": \"Is there a star?\", \"label\": \"yes\"}\n");
  log = run_capture(mmb + " eval --model " + model_ + " --pope " + tmp_->file("bad_pope.json") + " --images " +
                        world_ + "/images",
                    &status);
  EXPECT_EQ(status, 1);
  EXPECT_NE(log.find("error: run_eval: 1 image(s) of"), std::string::npos) << log;
  EXPECT_NE(log.find("absent.png"), std::string::npos) << log;
  log = run_capture(mmb + " eval --model " + model_, &status);
  EXPECT_EQ(status, 1);
  EXPECT_NE(log.find("give --data"), std::string::npos) << log;
}

TEST_F(EvalFixture, TemperatureScalingFitsStoresAndIsUsedByEval) {
  // Library: fit on the test split itself (the tiny world's val split has 2 scenes).
  mmb::Vlm vlm = mmb::Vlm::load(model_);
  mmb::CalibrateOptions co;
  co.fit_split = "test";
  co.fit_limit = 24;
  co.test_limit = 24;
  co.batch_size = 8;
  co.progress = false;
  auto r = mmb::calibrate_temperatures(vlm, world_, co);
  for (const char* task : {"mc", "yes_no"}) {
    SCOPED_TRACE(task);
    ASSERT_TRUE(r.contains(task));
    const auto& t = r[task];
    const double T = t["fit"]["temperature"].get<double>();
    EXPECT_GT(T, 0);
    // Fitted and measured on the same questions: the NLL cannot get worse, accuracy cannot move.
    EXPECT_LE(t["test_nll_after"].get<double>(), t["test_nll_before"].get<double>() + 1e-12);
    EXPECT_EQ(t["test_after"]["accuracy"], t["test_before"]["accuracy"]);
    EXPECT_TRUE(t.contains("grid"));  // the calibration study's grid, for comparison
    EXPECT_EQ(r["calibration"][task]["temperature"], T);
  }
  // The CLI writes calibration.json into a model directory; eval then uses it.
  const std::string mdir = tmp_->file("model_cal");
  std::filesystem::create_directories(mdir);
  for (const auto& e : std::filesystem::directory_iterator(model_))
    std::filesystem::copy_file(e.path(), mdir + "/" + e.path().filename().string(),
                               std::filesystem::copy_options::overwrite_existing);
  const std::string mmb = std::string(MMB_BINARY_DIR) + "/mmb";
  int status = 0;
  std::string log = run_capture(mmb + " calibrate --model " + mdir + " --data " + world_ +
                                    " --fit-split test --fit-limit 12 --test-limit 12 --batch 6 --no-progress --out " +
                                    tmp_->file("cal_run"),
                                &status);
  ASSERT_EQ(status, 0) << log;
  EXPECT_NE(log.find("yes_no"), std::string::npos) << log;
  auto temps = mmb::read_confidence_temperatures(mdir);
  EXPECT_TRUE(temps.calibrated());
  EXPECT_TRUE(std::filesystem::exists(tmp_->file("cal_run") + "/results.json"));

  mmb::EvalOptions o = small_options();
  o.suite = {"mc", "pope"};
  auto plain = mmb::run_eval(vlm, world_, o);
  o.temperatures = temps;
  auto scaled = mmb::run_eval(vlm, world_, o);
  EXPECT_EQ(scaled["mc"]["accuracy"], plain["mc"]["accuracy"]);
  EXPECT_EQ(scaled["mc"]["temperature"], temps.mc);
  // The uncalibrated numbers reported next to the calibrated ones are those of a plain run.
  EXPECT_EQ(scaled["mc"]["calibration_uncalibrated"]["ece"], plain["mc"]["calibration"]["ece"]);
  EXPECT_EQ(scaled["pope"]["random"]["calibration_uncalibrated"]["ece"], plain["pope"]["random"]["calibration"]["ece"]);
  EXPECT_EQ(scaled["temperatures"]["mc"], temps.mc);

  log = run_capture(mmb + " eval --model " + mdir + " --data " + world_ +
                        " --suite mc --limit 4 --batch 4 --no-progress --json",
                    &status);
  ASSERT_EQ(status, 0) << log;
  EXPECT_NE(log.find("calibration_uncalibrated"), std::string::npos) << log;
  log = run_capture(mmb + " eval --model " + mdir + " --data " + world_ +
                        " --suite mc --limit 4 --batch 4 --no-progress --json --uncalibrated",
                    &status);
  ASSERT_EQ(status, 0) << log;
  EXPECT_EQ(log.find("calibration_uncalibrated"), std::string::npos) << log;
  // A corrupt calibration.json is an error naming the file, not a silent T = 1.
  mmb::write_file_atomic(mdir + "/calibration.json", "{\"mc\": {\"temperature\": 0}}");
  log =
      run_capture(mmb + " eval --model " + mdir + " --data " + world_ + " --suite mc --limit 2 --no-progress", &status);
  EXPECT_EQ(status, 1);
  EXPECT_NE(log.find("calibration.json"), std::string::npos) << log;
}

TEST_F(EvalFixture, AnswerConfidenceUsesTheMethodOfTheFirstTokenAndTheTemperature) {
  mmb::Vlm vlm = mmb::Vlm::load(model_);
  const auto scene_image = mmb::read_image(world_ + "/images/test_000000.png", 3);
  const std::string q = "Is there a star in the image?";
  torch::NoGradGuard ng;
  auto state = mmb::prefill(vlm.model(), vlm.encode_prompt(q, &scene_image), 1);
  const auto yn = mmb::yes_no_tokens(vlm.tokenizer());
  mmb::ConfidenceTemperatures temps;
  temps.yes_no = 2.5;
  temps.mc = 0.7;
  mmb::Generation g;
  g.tokens = {yn.no.front()};
  g.logprobs = {-0.5f};
  auto c = mmb::answer_confidence(vlm, q, &scene_image, g, temps);
  EXPECT_EQ(c.method, "yes_no");
  EXPECT_EQ(c.temperature, 2.5);
  EXPECT_NEAR(c.confidence, 1 - mmb::yes_probability(state.last_logits, yn, 2.5)[0], 1e-12);
  const auto letters = mmb::letter_tokens(vlm.tokenizer());
  g.tokens = {letters.ids[2].front()};
  c = mmb::answer_confidence(vlm, q, &scene_image, g, temps);
  EXPECT_EQ(c.method, "letter");
  EXPECT_NEAR(c.confidence,
              torch::softmax(state.last_logits[0].to(torch::kFloat64) / 0.7, -1)[letters.ids[2].front()].item<double>(),
              1e-12);
  g.tokens = {vlm.tokenizer().eos_id(), vlm.tokenizer().eos_id()};
  g.logprobs = {-0.2f, -0.4f};
  c = mmb::answer_confidence(vlm, q, &scene_image, g, temps);
  EXPECT_EQ(c.method, "sequence");
  EXPECT_NEAR(c.confidence, std::exp(-0.3), 1e-6);
  // And through `mmb generate --json`.
  int status = 0;
  const std::string log =
      run_capture(std::string(MMB_BINARY_DIR) + "/mmb generate --model " + model_ + " --image " + world_ +
                      "/images/test_000000.png --prompt '" + q + "' --max-new-tokens 4 --json",
                  &status);
  ASSERT_EQ(status, 0) << log;
  const size_t open = log.find('{'), close = log.rfind('}');  // stderr lines around the JSON
  ASSERT_TRUE(open != std::string::npos && close != std::string::npos) << log;
  auto j = mmb::Json::parse(log.substr(open, close - open + 1));
  ASSERT_TRUE(j.contains("confidence")) << log;
  EXPECT_GE(j["confidence"]["value"].get<double>(), 0.0);
  EXPECT_LE(j["confidence"]["value"].get<double>(), 1.0);
}

TEST(PromptSearch, TemplateParaphrasesAreDistinctDeterministicAndReworded) {
  auto p = mmb::make_template_paraphraser();
  const std::string seed = "The answer might be";
  auto a = p->paraphrase(seed, 5, 42);
  auto b = p->paraphrase(seed, 5, 42);
  ASSERT_EQ(a.size(), 5u);
  EXPECT_EQ(a, b);
  std::set<std::string> distinct(a.begin(), a.end());
  EXPECT_EQ(distinct.size(), 5u);
  for (const auto& s : a) EXPECT_NE(s, seed);
  EXPECT_NE(p->paraphrase(seed, 5, 43), a);
  // A prompt no rule matches still gets lead-ins and hedges, never itself.
  for (const auto& s : p->paraphrase("Xyz", 3, 1)) EXPECT_NE(s, "Xyz");
}

namespace {
// Returns the same two candidates for every prompt: each must be scored once.
class FixedParaphraser : public mmb::Paraphraser {
 public:
  std::vector<std::string> paraphrase(const std::string&, int count, uint64_t) override {
    calls++;
    std::vector<std::string> out = {"Think, then answer.", "Answer now."};
    out.resize(std::min<size_t>(out.size(), size_t(count)));
    return out;
  }
  std::string name() const override { return "fixed"; }
  int calls = 0;
};
}  // namespace

TEST_F(EvalFixture, PromptSearchKeepsTheBestByAccuracyBucketThenEce) {
  mmb::Vlm vlm = mmb::Vlm::load(model_);
  mmb::PromptSearchOptions o;
  o.rounds = 2;
  o.paraphrases = 2;
  o.keep = 2;
  o.train_split = "test";  // the tiny world: train questions are many, test ones enough
  o.train_limit = 8;
  o.test_limit = 8;
  o.batch_size = 8;
  o.progress = false;
  FixedParaphraser para;
  auto r = mmb::prompt_search(vlm, world_, para, o);
  ASSERT_EQ(r["rounds"].size(), 3u);     // round 0 (start prompts) + 2
  EXPECT_EQ(r["candidates_scored"], 4);  // 2 start prompts + 2 distinct paraphrases, each scored once
  EXPECT_EQ(para.calls, 4);              // 2 kept prompts x 2 rounds
  for (const auto& round : r["rounds"]) {
    int kept = 0;
    for (size_t i = 0; i < round.size(); ++i) {
      kept += round[i]["kept"].get<bool>();
      if (i == 0) continue;
      const auto& a = round[i - 1];
      const auto& b = round[i];
      const double ba = std::floor(a["accuracy"].get<double>() / 0.2 + 1e-12),
                   bb = std::floor(b["accuracy"].get<double>() / 0.2 + 1e-12);
      EXPECT_TRUE(ba > bb || (ba == bb && a["ece"].get<double>() <= b["ece"].get<double>())) << round.dump();
    }
    EXPECT_EQ(kept, std::min<int>(2, int(round.size())));
  }
  EXPECT_EQ(r["best"]["prompt"], r["rounds"][2][0]["prompt"]);
  EXPECT_EQ(r["test"]["start_prompts"].size(), 2u);
  EXPECT_TRUE(r["test"].contains("none"));
  o.keep = 0;
  expect_throw_with([&] { mmb::prompt_search(vlm, world_, para, o); }, "keep and paraphrases must be >= 1");
  // The command, with the template paraphraser.
  int status = 0;
  const std::string log =
      run_capture(std::string(MMB_BINARY_DIR) + "/mmb prompt-search --model " + model_ + " --data " + world_ +
                      " --train-split test --rounds 1 --paraphrases 2 --keep 2 " +
                      "--train-limit 4 --test-limit 4 --batch 4 --out " + tmp_->file("ps_run"),
                  &status);
  ASSERT_EQ(status, 0) << log;
  EXPECT_NE(log.find("held-out split test"), std::string::npos) << log;
  EXPECT_TRUE(std::filesystem::exists(tmp_->file("ps_run") + "/results.json"));
}

TEST(CalibrationStudyPrompt, WorldSftDataAndEvaluationWordMultipleChoiceAlike) {
  mmb::world::McQuestion m;
  m.question = "What colour is the star?";
  m.options = {"red", "yellow", "blue", "green", "white"};
  EXPECT_EQ(m.study_prompt(), mmb::calibration_study_mc_prompt(m.question, {m.options.begin(), m.options.end()}));
  EXPECT_NE(m.prompt(), m.study_prompt());
}
