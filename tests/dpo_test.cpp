// `mmb train dpo` end to end on a toy VLM: the policy learns the preference, the reference is
// computed once and then read from its cache, a cache from other inputs is refused, bad image
// paths are named.
#include "mmb/dpo.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "mmb/atomic_file.h"
#include "mmb/chat_template.h"
#include "mmb/checkpoint.h"
#include "mmb/jsonl.h"
#include "mmb/model.h"
#include "mmb/run_dir.h"
#include "mmb/safetensors.h"
#include "mmb/tokenizer.h"
#include "mmb/vlm.h"
#include "subprocess_util.h"
#include "test_util.h"
#include "train_test_util.h"
#include "vlm_test_util.h"
#include "dpo_internal.h"

using mmb::Json;
using mmb::testing::expect_throw_with;
using mmb::testing::TempDir;

namespace {

// A toy model directory (tokenizer, config, weights) and four pairs about two images.
void make_fixture(TempDir& d) {
  mmb::TokenizerTrainOptions t;
  for (int i = 0; i < 200; ++i) t.lines.push_back("What colour is the star? The star is yellow and the moon is white.");
  t.vocab_size = 300;
  t.output_prefix = d.file("tok");
  mmb::train_tokenizer(t);
  const mmb::Tokenizer tok = mmb::Tokenizer::load(d.file("tok.model"));
  mmb::LlavaConfig cfg = mmb::with_token_ids(mmb::testing::tiny_vlm(tok.num_ids()), tok);
  cfg.text.max_position_embeddings = 256;
  torch::manual_seed(3);
  mmb::LlavaForConditionalGeneration model(cfg);
  mmb::init_weights(*model, 3);
  mmb::save_model_dir(d.file("m"), mmb::to_json(cfg), *model);
  mmb::write_file_atomic(d.file("m/tokenizer.model"), mmb::read_file(d.file("tok.model")));
  mmb::ChatTemplate tmpl = mmb::ChatTemplate::vicuna_v1();
  tmpl.system = "A chat.";  // short: the toy tokenizer spells unseen words in bytes
  mmb::write_chat_template(d.file("m"), tmpl);
  mmb::testing::write_png_color(d.file("img/a.png"), 200, 200, 10);
  mmb::testing::write_png_color(d.file("img/b.png"), 10, 10, 200);
  std::string lines;
  for (int i = 0; i < 4; ++i)
    lines += Json{{"prompt", "What colour is the star?"},
                  {"chosen", i % 2 ? "The star is yellow." : "Yellow."},
                  {"rejected", i % 2 ? "The moon is white." : "White."},
                  {"images", {i % 2 ? "img/a.png" : "img/b.png"}},
                  {"source", "test"}}
                 .dump() +
             "\n";
  mmb::write_file_atomic(d.file("pairs.jsonl"), lines);
}

mmb::DpoRunOptions options(TempDir& d, const std::string& out) {
  mmb::DpoRunOptions o;
  o.model_dir = d.file("m");
  o.data = d.file("pairs.jsonl");
  o.image_root = d.path();
  o.out = d.file(out);
  o.batch_size = 4;
  o.steps = 25;
  o.lr = 2e-3;
  o.warmup_ratio = 0;
  o.checkpoint_every = 100;
  o.loss.beta = 0.5;
  return o;
}

}  // namespace

TEST(Dpo, QaBalanceDropsTheLastPairsOfTheLargerSide) {
  using V = std::vector<size_t>;
  EXPECT_EQ(mmb::qa_balance_drops({}), V{});
  EXPECT_EQ(mmb::qa_balance_drops({0, 0}), V{});                 // no QA pairs
  EXPECT_EQ(mmb::qa_balance_drops({1, -1, 0}), V{});             // balanced
  EXPECT_EQ(mmb::qa_balance_drops({1, 0, 1, -1, 1}), (V{4, 2})); // 3 yes, 1 no: the last two yes
  EXPECT_EQ(mmb::qa_balance_drops({-1, -1, 0}), (V{1, 0}));      // only no: all dropped
  EXPECT_EQ(mmb::qa_balance_drops({-1, 1, -1, -1}), (V{3, 2}));
}

// A sampled answer that ended at once is a side whose response is the end token alone, after
// the same prompt ids as any other answer.
TEST(Dpo, AnEmptySampledResponseIsTheEndTokenAlone) {
  TempDir d;
  make_fixture(d);
  const mmb::Tokenizer tok = mmb::Tokenizer::load(d.file("m/tokenizer.model"));
  const mmb::LlavaConfig cfg = mmb::llava_config_from_json(mmb::read_json_file(d.file("m/config.json")), "config");
  const mmb::ChatTemplate tmpl = mmb::chat_template_for(d.file("m"));
  mmb::PreferencePair pair;
  pair.prompt = {{"What colour is the star?", ""}};
  pair.image = "img/a.png";
  mmb::Side empty, full;
  int64_t truncated = 0;
  ASSERT_TRUE(mmb::tokenize_side(tok, tmpl, cfg, pair, "", 256, false, empty, &truncated));
  ASSERT_TRUE(mmb::tokenize_side(tok, tmpl, cfg, pair, "Yellow.", 256, false, full, &truncated));
  const size_t prompt = empty.ids.size() - 1;
  ASSERT_GT(full.ids.size(), empty.ids.size());
  EXPECT_EQ(std::vector<int32_t>(full.ids.begin(), full.ids.begin() + long(prompt)),
            std::vector<int32_t>(empty.ids.begin(), empty.ids.end() - 1));
  EXPECT_EQ(empty.ids.back(), tok.eos_id());
  for (size_t t = 0; t < empty.target.size(); ++t) EXPECT_EQ(empty.target[t], t == prompt ? 1 : 0) << t;
}

// One packed row per pair ([prompt | chosen | rejected]) gives each side the log-probs and the
// gradients of a separate forward of prompt + that side (TRL's concatenated form). In float64, so
// the comparison sees the packing and not float rounding (float32 gives ~2e-5 on these sums; in
// float64 the decoder's gradients agree to 1e-12 and the vision tower's to ~3e-6 of values ~9).
TEST(Dpo, PackedPairsEqualSeparateForwards) {
  mmb::LlavaConfig cfg = mmb::testing::tiny_vlm(40);
  torch::manual_seed(5);
  mmb::LlavaForConditionalGeneration model(cfg);
  mmb::init_weights(*model, 5, 0.2);  // large weights: the sides' log-probs differ clearly
  model->to(torch::kFloat64);
  const int64_t N = cfg.image_seq_length();
  auto side = [&](std::vector<int32_t> prompt_tail, std::vector<int32_t> response) {
    mmb::Side s;
    s.ids = {1};
    for (int64_t i = 0; i < N; ++i) s.ids.push_back(int32_t(cfg.image_token_index));
    s.ids.insert(s.ids.end(), prompt_tail.begin(), prompt_tail.end());
    s.target.assign(s.ids.size(), 0);
    s.ids.insert(s.ids.end(), response.begin(), response.end());
    s.target.resize(s.ids.size(), 1);
    return s;
  };
  // Pair 0 has a longer prompt; pair 1's responses start with the same token (shared prompt stops
  // at the response); pair 2's prompt has no text after the image.
  std::vector<mmb::Side> c = {side({7, 8, 9}, {10, 11, 2}), side({7}, {12, 13, 14, 15, 2}), side({}, {20, 2})};
  std::vector<mmb::Side> r = {side({7, 8, 9}, {16, 2}), side({7}, {12, 17, 2}), side({}, {21, 22, 23, 2})};
  std::vector<const mmb::Side*> cp, rp;
  for (size_t i = 0; i < c.size(); ++i) cp.push_back(&c[i]), rp.push_back(&r[i]);
  auto pixels = torch::randn({3, 3, cfg.vision.image_size, cfg.vision.image_size}, torch::kFloat64);
  const mmb::DpoBatch b = mmb::collate_pairs(cp, rp, pixels, cfg.text.pad_token_id);
  int64_t separate_tokens = 0;
  for (size_t i = 0; i < c.size(); ++i) separate_tokens += int64_t(c[i].ids.size() + r[i].ids.size());
  EXPECT_EQ(b.forwarded_tokens, separate_tokens - int64_t(c[0].ids.size() - 3 + c[1].ids.size() - 5 + c[2].ids.size() - 2));
  const auto weights = torch::randn({6}, torch::kFloat64);
  auto grads = [&](const torch::Tensor& loss) {
    model->zero_grad();
    loss.backward();
    std::vector<torch::Tensor> g;
    for (auto& p : model->parameters()) g.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
    return g;
  };
  auto [lp, n] = mmb::sequence_logps(model, b);  // (6,): chosen 0..2, rejected 0..2
  const auto packed_grads = grads((lp * weights).sum());
  // The same sides one row each.
  std::vector<torch::Tensor> sep_lp;
  for (size_t k = 0; k < 6; ++k) {
    const mmb::Side& s = k < 3 ? c[k] : r[k - 3];
    auto ids = torch::tensor(std::vector<int64_t>(s.ids.begin(), s.ids.end())).view({1, -1});
    auto logits = model->forward({ids, {}, pixels.narrow(0, int64_t(k % 3), 1)})[0];  // (L, V)
    auto logp = torch::log_softmax(logits, -1);
    torch::Tensor sum = torch::zeros({}, torch::kFloat64);
    double count = 0;
    for (size_t t = 1; t < s.ids.size(); ++t)
      if (s.target[t]) sum = sum + logp[int64_t(t) - 1][s.ids[t]], ++count;
    EXPECT_EQ(n[int64_t(k)].item<double>(), count) << "side " << k;
    sep_lp.push_back(sum);
  }
  auto sep = torch::stack(sep_lp);
  const auto sep_grads = grads((sep * weights).sum());
  const double value_diff = (lp - sep).abs().max().item<double>();
  double grad_diff = 0.0;
  for (size_t i = 0; i < sep_grads.size(); ++i)
    grad_diff = std::max(grad_diff, (packed_grads[i] - sep_grads[i]).abs().max().item<double>());
  std::printf("packed vs separate: log-probs max diff %.3g (values %.3g..%.3g), gradients %.3g\n", value_diff,
              sep.min().item<double>(), sep.max().item<double>(), grad_diff);
  EXPECT_LE(value_diff, 1e-9);
  EXPECT_LE(grad_diff, 1e-5);
  EXPECT_GT((lp.narrow(0, 0, 3) - lp.narrow(0, 3, 3)).abs().min().item<double>(), 1e-3) << "the sides must differ";
}

TEST(Dpo, LearnsThePreferenceAndCachesTheReference) {
  TempDir d;
  make_fixture(d);
  mmb::DpoReferenceInfo ref;
  const mmb::StepStats last = mmb::run_dpo(options(d, "run1"), nullptr, &ref);
  EXPECT_FALSE(ref.cached);
  EXPECT_EQ(ref.forward_pairs, 4);
  EXPECT_TRUE(std::filesystem::exists(d.file("run1/ref_logps.json")));
  EXPECT_TRUE(std::filesystem::exists(d.file("run1/model/model.safetensors")));
  EXPECT_LT(last.loss, std::log(2.0) * 0.5) << "DPO's loss starts at log 2";
  EXPECT_EQ(last.extra["rewards/accuracies"].get<double>(), 1.0);
  EXPECT_GT(last.extra["rewards/margins"].get<double>(), 0.5);
  EXPECT_GT(last.extra["rewards/chosen"].get<double>(), last.extra["rewards/rejected"].get<double>());
  for (const char* k : {"logps/chosen", "logps/rejected"}) EXPECT_TRUE(last.extra.contains(k)) << k;

  // Another run given the cache makes no reference forward; the same inputs give the same values.
  auto o = options(d, "run2");
  o.steps = 2;
  o.ref_cache = d.file("run1/ref_logps.json");
  mmb::DpoReferenceInfo again;
  mmb::run_dpo(o, nullptr, &again);
  EXPECT_TRUE(again.cached);
  EXPECT_EQ(again.forward_pairs, 0);
  EXPECT_EQ(again.fingerprint, ref.fingerprint);

  // A cache computed from other inputs is refused, naming what changed.
  o = options(d, "run3");
  o.ref_cache = d.file("run1/ref_logps.json");
  o.max_length = 100;
  expect_throw_with([&] { mmb::run_dpo(o, nullptr); }, "length changed");
  o = options(d, "run3");
  o.ref_cache = d.file("run1/ref_logps.json");
  o.ref_model_dir = d.file("run1/model");  // other reference weights
  expect_throw_with([&] { mmb::run_dpo(o, nullptr); }, "reference weights changed");
}

// mDPO's image-conditional term: the chosen response on a corrupted image is cached with the
// reference and trained down against the real image; a cache made without the term is refused.
TEST(Dpo, ImageConditionalTermTrainsTheImageAndIsCached) {
  TempDir d;
  make_fixture(d);
  for (const char* name : {"img/a.png", "img/b.png"}) {  // images with structure: a crop of one colour is the same image
    mmb::Image img(16, 16, 3);
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = uint8_t((i * 37 + (name[4] == 'a' ? 0 : 90)) % 256);
    mmb::write_png(d.file(name), img);
  }
  for (const char* kind : {"crop", "noise"}) {
    auto o = options(d, std::string("img_") + kind);
    o.loss.image_weight = 1.0;
    o.image_corruption = kind;
    o.image_keep = 0.2;
    mmb::DpoReferenceInfo ref;
    const mmb::StepStats last = mmb::run_dpo(o, nullptr, &ref);
    const Json cache = mmb::read_json_file(d.file(std::string("img_") + kind + "/ref_logps.json"));
    ASSERT_TRUE(cache.contains("chosen_corrupt")) << kind;
    EXPECT_EQ(cache["chosen_corrupt"].size(), 4u);
    // Corrupting the image lowers the reference's likelihood of the chosen answer only a little;
    // the term makes the policy tie the chosen answer to the real image.
    EXPECT_GT(last.extra["rewards/chosen"].get<double>(), last.extra["rewards/chosen_corrupt"].get<double>()) << kind;
    // A rerun reads m' from the cache: same inputs, no forward.
    o.steps = 1;
    o.out = d.file(std::string("img_again_") + kind);
    o.ref_cache = d.file(std::string("img_") + kind + "/ref_logps.json");
    mmb::DpoReferenceInfo again;
    mmb::run_dpo(o, nullptr, &again);
    EXPECT_TRUE(again.cached);
  }
  // The plain run's cache has no m': refused, naming the corruption.
  mmb::run_dpo(options(d, "plain"), nullptr);
  auto o = options(d, "img_from_plain");
  o.loss.image_weight = 1.0;
  o.ref_cache = d.file("plain/ref_logps.json");
  expect_throw_with([&] { mmb::run_dpo(o, nullptr); }, "image corruption");
  // Another keep share changes m': refused too.
  o.ref_cache = d.file("img_crop/ref_logps.json");
  o.image_keep = 0.5;
  expect_throw_with([&] { mmb::run_dpo(o, nullptr); }, "image corruption changed");
}

TEST(Dpo, EvaluatesHeldOutPairsWithTrlsMetrics) {
  TempDir d;
  make_fixture(d);
  auto o = options(d, "run");
  o.eval_data = d.file("pairs.jsonl");  // the training pairs: their held-out loss must fall as they are learnt
  o.eval_every = 5;
  {
    mmb::RunDir run(d.file("run"), mmb::RunInfo{});
    mmb::run_dpo(o, &run);
    run.finish();
  }
  std::vector<Json> evals;
  for (const auto& line : mmb::read_jsonl_file(d.file("run/metrics.jsonl")))
    if (line.contains("eval/loss")) evals.push_back(line);
  ASSERT_EQ(evals.size(), 5u);  // steps 5, 10, 15, 20, 25
  EXPECT_EQ(evals.front()["step"], 5);
  EXPECT_EQ(evals.back()["step"], 25);
  for (const char* k : {"eval/rewards/chosen", "eval/rewards/rejected", "eval/rewards/margins", "eval/rewards/accuracies",
                        "eval/logps/chosen", "eval/logps/rejected"})
    EXPECT_TRUE(evals.back().contains(k)) << k;
  EXPECT_EQ(evals.back()["eval/pairs"], 4);
  EXPECT_LT(evals.back()["eval/loss"].get<double>(), evals.front()["eval/loss"].get<double>());
  EXPECT_LT(evals.back()["eval/loss"].get<double>(), std::log(2.0) * 0.5);
  EXPECT_EQ(evals.back()["eval/rewards/accuracies"].get<double>(), 1.0);
  // The margin is the chosen reward minus the rejected one, as in training.
  EXPECT_NEAR(evals.back()["eval/rewards/margins"].get<double>(),
              evals.back()["eval/rewards/chosen"].get<double>() - evals.back()["eval/rewards/rejected"].get<double>(), 1e-6);
  o = options(d, "bad");
  o.eval_data = d.file("missing.jsonl");
  expect_throw_with([&] { mmb::run_dpo(o, nullptr); }, "missing.jsonl");
}

TEST(Dpo, ImagePathsStayUnderTheRootAndOverlongPairsAreCounted) {
  TempDir d;
  make_fixture(d);
  mmb::write_file_atomic(
      d.file("escape.jsonl"),
      Json{{"prompt", "Q"}, {"chosen", "Yellow."}, {"rejected", "White."}, {"images", {"../x.png"}}}.dump() + "\n");
  auto o = options(d, "run");
  o.data = d.file("escape.jsonl");
  expect_throw_with([&] { mmb::run_dpo(o, nullptr); }, "escape.jsonl:1: image path '../x.png' leaves the image root");
  o = options(d, "run");
  o.max_length = 8;  // shorter than the prompt with its image tokens: nothing can be cut to fit
  o.truncate_response = true;
  expect_throw_with([&] { mmb::run_dpo(o, nullptr); }, "no usable pair (4 over max_length 8)");
  o = options(d, "run");
  o.loss.loss = "kto";
  expect_throw_with([&] { mmb::run_dpo(o, nullptr); }, "unknown loss 'kto'");
}

TEST(Dpo, OnlineSamplesJudgesAndTrainsFromTheWorld) {
  TempDir d;
  auto run = [](const std::string& args) {
    int status = 0;
    const std::string out = mmb::testing::run_capture(std::string(MMB_BINARY_DIR) + "/mmb " + args, &status);
    return std::make_pair(status, out);
  };
  // The toy recipe: a small world and a small VLM trained on it, in seconds.
  auto base = run("train base --config " + std::string(MMB_SOURCE_DIR) + "/configs/quick.toml --no-eval --out " +
                  d.file("base"));
  ASSERT_EQ(base.first, 0) << base.second;
  auto dpo = run("train dpo --online --world " + d.file("base/world") + " --model " + d.file("base/sft/model") +
                 " --steps 2 --batch 2 --samples-per-prompt 3 --max-new-tokens 12 --out " + d.file("dpo"));
  ASSERT_EQ(dpo.first, 0) << dpo.second;
  const Json m = mmb::read_json_file(d.file("dpo/manifest.json"));
  EXPECT_EQ(m["results"]["online"]["responses_sampled"], 2 * 2 * 3) << m.dump(2);
  EXPECT_GT(m["results"]["online"]["rollout_tokens_per_s"].get<double>(), 0);
  EXPECT_TRUE(std::filesystem::exists(d.file("dpo/model/model.safetensors")));
  // Without a world the command says what it needs.
  auto bad = run("train dpo --online --model " + d.file("base/sft/model") + " --out " + d.file("dpo2"));
  EXPECT_NE(bad.first, 0);
  EXPECT_NE(bad.second.find("online DPO needs a world directory (--world)"), std::string::npos) << bad.second;

  // Mixed DPO: offline pairs (BPO's injected errors, no sampling needed to build them) in some slots.
  auto pairs = run("prefs bpo --no-noise --quiet --limit 12 --model " + d.file("base/sft/model") + " --world " +
                   d.file("base/world") + " --pairs " + d.file("pairs.jsonl"));
  ASSERT_EQ(pairs.first, 0) << pairs.second;
  const std::string common = " --world " + d.file("base/world") + " --model " + d.file("base/sft/model") +
                             " --data " + d.file("pairs.jsonl") + " --image-root " + d.file("base/world") +
                             " --steps 2 --batch 4 --samples-per-prompt 2 --max-new-tokens 12";
  auto mixed = run("train dpo --online --mix-online 0.5" + common + " --out " + d.file("mixed"));
  ASSERT_EQ(mixed.first, 0) << mixed.second;
  const Json mm = mmb::read_json_file(d.file("mixed/manifest.json"));
  const int64_t used = mm["results"]["online"]["offline_pairs_used"].get<int64_t>();
  EXPECT_GT(used, 0) << mm.dump(2);
  EXPECT_LT(used, 2 * 4);  // some slots were online (8 slots at p = 0.5: all offline has p 1/256)
  EXPECT_EQ(mm["results"]["online"]["responses_sampled"].get<int64_t>(), (2 * 4 - used) * 2);
  // avg DPO: every offline pair also gets the policy's worst sample as a second rejected.
  auto avg = run("train dpo --avg-gamma 0.5" + common + " --out " + d.file("avg"));
  ASSERT_EQ(avg.first, 0) << avg.second;
  const Json am = mmb::read_json_file(d.file("avg/manifest.json"));
  EXPECT_EQ(am["results"]["avg"]["responses_sampled"].get<int64_t>(), 2 * 4 * 2) << am.dump(2);
  EXPECT_TRUE(std::filesystem::exists(d.file("avg/model/model.safetensors")));
  bool logged = false;
  for (const auto& line : mmb::read_jsonl_file(d.file("avg/metrics.jsonl")))
    logged = logged || line.contains("avg/pairs_with_sampled_rejected");
  EXPECT_TRUE(logged);
  // The combinations that make no sense are named.
  auto both = run("train dpo --online --avg-gamma 0.5" + common + " --out " + d.file("both"));
  EXPECT_NE(both.second.find("avg DPO (avg_gamma < 1) and online DPO exclude each other"), std::string::npos)
      << both.second;
  auto nomix = run("train dpo --online" + common + " --out " + d.file("nomix"));
  EXPECT_NE(nomix.second.find("--data with --online is mixed DPO"), std::string::npos) << nomix.second;

  // The other judges rank by their own scores: the chosen sample's is the higher in every logged step.
  const std::string online = "train dpo --online --world " + d.file("base/world") + " --model " +
                             d.file("base/sft/model") + " --steps 3 --batch 2 --samples-per-prompt 3 --max-new-tokens 12";
  for (const std::string& judge : {std::string("clip"), std::string("likelihood"),
                                   std::string("mix --judge-mix clip=1,likelihood=0.5")}) {
    const std::string name = judge.substr(0, judge.find(' '));
    auto r = run(online + " --judge " + judge + " --clip " + d.file("base/clip/model") + " --out " + d.file("judge_" + name));
    ASSERT_EQ(r.first, 0) << r.second;
    EXPECT_NE(r.second.find(name + " judge"), std::string::npos) << r.second;
    int steps_with_pairs = 0;
    for (const auto& line : mmb::read_jsonl_file(d.file("judge_" + name + "/metrics.jsonl")))
      if (line.contains("online/chosen_score")) {
        ++steps_with_pairs;
        EXPECT_GT(line["online/chosen_score"].get<double>(), line["online/rejected_score"].get<double>()) << name;
      }
    EXPECT_GT(steps_with_pairs, 0) << name << ": no step kept a pair";
  }
  // Every task with the balanced short answers and length-matched descriptions: each step's QA
  // pairs choose "yes" as often as "no".
  auto tasks = run("train dpo --online --world " + d.file("base/world") + " --model " + d.file("base/sft/model") +
                   " --steps 6 --batch 4 --samples-per-prompt 3 --max-new-tokens 12"
                   " --online-tasks description qa reasoning pope:adversarial --qa-balance --greedy-sample "
                   "--loop-pairs both --finish-chains"
                   " --length-tolerance 0.25 --out " +
                   d.file("tasks"));
  ASSERT_EQ(tasks.first, 0) << tasks.second;
  const Json tm = mmb::read_json_file(d.file("tasks/manifest.json"));
  EXPECT_EQ(tm["results"]["online"]["responses_sampled"], 6 * 4 * 3) << tm.dump(2);  // one of the 3 greedy
  for (const char* k : {"qa_unbalanced_pairs", "length_unmatched_prompts", "tied_prompts", "loop_pairs"})
    EXPECT_TRUE(tm["results"]["online"].contains(k)) << k;
  double qa_pairs = tm["results"]["online"]["qa_unbalanced_pairs"].get<double>();
  for (const auto& line : mmb::read_jsonl_file(d.file("tasks/metrics.jsonl"))) {
    if (line.contains("online/qa_chosen_yes")) {
      EXPECT_EQ(line["online/qa_chosen_yes"].get<double>(), line["online/qa_chosen_no"].get<double>()) << line.dump();
      qa_pairs += 2 * line["online/qa_chosen_yes"].get<double>();
    }
  }
  // How many QA pairs form depends on the toy model's samples (often none): the balancing rule
  // itself is tested in Dpo.QaBalanceDropsTheLastPairsOfTheLargerSide.
  std::printf("online tasks: %g QA pairs formed (kept or dropped to balance)\n", qa_pairs);
  auto noclip = run(online + " --judge clip --out " + d.file("noclip"));
  EXPECT_NE(noclip.second.find("the clip judge scores with a CLIP model: give --clip DIR"), std::string::npos) << noclip.second;
  auto avgclip = run("train dpo --avg-gamma 0.5 --judge clip --clip " + d.file("base/clip/model") + common + " --out " + d.file("avgclip"));
  EXPECT_NE(avgclip.second.find("avg DPO ranks its samples against y+ with the verifier judge only"), std::string::npos)
      << avgclip.second;
}

// Data parallel under torchrun's variables: two Gloo ranks with half the global batch each end
// with the weights of one process trained on the whole batch.
TEST(Dpo, TwoGlooRanksMatchOneRank) {
#ifndef USE_C10D_GLOO
  FAIL() << "built without c10d Gloo (USE_C10D_GLOO): install libgloo-dev and reconfigure";
#endif
  TempDir d;
  make_fixture(d);
  const std::string mmb = std::string(MMB_BINARY_DIR) + "/mmb train dpo --model " + d.file("m") + " --data " +
                          d.file("pairs.jsonl") + " --image-root " + d.path() +
                          " --batch 4 --steps 3 --lr 2e-3 --warmup-ratio 0 --beta 0.5 --checkpoint-every 100 --threads 1";
  int status = 0;
  std::string out = mmb::testing::run_capture(mmb + " --out " + d.file("one"), &status);
  ASSERT_EQ(status, 0) << out;
  const std::string env = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                          std::to_string(mmb::testing::free_port());
  out = mmb::testing::run_capture("(" + env + " RANK=0 LOCAL_RANK=0 " + mmb + " --out " + d.file("two") + " > " +
                                      d.file("rank0.log") + " 2>&1 & " + env + " RANK=1 LOCAL_RANK=1 " + mmb +
                                      " --out " + d.file("two") + " > " + d.file("rank1.log") +
                                      " 2>&1; r1=$?; wait $!; r0=$?; exit $((r0 | r1)))",
                                  &status);
  ASSERT_EQ(status, 0) << out << mmb::testing::slurp(d.file("rank0.log")) << mmb::testing::slurp(d.file("rank1.log"));
  const auto one = mmb::load_safetensors(d.file("one/model/model.safetensors"));
  const auto two = mmb::load_safetensors(d.file("two/model/model.safetensors"));
  const auto start = mmb::load_safetensors(d.file("m/model.safetensors"));
  EXPECT_GT(mmb::testing::max_abs_diff(one, start), 1e-4) << "the run did not train";
  // The ranks sum their gradients in another order than one process; AdamW's first steps scale
  // each gradient to about lr, so float rounding shows as ~1e-5 here (1% of the 3-step update).
  EXPECT_LE(mmb::testing::max_abs_diff(one, two), 6e-5);
  // Only rank 0 logged, and it logged the global batch's metrics.
  const auto m1 = mmb::read_jsonl_file(d.file("one/metrics.jsonl")), m2 = mmb::read_jsonl_file(d.file("two/metrics.jsonl"));
  ASSERT_EQ(m1.size(), m2.size());
  EXPECT_NEAR(m1.front()["loss"].get<double>(), m2.front()["loss"].get<double>(), 1e-6);  // same weights, same pairs
  EXPECT_NEAR(m1.back()["loss"].get<double>(), m2.back()["loss"].get<double>(), 1e-4);
}
