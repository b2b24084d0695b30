// SFT and CLIP training: overfit one batch, loss masking, bad data named by file and sample.
#include "mmb/sft.h"

#include "mmb/atomic_file.h"
#include "mmb/image.h"
#include "mmb/json.h"
#include "test_util.h"

using mmb::testing::expect_throw_with;
using mmb::testing::TempDir;

namespace {

mmb::LlavaConfig tiny_vlm(int64_t vocab) {
  mmb::LlavaConfig c;
  c.vision.image_size = 16;
  c.vision.patch_size = 8;
  c.vision.hidden_size = 32;
  c.vision.intermediate_size = 64;
  c.vision.num_hidden_layers = 2;
  c.vision.num_attention_heads = 2;
  c.text.vocab_size = vocab;
  c.text.hidden_size = 64;
  c.text.intermediate_size = 128;
  c.text.num_hidden_layers = 2;
  c.text.num_attention_heads = 4;
  c.text.num_key_value_heads = 2;
  c.text.max_position_embeddings = 128;
  c.image_token_index = 4;
  c.text.pad_token_id = 3;
  return c;
}

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

void write_png_color(const std::string& path, uint8_t r, uint8_t g, uint8_t b) {
  mmb::Image img(16, 16, 3);
  for (size_t i = 0; i < img.pixels.size(); i += 3) img.pixels[i] = r, img.pixels[i + 1] = g, img.pixels[i + 2] = b;
  mmb::write_png(path, img);
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
  mmb::ClipConfig c;
  c.vision.image_size = 16;
  c.vision.patch_size = 8;
  c.vision.hidden_size = 32;
  c.vision.intermediate_size = 64;
  c.vision.num_hidden_layers = 2;
  c.vision.num_attention_heads = 2;
  c.text.vocab_size = 30;
  c.text.hidden_size = 32;
  c.text.intermediate_size = 64;
  c.text.num_hidden_layers = 2;
  c.text.num_attention_heads = 2;
  c.text.max_position_embeddings = 8;
  c.text.pooling = "first_eos";
  c.projection_dim = 16;
  mmb::ClipModel clip(c);
  mmb::init_weights(*clip, 3);
  torch::manual_seed(1);
  mmb::ClipBatch b{torch::randn({6, 3, 16, 16}), torch::randint(5, 30, {6, 5}, torch::kLong), torch::ones({6, 5}, torch::kLong)};
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
}

TEST(Data, BadConversationsAreNamedByFileAndSample) {
  TempDir d;
  mmb::write_file_atomic(d.file("a.json"), R"([{"id":"ok","image":"x.png","conversations":[{"from":"human","value":"<image>\nQ"},{"from":"gpt","value":"A"}]},
{"id":"bad","conversations":[{"from":"human","value":"Q"}]}])");
  expect_throw_with([&] { mmb::read_conversations(d.file("a.json")); }, "a.json#1: odd number of turns");
  mmb::write_file_atomic(d.file("b.jsonl"), "{\"id\":\"ok\",\"conversations\":[{\"from\":\"human\",\"value\":\"Q\"},{\"from\":\"gpt\",\"value\":\"A\"}]}\n"
                                            "{\"id\":\"x\",\"conversations\":[{\"from\":\"gpt\",\"value\":\"Q\"},{\"from\":\"human\",\"value\":\"A\"}]}\n");
  expect_throw_with([&] { mmb::read_conversations(d.file("b.jsonl")); }, "b.jsonl:2: turns 0/1 are 'gpt'/'human'");
  mmb::write_file_atomic(d.file("c.jsonl"), "{\"id\":\"e\",\"conversations\":[{\"from\":\"human\",\"value\":\"Q\"},{\"from\":\"gpt\",\"value\":\"\"}]}\n");
  expect_throw_with([&] { mmb::read_conversations(d.file("c.jsonl")); }, "c.jsonl:1: empty answer");
}

TEST(Data, MissingImageAndOverlongSamples) {
  TempDir d;
  // a tokenizer is needed: train a tiny one
  mmb::TokenizerTrainOptions t;
  for (int i = 0; i < 200; ++i) t.lines.push_back("What colour is the star? The star is yellow and the moon is white.");
  t.vocab_size = 300;
  t.output_prefix = d.file("tok");
  mmb::train_tokenizer(t);
  auto tok = mmb::Tokenizer::load(d.file("tok.model"));
  auto cfg = tiny_vlm(tok.num_ids());
  cfg.image_token_index = tok.image_id();
  write_png_color(d.file("img/a.png"), 200, 10, 10);
  mmb::write_file_atomic(d.file("data.jsonl"),
                         "{\"id\":\"s0\",\"image\":\"img/a.png\",\"conversations\":[{\"from\":\"human\",\"value\":\"<image>\\nWhat colour is the star?\"},{\"from\":\"gpt\",\"value\":\"Yellow.\"}]}\n"
                         "{\"id\":\"s1\",\"image\":\"img/missing.png\",\"conversations\":[{\"from\":\"human\",\"value\":\"<image>\\nQ?\"},{\"from\":\"gpt\",\"value\":\"A.\"}]}\n");
  auto samples = mmb::read_conversations(d.file("data.jsonl"));
  mmb::SftDataOptions o;
  expect_throw_with([&] { mmb::SftDataset(samples, d.path(), tok, mmb::ChatTemplate::vicuna_v1(), cfg, o); },
                    "data.jsonl:2 (s1)");
  samples.pop_back();
  auto long_turns = samples.front();
  for (int i = 0; i < 20; ++i) long_turns.turns.push_back({"What colour is the star?", "The star is yellow and the moon is white."});
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
