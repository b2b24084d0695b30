// SFT and CLIP training: overfit one batch, loss masking, bad data named by file and sample.
#include "mmb/sft.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>
#include <sstream>


#include "mmb/atomic_file.h"
#include "mmb/checkpoint.h"
#include "mmb/data.h"
#include "mmb/image.h"
#include "mmb/json.h"
#include "mmb/safetensors.h"
#include "mmb/tokenizer.h"
#include "test_util.h"
#include "vlm_test_util.h"

using mmb::testing::expect_throw_with;
using mmb::testing::TempDir;
using mmb::testing::tiny_clip;
using mmb::testing::tiny_vision;
using mmb::testing::tiny_vlm;
using mmb::testing::write_png_color;

namespace {


// A handmade batch: [bos, img x4, 7, 8, 9, 10, 11, 2] with the answer 10 11 2 as targets.
mmb::SftBatch handmade_batch() {
  auto ids = torch::tensor({1, 4, 4, 4, 4, 7, 8, 9, 10, 11, 2}, torch::kLong).unsqueeze(0).repeat({2, 1});
  ids[1][9] = 12;  // the second row answers differently
  auto mask = torch::ones_like(ids);
  auto loss = torch::zeros_like(ids, torch::kBool);
  loss.narrow(1, 8, 3).fill_(true);
  torch::manual_seed(0);
  return {ids, mask, loss, torch::randn({2, 3, 16, 16}), 6};
}

}  // namespace

TEST(Sft, OverfitsOneBatchAndDependsOnTheImage) {
  mmb::LlavaForConditionalGeneration model(tiny_vlm(20));
  mmb::init_weights(*model, 1);
  auto batch = handmade_batch();
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(3e-3));
  double first = 0, last = 0;
  for (int i = 0; i < 150; ++i) {
    opt.zero_grad();
    auto out = mmb::sft_loss(model, batch);
    out.loss.backward();
    opt.step();
    if (i == 0) first = out.loss.item<double>();
    last = out.loss.item<double>();
  }
  std::printf("sft overfit: loss %.3f -> %.4f\n", first, last);
  EXPECT_LT(last, 0.05);
  EXPECT_GT(first, 2.0);
  // The two rows differ only by their image: telling the answers apart needs the image.
  auto out = mmb::sft_loss(model, batch);
  EXPECT_NEAR(out.metrics["token_accuracy"].get<double>(), 1.0, 1e-9);
  EXPECT_EQ(out.tokens, 6);
}

TEST(Sft, LossCoversOnlyMaskedTargets) {
  mmb::LlavaForConditionalGeneration model(tiny_vlm(20));
  mmb::init_weights(*model, 2);
  auto b = handmade_batch();
  torch::NoGradGuard ng;
  auto logits = model->forward({b.input_ids, b.attention_mask, b.pixel_values});
  auto logp = torch::log_softmax(logits, -1);
  double manual = 0;
  for (int r = 0; r < 2; ++r)
    for (int t = 8; t <= 10; ++t) manual -= logp[r][t - 1][b.input_ids[r][t].item<int64_t>()].item<double>();
  EXPECT_NEAR(mmb::sft_loss(model, b).loss.item<double>(), manual / 6.0, 1e-5);
}

TEST(Clip, OverfitsOneBatch) {
  const mmb::ClipConfig c = tiny_clip(30);
  mmb::ClipModel clip(c);
  mmb::init_weights(*clip, 3);
  torch::manual_seed(1);
  mmb::ClipBatch b{torch::randn({6, 3, 16, 16}), torch::randint(5, 30, {6, 5}, torch::kLong),
                   torch::ones({6, 5}, torch::kLong)};
  b.input_ids.select(1, 4).fill_(2);  // eos
  torch::optim::AdamW opt(clip->parameters(), torch::optim::AdamWOptions(3e-3));
  double first = 0, last = 0, acc = 0;
  for (int i = 0; i < 150; ++i) {
    opt.zero_grad();
    auto out = mmb::clip_loss(clip, b);
    out.loss.backward();
    opt.step();
    if (i == 0) first = out.loss.item<double>();
    last = out.loss.item<double>();
    acc = out.metrics["i2t_accuracy"].get<double>();
  }
  std::printf("clip overfit: loss %.3f -> %.4f, i2t accuracy %.2f\n", first, last, acc);
  EXPECT_LT(last, 0.1);
  EXPECT_EQ(acc, 1.0);

  // Hard negatives: 4 more captions, each the negative of image 0, 1, 2, 2. The text->image side
  // is unchanged; image->text only gains competitors, so the loss cannot drop.
  torch::NoGradGuard ng;
  auto plain = mmb::clip_loss(clip, b);
  mmb::ClipBatch hb = b;
  auto negs = torch::randint(5, 30, {4, 5}, torch::kLong);
  negs.select(1, 4).fill_(2);
  hb.input_ids = torch::cat({b.input_ids, negs});
  hb.attention_mask = torch::ones({10, 5}, torch::kLong);
  hb.negative_of = torch::tensor(std::vector<int64_t>{0, 1, 2, 2}, torch::kLong);
  auto hard = mmb::clip_loss(clip, hb);
  EXPECT_GT(hard.loss.item<double>(), plain.loss.item<double>());
  ASSERT_TRUE(hard.metrics.contains("hard_negative_accuracy"));
  // The share of hard negatives scored below their image's caption, recomputed from the logits.
  {
    auto lpi = clip->logits_per_image(clip->image_embeds(hb.pixel_values),
                                      clip->text_embeds(hb.input_ids, hb.attention_mask));  // (6, 10)
    int below = 0;
    const std::vector<int64_t> of = {0, 1, 2, 2};
    for (int k = 0; k < 4; ++k)
      below += lpi[of[size_t(k)]][6 + k].item<float>() < lpi[of[size_t(k)]][of[size_t(k)]].item<float>();
    EXPECT_DOUBLE_EQ(hard.metrics["hard_negative_accuracy"].get<double>(), below / 4.0);
  }
  // A "negative" equal to its image's true caption is never ranked below it: accuracy 0 for it.
  mmb::ClipBatch same = b;
  same.input_ids = torch::cat({b.input_ids, b.input_ids.narrow(0, 0, 1)});
  same.attention_mask = torch::ones({7, 5}, torch::kLong);
  same.negative_of = torch::tensor(std::vector<int64_t>{0}, torch::kLong);
  EXPECT_EQ(mmb::clip_loss(clip, same).metrics["hard_negative_accuracy"].get<double>(), 0.0);
  mmb::ClipBatch wrong = hb;
  wrong.negative_of = torch::tensor(std::vector<int64_t>{0}, torch::kLong);
  expect_throw_with([&] { mmb::clip_loss(clip, wrong); }, "captions for 6 images and 1 hard negatives");
}

TEST(Clip, TagLossTeachesTheTowerToNameTags) {
  // Tags are whole words of the list, in its order.
  const auto words = mmb::world_tag_words();
  ASSERT_EQ(words.size(), 18u);  // 10 shapes, 8 colours
  auto t = mmb::caption_tags("a small red star and a starry blue circle.", words);
  ASSERT_EQ(t.size(), words.size());
  for (size_t i = 0; i < words.size(); ++i) {
    const bool named = words[i] == "red" || words[i] == "star" || words[i] == "blue" || words[i] == "circle";
    EXPECT_EQ(t[i], named ? 1 : 0) << words[i];
  }

  const mmb::ClipConfig c = tiny_clip(30);
  mmb::ClipModel clip(c);
  mmb::init_weights(*clip, 3);
  torch::manual_seed(2);
  mmb::ClipBatch b{torch::randn({6, 3, 16, 16}), torch::randint(5, 30, {6, 5}, torch::kLong),
                   torch::ones({6, 5}, torch::kLong)};
  b.input_ids.select(1, 4).fill_(2);  // eos
  b.tags = torch::randint(0, 2, {6, 5}).to(torch::kFloat32);
  mmb::ClipTagLoss tag{torch::nn::Linear(32, 5), -1, 2.0};
  auto params = clip->parameters();
  for (auto& p : tag.head->parameters()) params.push_back(p);
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(3e-3));
  double first_tag = 0, last_tag = 0, acc = 0;
  for (int i = 0; i < 150; ++i) {
    opt.zero_grad();
    auto out = mmb::clip_loss(clip, b, &tag);
    out.loss.backward();
    opt.step();
    // The total is InfoNCE + weight * BCE.
    EXPECT_NEAR(out.loss.item<double>(),
                out.metrics["contrastive_loss"].get<double>() + 2.0 * out.metrics["tag_loss"].get<double>(), 1e-5);
    if (i == 0) first_tag = out.metrics["tag_loss"].get<double>();
    last_tag = out.metrics["tag_loss"].get<double>();
    acc = out.metrics["tag_accuracy"].get<double>();
  }
  std::printf("clip tag loss: %.3f -> %.4f, tag accuracy %.2f\n", first_tag, last_tag, acc);
  EXPECT_LT(last_tag, 0.1 * first_tag);
  EXPECT_EQ(acc, 1.0);
  // Without tags in the batch (or without a head) the loss is plain InfoNCE.
  torch::NoGradGuard ng;
  mmb::ClipBatch untagged = b;
  untagged.tags = torch::Tensor();
  EXPECT_FALSE(mmb::clip_loss(clip, untagged, &tag).metrics.contains("tag_loss"));
  EXPECT_NEAR(mmb::clip_loss(clip, b).loss.item<double>(), mmb::clip_loss(clip, untagged, &tag).loss.item<double>(),
              1e-6);
  mmb::ClipBatch wrong = b;
  wrong.tags = torch::zeros({6, 4});
  expect_throw_with([&] { mmb::clip_loss(clip, wrong, &tag); }, "the tag head predicts");
  // Pooling: the image's tag logits are the max (or the mean) over patches of the head applied
  // to each patch token of the layer; recomputed here from the hidden states.
  auto h = clip->vision_model()->hidden_state(b.pixel_values, -1);
  auto per_patch = tag.head(h.narrow(1, 1, h.size(1) - 1));  // (B, P-1, K)
  for (const std::string pool : {"max", "mean"}) {
    mmb::ClipTagLoss t2 = tag;
    t2.pool = pool;
    auto logits = pool == "max" ? std::get<0>(per_patch.max(1)) : per_patch.mean(1);
    double bce = torch::nn::functional::binary_cross_entropy_with_logits(logits, b.tags).item<double>();
    EXPECT_NEAR(mmb::clip_loss(clip, b, &t2).metrics["tag_loss"].get<double>(), bce, 1e-5) << pool;
  }
  tag.pool = "median";
  expect_throw_with([&] { mmb::clip_loss(clip, b, &tag); }, "tag pooling must be 'max' or 'mean'");
}

TEST(Clip, HardNegativeCaptionsSwapOneWordOfAGroup) {
  const auto o = mmb::world_hard_negatives(3);
  const std::string cap = "a small red star at the top left and a large blue circle in the center.";
  auto negs = mmb::hard_negative_captions(cap, o, 3, 42);
  ASSERT_EQ(negs.size(), 3u);
  EXPECT_EQ(negs, mmb::hard_negative_captions(cap, o, 3, 42));  // deterministic
  auto words = [](const std::string& s) {
    std::vector<std::string> w;
    std::stringstream ss(s);
    for (std::string x; ss >> x;) w.push_back(x);
    return w;
  };
  const auto base = words(cap);
  std::set<std::string> distinct(negs.begin(), negs.end());
  EXPECT_EQ(distinct.size(), 3u);
  for (const auto& n : negs) {
    auto w = words(n);
    ASSERT_EQ(w.size(), base.size()) << n;
    int changed = 0;
    for (size_t i = 0; i < w.size(); ++i)
      if (w[i] != base[i]) {
        changed++;
        // Swapped within its group: a shape for a shape, a colour for a colour.
        auto in = [&](size_t g, std::string x) {
          while (!x.empty() && !std::isalpha(static_cast<unsigned char>(x.back()))) x.pop_back();
          return std::find(o.groups[g].begin(), o.groups[g].end(), x) != o.groups[g].end();
        };
        EXPECT_TRUE((in(0, base[i]) && in(0, w[i])) || (in(1, base[i]) && in(1, w[i]))) << base[i] << " -> " << w[i];
      }
    EXPECT_EQ(changed, 1) << n;
  }
  // Only whole words: "starry" is not "star"; no group word, no negative.
  EXPECT_TRUE(mmb::hard_negative_captions("a starry sky", o, 2, 1).empty());
  EXPECT_TRUE(mmb::hard_negative_captions("nothing here", o, 2, 1).empty());
}

TEST(Data, BadConversationsAreNamedByFileAndSample) {
  TempDir d;
  mmb::write_file_atomic(
      d.file("a.json"),
      R"([{"id":"ok","image":"x.png","conversations":[{"from":"human","value":"<image>\nQ"},{"from":"gpt","value":"A"}]},
{"id":"bad","conversations":[{"from":"human","value":"Q"}]}])");
  expect_throw_with([&] { mmb::read_conversations(d.file("a.json")); }, "a.json#1: odd number of turns");
  mmb::write_file_atomic(
      d.file("b.jsonl"),
      "{\"id\":\"ok\",\"conversations\":[{\"from\":\"human\",\"value\":\"Q\"},{\"from\":\"gpt\",\"value\":\"A\"}]}\n"
      "{\"id\":\"x\",\"conversations\":[{\"from\":\"gpt\",\"value\":\"Q\"},{\"from\":\"human\",\"value\":\"A\"}]}\n");
  expect_throw_with([&] { mmb::read_conversations(d.file("b.jsonl")); }, "b.jsonl:2: turns 0/1 are 'gpt'/'human'");
  mmb::write_file_atomic(
      d.file("c.jsonl"),
      "{\"id\":\"e\",\"conversations\":[{\"from\":\"human\",\"value\":\"Q\"},{\"from\":\"gpt\",\"value\":\"\"}]}\n");
  expect_throw_with([&] { mmb::read_conversations(d.file("c.jsonl")); }, "c.jsonl:1: empty answer");
}

TEST(Data, FilterTasksKeepsTheTasksAskedFor) {
  TempDir d;
  mmb::write_file_atomic(
      d.file("t.jsonl"),
      "{\"id\":\"a\",\"task\":\"qa\",\"conversations\":[{\"from\":\"human\",\"value\":\"Q\"},{\"from\":\"gpt\","
      "\"value\":\"A\"}]}\n"
      "{\"id\":\"b\",\"task\":\"description\",\"conversations\":[{\"from\":\"human\",\"value\":\"Q\"},{\"from\":"
      "\"gpt\",\"value\":\"A\"}]}\n"
      "{\"id\":\"c\",\"conversations\":[{\"from\":\"human\",\"value\":\"Q\"},{\"from\":\"gpt\",\"value\":\"A\"}]}\n"
      "{\"id\":\"d\",\"task\":\"qa\",\"conversations\":[{\"from\":\"human\",\"value\":\"Q\"},{\"from\":\"gpt\","
      "\"value\":\"A\"}]}\n");
  auto all = mmb::read_conversations(d.file("t.jsonl"));
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(mmb::filter_tasks(all, {}, "test").size(), 4u);  // no filter: everything
  auto qa = mmb::filter_tasks(all, {"qa"}, "test");
  ASSERT_EQ(qa.size(), 2u);
  EXPECT_EQ(qa[0].id, "a");
  EXPECT_EQ(qa[1].id, "d");
  EXPECT_EQ(mmb::filter_tasks(all, {"description", "qa"}, "test").size(), 3u);
  expect_throw_with([&] { mmb::filter_tasks(all, {"mc"}, "run_sft: --tasks"); },
                    "run_sft: --tasks: no sample has task 'mc'; the data has (no task) 1, 'description' 1, 'qa' 2");
}

TEST(Data, RepeatTasksCopiesTheTasksAskedFor) {
  auto sample = [](const char* id, const char* task) {
    mmb::ConversationSample s;
    s.id = id;
    s.task = task;
    return s;
  };
  std::vector<mmb::ConversationSample> all = {sample("a", "qa"), sample("b", "description"),
                                              sample("c", ""), sample("d", "qa")};
  EXPECT_EQ(mmb::repeat_tasks(all, {}, "test").size(), 4u);  // nothing asked: unchanged
  auto spec = mmb::parse_task_repeat("qa=3,description=2", "test");
  ASSERT_EQ(spec.size(), 2u);
  EXPECT_EQ(spec["qa"], 3);
  auto out = mmb::repeat_tasks(all, spec, "test");
  std::vector<std::string> ids;
  for (const auto& s : out) ids.push_back(s.id);
  // The originals in order, then the copies (per task, in order).
  EXPECT_EQ(ids, (std::vector<std::string>{"a", "b", "c", "d", "b", "a", "d", "a", "d"}));
  expect_throw_with(
      [&] {
        mmb::repeat_tasks(all, {{"mc", 2}}, "run_sft: --task-repeat");
      },
      "run_sft: --task-repeat: no sample has task 'mc'; the data has (no task) 1, 'description' 1, 'qa' 2");
  expect_throw_with([] { mmb::parse_task_repeat("qa", "w"); }, "w: 'qa' is not task=count");
  expect_throw_with([] { mmb::parse_task_repeat("qa=0", "w"); },
                    "the count of 'qa' must be an integer in [1, 1000], got '0'");
  expect_throw_with([] { mmb::parse_task_repeat("qa=2x", "w"); }, "got '2x'");
  expect_throw_with([] { mmb::parse_task_repeat("qa=2,qa=3", "w"); }, "task 'qa' given twice");
  EXPECT_TRUE(mmb::parse_task_repeat("", "w").empty());
}

namespace {
// A tiny SentencePiece model trained in `d` on one sentence.
mmb::Tokenizer star_tokenizer(TempDir& d) {
  mmb::TokenizerTrainOptions t;
  for (int i = 0; i < 200; ++i) t.lines.push_back("What colour is the star? The star is yellow and the moon is white.");
  t.vocab_size = 300;
  t.output_prefix = d.file("tok");
  mmb::train_tokenizer(t);
  return mmb::Tokenizer::load(d.file("tok.model"));
}
}  // namespace

TEST(Data, MissingImageAndOverlongSamples) {
  TempDir d;
  auto tok = star_tokenizer(d);
  auto cfg = tiny_vlm(tok.num_ids());
  cfg.image_token_index = tok.image_id();
  write_png_color(d.file("img/a.png"), 200, 10, 10);
  mmb::write_file_atomic(
      d.file("data.jsonl"),
      "{\"id\":\"s0\",\"image\":\"img/a.png\",\"conversations\":[{\"from\":\"human\",\"value\":\"<image>\\nWhat colour "
      "is the star?\"},{\"from\":\"gpt\",\"value\":\"Yellow.\"}]}\n"
      "{\"id\":\"s1\",\"image\":\"img/"
      "missing.png\",\"conversations\":[{\"from\":\"human\",\"value\":\"<image>\\nQ?\"},{\"from\":\"gpt\",\"value\":"
      "\"A.\"}]}\n");
  auto samples = mmb::read_conversations(d.file("data.jsonl"));
  mmb::SftDataOptions o;
  expect_throw_with([&] { mmb::SftDataset(samples, d.path(), tok, mmb::ChatTemplate::vicuna_v1(), cfg, o); },
                    "data.jsonl:2 (s1)");
  samples.pop_back();
  auto long_turns = samples.front();
  for (int i = 0; i < 20; ++i)
    long_turns.turns.push_back({"What colour is the star?", "The star is yellow and the moon is white."});
  long_turns.where = "data.jsonl:3";
  samples.push_back(long_turns);
  o.max_length = 400;
  mmb::SftDataset ds(samples, d.path(), tok, mmb::ChatTemplate::vicuna_v1(), cfg, o);
  EXPECT_EQ(ds.size(), 1);
  EXPECT_EQ(ds.report().rejected_too_long, 1);
  ASSERT_EQ(ds.report().rejected_examples.size(), 1u);
  EXPECT_NE(ds.report().rejected_examples[0].find("data.jsonl:3"), std::string::npos);
  o.error_on_too_long = true;
  expect_throw_with([&] { mmb::SftDataset(samples, d.path(), tok, mmb::ChatTemplate::vicuna_v1(), cfg, o); },
                    "over max_length 400");
  // the batch: image tokens and prompt are out of the loss, the answer and EOS are in
  auto b = ds.batch({0});
  auto ids = b.input_ids[0];
  EXPECT_EQ((ids == tok.image_id()).sum().item<int64_t>(), cfg.image_seq_length());
  EXPECT_FALSE((b.loss_mask[0] & (ids == tok.image_id())).any().item<bool>());
  EXPECT_TRUE(b.loss_mask[0][-1].item<bool>());
  EXPECT_EQ(ids[-1].item<int64_t>(), tok.eos_id());
}

TEST(Sft, LossPerTurnWeighsEveryAnswerOnce) {
  TempDir d;
  auto tok = star_tokenizer(d);
  auto cfg = tiny_vlm(tok.num_ids());
  cfg.image_token_index = tok.image_id();
  cfg.text.max_position_embeddings = 512;
  write_png_color(d.file("a.png"), 10, 200, 10);
  // One short answer and one long one, in one conversation, and a one-turn sample.
  mmb::write_file_atomic(d.file("data.jsonl"),
                         "{\"id\":\"two\",\"image\":\"a.png\",\"conversations\":[{\"from\":\"human\",\"value\":\"<"
                         "image>\\nWhat colour is the star?\"},{\"from\":\"gpt\",\"value\":\"Yellow.\"},"
                         "{\"from\":\"human\",\"value\":\"What colour is the "
                         "moon?\"},{\"from\":\"gpt\",\"value\":\"The star is yellow and the moon is white.\"}]}\n"
                         "{\"id\":\"one\",\"image\":\"a.png\",\"conversations\":[{\"from\":\"human\",\"value\":\"<"
                         "image>\\nWhat colour is the moon?\"},{\"from\":\"gpt\",\"value\":\"White.\"}]}\n");
  auto samples = mmb::read_conversations(d.file("data.jsonl"));
  mmb::SftDataOptions o;
  const auto tmpl = mmb::ChatTemplate::vicuna_v1();
  auto per_token = mmb::SftDataset(samples, d.path(), tok, tmpl, cfg, o).batch({0, 1});
  o.loss_norm = "turn";
  auto per_turn = mmb::SftDataset(samples, d.path(), tok, tmpl, cfg, o).batch({0, 1});
  ASSERT_TRUE(per_token.loss_mask.equal(per_turn.loss_mask));
  EXPECT_TRUE(per_token.loss_weight.equal(per_token.loss_mask.to(torch::kFloat32)));
  // Each answer is a run of targets; per turn, every run weighs 1 in all.
  std::vector<std::pair<int64_t, std::pair<int64_t, int64_t>>> runs;  // (row, [begin, end))
  for (int64_t r = 0; r < 2; ++r) {
    auto m = per_turn.loss_mask[r];
    for (int64_t t = 0; t < m.size(0);) {
      if (!m[t].item<bool>()) { ++t; continue; }
      int64_t e = t;
      while (e < m.size(0) && m[e].item<bool>()) ++e;
      runs.push_back({r, {t, e}});
      EXPECT_NEAR(per_turn.loss_weight[r].slice(0, t, e).sum().item<double>(), 1.0, 1e-6);
      t = e;
    }
  }
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_GT(runs[1].second.second - runs[1].second.first, 3 * (runs[0].second.second - runs[0].second.first));
  EXPECT_EQ(per_turn.loss_weight.sum().item<double>(), 3.0);
  // The loss is the mean over answers of each answer's mean token loss.
  mmb::LlavaForConditionalGeneration model(cfg);
  mmb::init_weights(*model, 3);
  torch::NoGradGuard ng;
  auto logp =
      torch::log_softmax(model->forward({per_turn.input_ids, per_turn.attention_mask, per_turn.pixel_values}), -1);
  double turn_mean = 0, token_sum = 0;
  int64_t tokens = 0;
  for (auto& [r, span] : runs) {
    double s = 0;
    for (int64_t t = span.first; t < span.second; ++t)
      s -= logp[r][t - 1][per_turn.input_ids[r][t].item<int64_t>()].item<double>();
    turn_mean += s / double(span.second - span.first) / 3.0;
    token_sum += s;
    tokens += span.second - span.first;
  }
  EXPECT_NEAR(mmb::sft_loss(model, per_turn).loss.item<double>(), turn_mean, 1e-5);
  EXPECT_NEAR(mmb::sft_loss(model, per_token).loss.item<double>(), token_sum / double(tokens), 1e-5);
  EXPECT_EQ(mmb::sft_loss(model, per_turn).tokens, tokens);
  // Micro-batches and ranks weigh by answers per turn, by tokens per token.
  EXPECT_NEAR(mmb::sft_loss(model, per_turn).weight, 3.0, 1e-6);
  EXPECT_NEAR(mmb::sft_loss(model, per_token).weight, double(tokens), 1e-6);
  o.loss_norm = "sample";
  expect_throw_with([&] { mmb::SftDataset(samples, d.path(), tok, tmpl, cfg, o); }, "'token' or 'turn', got 'sample'");
}

TEST(Clip, TagLossRunResumesExactlyAndSavesAPlainClip) {
  TempDir d;
  const std::vector<std::string> caps = {"a small red star.",
                                         "a large blue circle.",
                                         "a small green heart and a red moon.",
                                         "a large yellow ring.",
                                         "a blue square and a white cross.",
                                         "a small cyan diamond.",
                                         "a purple hexagon.",
                                         "an orange triangle and a red star."};
  mmb::TokenizerTrainOptions t;
  for (int i = 0; i < 40; ++i) t.lines.insert(t.lines.end(), caps.begin(), caps.end());
  t.vocab_size = 300;
  t.output_prefix = d.file("tok");
  mmb::train_tokenizer(t);
  auto tok = mmb::Tokenizer::load(d.file("tok.model"));
  std::string jsonl;
  for (size_t i = 0; i < caps.size(); ++i) {
    const std::string img = "img/" + std::to_string(i) + ".png";
    write_png_color(d.file(img), uint8_t(30 * i), uint8_t(200 - 20 * i), uint8_t(90 + 10 * i));
    jsonl += mmb::Json({{"image", img}, {"caption", caps[i]}}).dump() + "\n";
  }
  mmb::write_file_atomic(d.file("captions.jsonl"), jsonl);

  mmb::ClipConfig c = tiny_clip(tok.num_ids(), /*max_tokens=*/32);
  c.text.eos_token_id = tok.eos_id();
  c.text.num_hidden_layers = 1;
  {
    mmb::ClipModel clip(c);
    mmb::init_weights(*clip, 5);
    mmb::save_model_dir(d.file("init"), mmb::to_json(c), *clip);
    mmb::write_file_atomic(d.file("init/tokenizer.model"), mmb::read_file(d.file("tok.model")));
  }
  auto run = [&](const std::string& out) {
    mmb::ClipRunOptions o;
    o.model_dir = d.file("init");
    o.captions = d.file("captions.jsonl");
    o.image_root = d.path();
    o.out = out;
    o.batch_size = 4;
    o.steps = 4;
    o.checkpoint_every = 2;
    o.hard_negatives = 1;
    o.tag_loss = 2.0;
    o.tag_layer = -1;
    o.max_tokens = 32;
    mmb::run_clip(o, nullptr);
  };
  run(d.file("a"));
  // The saved model is a plain CLIP: load_clip rejects unexpected tensors, so no tag head is left.
  auto saved = mmb::load_safetensors(d.file("a/model/model.safetensors"));
  for (const auto& [name, _] : saved) EXPECT_EQ(name.find("mmb_tag_head"), std::string::npos) << name;
  EXPECT_NO_THROW(mmb::load_clip(d.file("a/model")));
  // Checkpoints carry the head, so a run killed after step 2 resumes exactly.
  auto ck = mmb::load_safetensors(d.file("a/checkpoints/step-2/model.safetensors"));
  EXPECT_TRUE(ck.count("mmb_tag_head.weight"));
  run(d.file("b"));
  // Kill after step 2: drop what came later, and change the starting weights, so that only a
  // resume from the step-2 checkpoint (weights, tag head, optimiser) can end where run a ended.
  {
    mmb::ClipModel other(c);
    mmb::init_weights(*other, 6);
    mmb::save_model_dir(d.file("init"), mmb::to_json(c), *other);
  }
  std::filesystem::remove_all(d.file("b/model"));
  std::filesystem::remove_all(d.file("b/checkpoints/step-4"));
  mmb::write_file_atomic(d.file("b/checkpoints/latest"), "step-2\n");
  run(d.file("b"));
  auto resumed = mmb::load_safetensors(d.file("b/model/model.safetensors"));
  ASSERT_EQ(resumed.size(), saved.size());
  for (const auto& [name, w] : saved) EXPECT_TRUE(torch::equal(w, resumed.at(name))) << name;

  mmb::ClipRunOptions bad;
  bad.model_dir = d.file("init");
  bad.captions = d.file("captions.jsonl");
  bad.image_root = d.path();
  bad.out = d.file("c");
  bad.tag_loss = 1.0;
  bad.tag_layer = 7;
  expect_throw_with([&] { mmb::run_clip(bad, nullptr); }, "tag layer 7 outside");
}
