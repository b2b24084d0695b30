// The model against an independent PyTorch implementation (tests/reference/llava_ref.py) on the
// same safetensors weights, plus KV-cache equivalence, image-token masking, checkpoint round trip
// and malformed checkpoints.
#include "mmb/checkpoint.h"
#include "mmb/model.h"

#include <cstdio>
#include <filesystem>

#include "mmb/atomic_file.h"
#include "mmb/safetensors.h"
#include "test_util.h"

using mmb::testing::expect_throw_with;
using mmb::testing::TempDir;

namespace {

mmb::LlavaConfig tiny_llava(bool tied = false) {
  mmb::LlavaConfig c;
  c.vision.image_size = 32;
  c.vision.patch_size = 8;  // 16 patches -> 16 image tokens
  c.vision.hidden_size = 32;
  c.vision.intermediate_size = 64;
  c.vision.num_hidden_layers = 3;
  c.vision.num_attention_heads = 4;
  c.text.vocab_size = 50;
  c.text.hidden_size = 64;
  c.text.intermediate_size = 96;
  c.text.num_hidden_layers = 2;
  c.text.num_attention_heads = 4;
  c.text.num_key_value_heads = 2;  // grouped-query attention
  c.text.max_position_embeddings = 128;
  c.text.tie_word_embeddings = tied;
  c.image_token_index = 4;
  return c;
}

// Random weights large enough that a wrong formula shows (HF's 0.02 init makes logits tiny).
void randomize(torch::nn::Module& m, uint64_t seed) {
  torch::NoGradGuard ng;
  torch::manual_seed(seed);
  for (auto& p : m.named_parameters()) {
    auto t = p.value();
    if (p.key().find("norm") != std::string::npos || p.key().find("layrnorm") != std::string::npos) {
      if (p.key().find("bias") != std::string::npos) t.normal_(0, 0.1); else t.normal_(1.0, 0.1);
    } else if (p.key().find("logit_scale") == std::string::npos) {
      t.normal_(0, t.dim() >= 2 ? 1.0 / std::sqrt(double(t.size(-1))) : 0.2);
    }
  }
}

std::string run(const std::string& cmd) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = ::pclose(p);
  if (rc != 0) throw std::runtime_error("command failed: " + cmd + "\n" + out);
  return out;
}

const std::string kRef = std::string(MMB_PYTHON) + " " + MMB_SOURCE_DIR + "/tests/reference/llava_ref.py";

// Two rows: row 0 = [bos, 5, <image>x16, 6, 7, 8, 9, 13, 14], row 1 left-padded by 3 with another image.
struct Batch {
  torch::Tensor ids, mask, pixels;
};
Batch make_batch(const mmb::LlavaConfig& c) {
  const int64_t N = c.image_seq_length();
  std::vector<int64_t> r0 = {1, 5}, r1 = {3, 3, 3, 1, 7};
  for (int64_t i = 0; i < N; ++i) r0.push_back(c.image_token_index), r1.push_back(c.image_token_index);
  for (int64_t t : {6, 7, 8, 9, 13, 14}) r0.push_back(t);
  for (int64_t t : {10, 11, 12}) r1.push_back(t);
  auto ids = torch::stack({torch::tensor(r0), torch::tensor(r1)});
  auto mask = torch::ones_like(ids);
  mask.index_put_({1, torch::indexing::Slice(0, 3)}, 0);
  torch::manual_seed(11);
  auto pixels = torch::randn({2, 3, c.vision.image_size, c.vision.image_size});
  return {ids, mask, pixels};
}

double max_diff_real(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& mask) {
  auto m = mask.to(torch::kBool).unsqueeze(-1).expand_as(a);
  return (a - b).abs().masked_select(m).max().item<double>();
}

}  // namespace

// 0: untied embeddings; 1: tied; 2: untied, with mmb's convolutional vision stem.
class ModelGolden : public ::testing::TestWithParam<int> {};

TEST_P(ModelGolden, LogitsMatchPytorchReference) {
  TempDir d;
  auto cfg = tiny_llava(GetParam() == 1);
  if (GetParam() == 2) cfg.vision.stem_channels = {6, 10};  // 32px -> 3x3 conv -> stride 2 -> patch 4
  mmb::LlavaForConditionalGeneration model(cfg);
  randomize(*model, 1);
  mmb::save_model_dir(d.file("m"), mmb::to_json(cfg), *model);
  Batch b = make_batch(cfg);
  torch::NoGradGuard ng;
  auto logits = model->forward({b.ids, b.mask, b.pixels});
  mmb::save_safetensors(d.file("in.safetensors"),
                        {{"input_ids", b.ids}, {"attention_mask", b.mask}, {"pixel_values", b.pixels}});
  run(kRef + " llava " + d.file("m") + " " + d.file("in.safetensors") + " " + d.file("out.safetensors"));
  auto ref = mmb::load_safetensors(d.file("out.safetensors")).at("logits");
  ASSERT_EQ(ref.sizes(), logits.sizes());
  double diff = max_diff_real(logits, ref, b.mask);
  std::printf("llava golden (variant %d): logits max |mmb - pytorch| = %.3g (logit scale %.3g)\n", GetParam(),
              diff, ref.abs().max().item<double>());
  EXPECT_LE(diff, 1e-4);
}
INSTANTIATE_TEST_SUITE_P(TiedUntiedStem, ModelGolden, ::testing::Values(0, 1, 2));

TEST(Model, ImageTokenMaskMatchesReferenceAndRemovesTheImage) {
  TempDir d;
  auto cfg = tiny_llava();
  mmb::LlavaForConditionalGeneration model(cfg);
  randomize(*model, 2);
  mmb::save_model_dir(d.file("m"), mmb::to_json(cfg), *model);
  Batch b = make_batch(cfg);
  // Hide every image token but one per row as keys (BDHS keeps ~1% of image tokens).
  auto keep = (b.ids != cfg.image_token_index);
  auto first_img = (b.ids == cfg.image_token_index).to(torch::kInt).argmax(1);
  for (int64_t r = 0; r < 2; ++r) keep.index_put_({r, first_img[r].item<int64_t>()}, true);
  torch::NoGradGuard ng;
  auto logits = model->forward({b.ids, b.mask, b.pixels, {}, keep});
  mmb::save_safetensors(d.file("in.safetensors"), {{"input_ids", b.ids}, {"attention_mask", b.mask},
                                                   {"pixel_values", b.pixels}, {"key_keep", keep}});
  run(kRef + " llava " + d.file("m") + " " + d.file("in.safetensors") + " " + d.file("out.safetensors"));
  auto ref = mmb::load_safetensors(d.file("out.safetensors")).at("logits");
  double diff = max_diff_real(logits, ref, b.mask);
  std::printf("llava golden with image-token mask: max diff %.3g\n", diff);
  EXPECT_LE(diff, 1e-4);
  // With all image tokens hidden, text after the image cannot depend on the pixels.
  auto none = (b.ids != cfg.image_token_index);
  auto a1 = model->forward({b.ids, b.mask, b.pixels, {}, none});
  auto a2 = model->forward({b.ids, b.mask, torch::randn_like(b.pixels), {}, none});
  auto after = torch::zeros_like(b.mask);
  after.index_put_({0, torch::indexing::Slice(-6, torch::indexing::None)}, 1);
  after.index_put_({1, torch::indexing::Slice(-3, torch::indexing::None)}, 1);
  EXPECT_LE(max_diff_real(a1, a2, after), 1e-6);
  auto full = model->forward({b.ids, b.mask, torch::randn_like(b.pixels)});
  EXPECT_GT(max_diff_real(a1, full, after), 1e-3) << "without the mask the pixels must matter";
}

// Packed rows [prompt | a | b | pad]: a and b each see the prompt and themselves, at positions
// continuing the prompt's. The logits match the reference given the same positions and mask, and
// each segment's logits equal a separate forward of prompt + segment.
TEST(Model, PackedRowsMatchReferenceAndSeparateForwards) {
  TempDir d;
  auto cfg = tiny_llava();
  mmb::LlavaForConditionalGeneration model(cfg);
  randomize(*model, 4);
  mmb::save_model_dir(d.file("m"), mmb::to_json(cfg), *model);
  const int64_t N = cfg.image_seq_length();
  std::vector<int64_t> prompt = {1, 5};
  for (int64_t i = 0; i < N; ++i) prompt.push_back(cfg.image_token_index);
  prompt.push_back(6);
  const std::vector<std::vector<int64_t>> seg_a = {{8, 9, 13}, {10}}, seg_b = {{14, 10}, {11, 12, 7, 9}};
  const int64_t P = int64_t(prompt.size()), T = P + 5;  // row 0 fills T, row 1 has one pad
  auto ids = torch::zeros({2, T}, torch::kLong), mask = torch::zeros({2, T}, torch::kLong);
  auto pos = torch::zeros({2, T}, torch::kLong), seg = torch::zeros({2, T}, torch::kLong);
  for (int64_t r = 0; r < 2; ++r) {
    int64_t t = 0;
    auto put = [&](int64_t id, int64_t p, int64_t s) {
      ids[r][t] = id, mask[r][t] = 1, pos[r][t] = p, seg[r][t] = s;
      ++t;
    };
    for (int64_t i = 0; i < P; ++i) put(prompt[size_t(i)], i, 0);
    for (size_t i = 0; i < seg_a[size_t(r)].size(); ++i) put(seg_a[size_t(r)][i], P + int64_t(i), 1);
    for (size_t i = 0; i < seg_b[size_t(r)].size(); ++i) put(seg_b[size_t(r)][i], P + int64_t(i), 2);
  }
  auto attend = mmb::packed_attention(seg);
  torch::manual_seed(12);
  auto pixels = torch::randn({2, 3, cfg.vision.image_size, cfg.vision.image_size});
  torch::NoGradGuard ng;
  mmb::VlmInput in{ids, mask, pixels};
  in.position_ids = pos;
  in.attend = attend;
  auto logits = model->forward(in);  // (2, T, V)
  mmb::save_safetensors(d.file("in.safetensors"), {{"input_ids", ids},
                                                   {"attention_mask", mask},
                                                   {"pixel_values", pixels},
                                                   {"position_ids", pos},
                                                   {"attend", attend}});
  run(kRef + " llava " + d.file("m") + " " + d.file("in.safetensors") + " " + d.file("out.safetensors"));
  auto ref = mmb::load_safetensors(d.file("out.safetensors")).at("logits");
  const double golden = max_diff_real(logits, ref, mask);
  std::printf("packed rows golden: max diff %.3g\n", golden);
  EXPECT_LE(golden, 1e-4);
  // Each segment against its own forward of prompt + segment.
  double diff = 0.0;
  for (int64_t r = 0; r < 2; ++r) {
    int64_t start = P;
    for (const auto* segs : {&seg_a, &seg_b}) {
      const auto& s = (*segs)[size_t(r)];
      std::vector<int64_t> row = prompt;
      row.insert(row.end(), s.begin(), s.end());
      auto alone = model->forward({torch::tensor(row).view({1, -1}), {}, pixels.narrow(0, r, 1)});  // (1, P+L, V)
      const int64_t L = int64_t(s.size());
      diff = std::max(diff, (logits[r].narrow(0, start, L) - alone[0].narrow(0, P, L)).abs().max().item<double>());
      diff = std::max(diff, (logits[r].narrow(0, 0, P) - alone[0].narrow(0, 0, P)).abs().max().item<double>());
      start += L;
    }
  }
  std::printf("packed rows vs separate forwards: max diff %.3g\n", diff);
  EXPECT_LE(diff, 1e-5);
  // Both or neither, and the shapes are checked.
  mmb::VlmInput half{ids, mask, pixels};
  half.position_ids = pos;
  EXPECT_THROW(model->forward(half), mmb::Error);
  in.attend = attend.narrow(2, 0, T - 1);
  EXPECT_THROW(model->forward(in), mmb::Error);
}

TEST(Model, CachedDecodingMatchesFullForward) {
  auto cfg = tiny_llava();
  mmb::LlavaForConditionalGeneration model(cfg);
  randomize(*model, 3);
  Batch b = make_batch(cfg);
  torch::NoGradGuard ng;
  auto full = model->forward({b.ids, b.mask, b.pixels});  // (B, T, V)
  const int64_t T = b.ids.size(1), prompt = T - 3;
  auto cache = model->new_cache(2, 8);  // deliberately small: must grow
  auto feats = model->image_features(b.pixels);
  auto first = model->forward({b.ids.narrow(1, 0, prompt), b.mask.narrow(1, 0, prompt), {}, feats}, &cache);
  double diff = max_diff_real(first, full.narrow(1, 0, prompt), b.mask.narrow(1, 0, prompt));
  for (int64_t t = prompt; t < T; ++t) {
    auto step = model->forward({b.ids.narrow(1, t, 1), b.mask.narrow(1, t, 1)}, &cache);
    diff = std::max(diff, (step - full.narrow(1, t, 1)).abs().max().item<double>());
  }
  std::printf("cached vs uncached decoding: max diff %.3g\n", diff);
  EXPECT_LE(diff, 1e-5);
  EXPECT_EQ(cache.length, T);
  // Truncate back to the prompt and continue again: same logits (continuation from a prefix).
  cache.truncate(prompt);
  auto again = model->forward({b.ids.narrow(1, prompt, 3), b.mask.narrow(1, prompt, 3)}, &cache);
  EXPECT_LE((again - full.narrow(1, prompt, 3)).abs().max().item<double>(), 1e-5);
  // Forking rows of the cache (beam reordering) keeps each row's state.
  cache.truncate(prompt);
  auto forked = cache.select(torch::tensor({1, 1, 0}));
  auto f = model->forward({b.ids.narrow(1, prompt, 1).index_select(0, torch::tensor({1, 1, 0})),
                           b.mask.narrow(1, prompt, 1).index_select(0, torch::tensor({1, 1, 0}))},
                          &forked);
  auto expect = full.narrow(1, prompt, 1).index_select(0, torch::tensor({1, 1, 0}));
  EXPECT_LE((f - expect).abs().max().item<double>(), 1e-5);
}

// The decoding fast path (LlamaModel::decode_step: loops and BLAS calls) against the libtorch
// forward it replaces, on the same cache: padding and hidden keys, a row with no visible key, rows
// enough to split over the pool, a full cache that must grow, grouped-query attention.
TEST(Model, FastDecodeStepEqualsTheLibtorchStep) {
  auto cfg = tiny_llava();
  mmb::LlamaModel lm(cfg.text);
  randomize(*lm, 5);
  const int64_t B = 9, T = 6, C = cfg.text.hidden_size;
  torch::manual_seed(3);
  auto embeds = torch::randn({B, T, C});
  auto keep = torch::rand({B, T}) > 0.3;        // hidden keys in every row
  keep.select(0, 4).fill_(false);               // row 4: nothing to attend before the new token
  auto positions = torch::arange(T).view({1, T}).expand({B, T}).contiguous();
  mmb::KvCache slow, fast;
  {
    torch::NoGradGuard ng;
    slow = lm->new_cache(B, T);  // full after the prompt: the step must grow it
    lm->forward(embeds, positions, keep, &slow);
    fast = slow.clone();
  }
  auto ids = torch::randint(0, cfg.text.vocab_size, {B, 1});
  auto new_keep = torch::ones({B, 1}, torch::kBool);
  new_keep[2][0] = false;                       // a new token hidden from later queries
  new_keep[4][0] = false;                       // and row 4 sees no key at all
  auto step_pos = torch::full({B, 1}, T, torch::kLong);
  // Autograd on: decode_step declines and forward runs the libtorch ops.
  ASSERT_FALSE(lm->decode_step(ids, step_pos, new_keep, slow).defined());
  torch::Tensor want;
  {
    torch::AutoGradMode grad(true);
    want = lm->forward(lm->embed_tokens()(ids), step_pos, new_keep, &slow).detach();
  }
  torch::NoGradGuard ng;
  auto got = lm->decode_step(ids, step_pos, new_keep, fast);
  ASSERT_TRUE(got.defined());
  ASSERT_EQ(got.sizes(), want.sizes());
  const double diff = (got - want).abs().max().item<double>();
  double kv = 0;
  for (size_t l = 0; l < slow.k.size(); ++l) {
    kv = std::max(kv, (slow.k[l].narrow(2, 0, T + 1) - fast.k[l].narrow(2, 0, T + 1)).abs().max().item<double>());
    kv = std::max(kv, (slow.v[l].narrow(2, 0, T + 1) - fast.v[l].narrow(2, 0, T + 1)).abs().max().item<double>());
  }
  std::printf("fast decoding step vs libtorch step: hidden max diff %.3g, cache max diff %.3g\n", diff, kv);
  EXPECT_LE(diff, 1e-5);
  EXPECT_LE(kv, 1e-5);
  EXPECT_EQ(fast.length, T + 1);
  EXPECT_GT(fast.capacity(), T);
  EXPECT_TRUE(fast.key_keep.narrow(1, 0, T + 1).equal(slow.key_keep.narrow(1, 0, T + 1)));
  // Bad ids are an error, not a read outside the embedding table; nothing is appended.
  expect_throw_with([&] { lm->decode_step(torch::full({B, 1}, cfg.text.vocab_size), step_pos, {}, fast); },
                         "outside the vocabulary");
  EXPECT_EQ(fast.length, T + 1);
}

TEST(Model, ClipMatchesPytorchReference) {
  TempDir d;
  mmb::ClipConfig c;
  c.vision.image_size = 32;
  c.vision.patch_size = 8;
  c.vision.hidden_size = 32;
  c.vision.intermediate_size = 64;
  c.vision.num_hidden_layers = 2;
  c.vision.num_attention_heads = 4;
  c.text.vocab_size = 40;
  c.text.hidden_size = 48;
  c.text.intermediate_size = 96;
  c.text.num_hidden_layers = 2;
  c.text.num_attention_heads = 4;
  c.text.max_position_embeddings = 16;
  c.text.pooling = "first_eos";
  c.projection_dim = 24;
  mmb::ClipModel clip(c);
  randomize(*clip, 4);
  mmb::save_model_dir(d.file("clip"), mmb::to_json(c), *clip);
  auto ids =
      torch::stack({torch::tensor({1, 7, 8, 9, 2, 3, 3}), torch::tensor({1, 12, 2, 3, 3, 3, 3})}).to(torch::kLong);
  auto mask = (ids != 3).to(torch::kLong);
  torch::manual_seed(5);
  auto pixels = torch::randn({3, 3, 32, 32});
  torch::NoGradGuard ng;
  auto img = clip->image_embeds(pixels);
  auto txt = clip->text_embeds(ids, mask);
  auto lpi = clip->logits_per_image(img, txt);
  auto mean_txt = clip->text_mean_embeds(ids, mask);  // sentence similarity's embedding
  mmb::save_safetensors(d.file("in.safetensors"),
                        {{"input_ids", ids}, {"attention_mask", mask}, {"pixel_values", pixels}});
  run(kRef + " clip " + d.file("clip") + " " + d.file("in.safetensors") + " " + d.file("out.safetensors"));
  auto ref = mmb::load_safetensors(d.file("out.safetensors"));
  double diff = std::max({(img - ref.at("image_embeds")).abs().max().item<double>(),
                          (txt - ref.at("text_embeds")).abs().max().item<double>(),
                          (lpi - ref.at("logits_per_image")).abs().max().item<double>() / 100.0,
                          (mean_txt - ref.at("text_mean_embeds")).abs().max().item<double>()});
  std::printf("clip golden: max diff %.3g\n", diff);
  EXPECT_LE(diff, 1e-5);
  auto score = mmb::clip_score(img.narrow(0, 0, 2), txt);
  EXPECT_TRUE((score >= 0).all().item<bool>());
  EXPECT_NEAR(score[0].item<double>(), std::max(0.0, 100.0 * (img[0] * txt[0]).sum().item<double>()), 1e-4);
}

TEST(Checkpoint, SaveLoadRoundTripIsExact) {
  TempDir d;
  auto cfg = tiny_llava();
  mmb::LlavaForConditionalGeneration model(cfg);
  mmb::init_weights(*model, 9);
  mmb::save_model_dir(d.file("m"), mmb::to_json(cfg), *model);
  auto back = mmb::load_llava(d.file("m"));
  auto a = model->named_parameters(), b = back->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& p : a) EXPECT_TRUE(torch::equal(p.value(), b[p.key()])) << p.key();
  std::string info = mmb::inspect_model_dir(d.file("m"));
  EXPECT_NE(info.find("model_type: llava"), std::string::npos) << info;
  EXPECT_NE(info.find("16 image tokens"), std::string::npos) << info;
}

TEST(Checkpoint, MalformedCheckpointsNameTheProblem) {
  TempDir d;
  auto cfg = tiny_llava();
  mmb::LlavaForConditionalGeneration model(cfg);
  mmb::save_model_dir(d.file("m"), mmb::to_json(cfg), *model);
  auto tensors = mmb::load_safetensors(d.file("m/model.safetensors"));
  // missing tensor + wrong shape + unexpected tensor, all reported in one error
  std::vector<std::pair<std::string, torch::Tensor>> edited;
  for (auto& [k, v] : tensors) {
    if (k == "multi_modal_projector.linear_1.bias") continue;
    if (k == "language_model.model.norm.weight") edited.emplace_back(k, torch::ones({7}));
    else edited.emplace_back(k, v.clone());
  }
  edited.emplace_back("extra.weight", torch::zeros({2}));
  mmb::make_dirs(d.file("bad"));
  mmb::write_file_atomic(d.file("bad/config.json"), mmb::read_file(d.file("m/config.json")));
  mmb::save_safetensors(d.file("bad/model.safetensors"), edited);
  try {
    mmb::load_llava(d.file("bad"));
    FAIL() << "expected an error";
  } catch (const mmb::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("missing tensors (1):\n    multi_modal_projector.linear_1.bias"), std::string::npos) << msg;
    EXPECT_NE(msg.find("language_model.model.norm.weight (file [7], model [64])"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected tensors (1):\n    extra.weight"), std::string::npos) << msg;
  }
  // corrupt safetensors
  std::string bytes = mmb::read_file(d.file("m/model.safetensors"));
  mmb::write_file_atomic(d.file("bad/model.safetensors"), bytes.substr(0, bytes.size() - 10));
  expect_throw_with([&] { mmb::load_llava(d.file("bad")); }, "model.safetensors");
  // config with an unknown key, a missing key, a bad value
  mmb::write_file_atomic(d.file("bad/model.safetensors"), bytes);
  auto j = mmb::read_json_file(d.file("m/config.json"));
  auto unknown = j;
  unknown["text_config"]["frobnicate"] = 1;
  mmb::write_json_file(d.file("bad/config.json"), unknown);
  expect_throw_with([&] { mmb::load_llava(d.file("bad")); }, "unknown key(s) 'frobnicate'");
  EXPECT_NO_THROW(mmb::load_llava(d.file("bad"), torch::kCPU, /*strict_config=*/false));
  auto missing = j;
  missing["vision_config"].erase("patch_size");
  mmb::write_json_file(d.file("bad/config.json"), missing);
  expect_throw_with([&] { mmb::load_llava(d.file("bad")); }, "missing key 'patch_size'");
  auto bad_heads = j;
  bad_heads["text_config"]["num_key_value_heads"] = 3;
  mmb::write_json_file(d.file("bad/config.json"), bad_heads);
  expect_throw_with([&] { mmb::load_llava(d.file("bad")); }, "multiple of num_key_value_heads 3");
  auto bad_init = j;
  bad_init["text_config"]["initializer_range"] = 0.0;
  mmb::write_json_file(d.file("bad/config.json"), bad_init);
  expect_throw_with([&] { mmb::load_llava(d.file("bad")); }, "initializer_range 0 must be positive");
  auto bad_stem = j;
  bad_stem["vision_config"]["mmb_stem_channels"] = {4, 0};
  mmb::write_json_file(d.file("bad/config.json"), bad_stem);
  expect_throw_with([&] { mmb::load_llava(d.file("bad")); }, "mmb_stem_channels must be positive");
  bad_stem["vision_config"]["mmb_stem_channels"] = {4, 4, 4, 4, 4};
  mmb::write_json_file(d.file("bad/config.json"), bad_stem);
  expect_throw_with([&] { mmb::load_llava(d.file("bad")); }, "must be a multiple of 16");
  bad_stem["vision_config"]["mmb_stem_channels"] = {4, 4};  // a stem the weights lack
  mmb::write_json_file(d.file("bad/config.json"), bad_stem);
  expect_throw_with([&] { mmb::load_llava(d.file("bad")); }, "embeddings.stem.0.weight");
  expect_throw_with([&] { mmb::load_llava(d.file("nowhere")); }, "config.json");
}

// init_weights follows Hugging Face: CLIP towers by CLIPPreTrainedModel's rule (width and depth),
// Llama and the projector at initializer_range 0.02, norms 1, biases 0.
TEST(Model, InitWeightsFollowsHuggingFace) {
  auto cfg = tiny_llava();           // vision: 32 wide, 3 layers, MLP 64
  cfg.vision.hidden_size = 64;       // enough entries for a 10 % check of the spread
  cfg.vision.intermediate_size = 128;
  cfg.vision.stem_channels = {8, 16};
  mmb::LlavaForConditionalGeneration model(cfg);
  mmb::init_weights(*model, 5);
  auto params = model->named_parameters();
  auto std_of = [&](const std::string& n) { return params[n].std().item<double>(); };
  const std::string v = "vision_tower.vision_model.";
  const double C = 64, L = 3;
  struct Want { std::string name; double std; double tol = 0.1; };
  for (const Want& w : std::vector<Want>{
           {v + "encoder.layers.1.self_attn.q_proj.weight", 1 / std::sqrt(C) / std::sqrt(2 * L)},
           {v + "encoder.layers.2.self_attn.v_proj.weight", 1 / std::sqrt(C) / std::sqrt(2 * L)},
           {v + "encoder.layers.0.self_attn.out_proj.weight", 1 / std::sqrt(C)},
           {v + "encoder.layers.0.mlp.fc1.weight", 1 / std::sqrt(2 * C)},
           {v + "encoder.layers.0.mlp.fc2.weight", 1 / std::sqrt(C) / std::sqrt(2 * L)},
           {v + "embeddings.class_embedding", 1 / std::sqrt(C), 0.3},  // 64 entries only
           {v + "embeddings.patch_embedding.weight", 0.02},
           {v + "embeddings.position_embedding.weight", 0.02},
           {v + "embeddings.stem.1.weight", 1 / std::sqrt(8.0 * 9) / std::sqrt(3.0)},  // U(±1/sqrt(fan_in))
           {"multi_modal_projector.linear_1.weight", 0.02},
           {"language_model.model.layers.0.self_attn.q_proj.weight", 0.02},
           {"language_model.model.embed_tokens.weight", 0.02}})
    EXPECT_NEAR(std_of(w.name), w.std, w.tol * w.std) << w.name;
  EXPECT_EQ(params[v + "encoder.layers.0.self_attn.q_proj.bias"].abs().max().item<double>(), 0.0);
  EXPECT_EQ(params[v + "pre_layrnorm.weight"].min().item<double>(), 1.0);
  EXPECT_EQ(params["language_model.model.norm.weight"].min().item<double>(), 1.0);

  // initializer_range scales the normal init (decoder, embeddings, projector), not the CLIP rule
  cfg.text.initializer_range = 0.05;
  auto back = mmb::llava_config_from_json(mmb::to_json(cfg), "config.json", true);
  EXPECT_EQ(back.text.initializer_range, 0.05);
  mmb::init_weights(*model, 5, back.text.initializer_range);
  for (const std::string& n : {std::string("language_model.model.layers.0.self_attn.q_proj.weight"),
                               std::string("language_model.model.embed_tokens.weight"),
                               std::string("multi_modal_projector.linear_1.weight")})
    EXPECT_NEAR(std_of(n), 0.05, 0.005) << n;
  EXPECT_NEAR(std_of(v + "encoder.layers.0.mlp.fc1.weight"), 1 / std::sqrt(2 * C), 0.1 / std::sqrt(2 * C));
}

TEST(Model, WrongImageSlotCountIsAnError) {
  auto cfg = tiny_llava();
  mmb::LlavaForConditionalGeneration model(cfg);
  auto ids = torch::tensor({1, 4, 4, 5}, torch::kLong).unsqueeze(0);
  expect_throw_with([&] { model->forward({ids, {}, torch::zeros({1, 3, 32, 32})}); }, "has 2 image-token slots");
}

TEST(Checkpoint, ShardedIndexLoadsItsShardsAndRefusesPathsOutsideTheDirectory) {
  mmb::testing::TempDir d;
  torch::nn::Linear lin(3, 2);
  const std::string dir = d.file("m");
  std::filesystem::create_directories(dir);
  torch::manual_seed(5);
  auto w = torch::randn({2, 3}), b = torch::randn({2});
  mmb::save_safetensors(dir + "/a.safetensors", {{"weight", w}});
  mmb::save_safetensors(dir + "/b.safetensors", {{"bias", b}});
  mmb::write_file_atomic(dir + "/model.safetensors.index.json",
                         R"({"weight_map": {"weight": "a.safetensors", "bias": "b.safetensors"}})");
  mmb::load_weights(*lin, dir);
  EXPECT_TRUE(torch::equal(lin->weight, w));
  EXPECT_TRUE(torch::equal(lin->bias, b));
  // A shard outside the directory (or in a subfolder) is refused, naming it, before any read.
  mmb::save_safetensors(d.file("outside.safetensors"), {{"bias", b}});
  for (const char* shard : {"../outside.safetensors", "/etc/passwd", "sub/b.safetensors", ".."}) {
    mmb::write_file_atomic(dir + "/model.safetensors.index.json",
                           std::string(R"({"weight_map": {"weight": "a.safetensors", "bias": ")") + shard + "\"}}");
    mmb::testing::expect_throw_with([&] { mmb::load_weights(*lin, dir); },
                                    std::string("shard '") + shard + "' of 'bias' is not a file name");
  }
}
