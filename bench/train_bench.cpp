// Training-step benchmark: one SFT step (forward + backward + clip + AdamW) of the default-size
// LLaVA through mmb::Trainer, reported as samples/s and model FLOP/s.
//
// Model (the default recipe's sizes): CLIP vision 64 px, patch 8 (64 image tokens), hidden 128,
// 4 layers; projector 128 -> 256 -> 256; Llama hidden 256, 4 layers, 8 heads, 4 kv heads, MLP 688,
// vocabulary 1000. Batch 16 x 100 tokens: bos, 64 image slots, 35 text tokens; the loss covers the
// 35 text targets per row (prompt / image positions masked, as SFT).
//
// Run (thread policy: mmb's default for the machine's cores, or for MMB_BENCH_THREADS cores):
//   build/bench/train_bench --benchmark_min_time=5
//   MMB_BENCH_THREADS=1 build/bench/train_bench --benchmark_min_time=5   # one core (less noisy)
// It writes the model it trains to $MMB_TRAIN_BENCH_MODEL (default /tmp/mmb_train_bench_model),
// so the PyTorch side by side runs the same step on the same weights:
//   /usr/bin/python3 bench/train_ref.py /tmp/mmb_train_bench_model
// The DPO step (BM_DpoStep/0: reference log-probs from the cache; /1: the reference model run
// every step; mmb packs each pair's prompt once, [prompt | chosen | rejected]) has its side by
// side in TRL's concatenated form (2B rows, each image and prompt encoded for both):
//   /usr/bin/python3 bench/train_ref.py /tmp/mmb_train_bench_model --dpo cached|recompute
#include <benchmark/benchmark.h>

#include <cstdlib>

#include <torch/torch.h>

#include "mmb/checkpoint.h"
#include "mmb/model.h"
#include "mmb/model_config.h"
#include "mmb/recipe.h"
#include "mmb/sft.h"
#include "mmb/threads.h"
#include "mmb/train.h"
#include "dpo_internal.h"

namespace {

constexpr int64_t kBatch = 16, kSeq = 100, kVocab = 1000;

// mmb's thread policy for MMB_BENCH_THREADS cores (default: the idle ones); MMB_BENCH_TORCH_THREADS
// overrides libtorch's intra-op threads (e.g. 2 with OpenBLAS's OpenMP build, docs/performance.md).
void apply_bench_policy() {
  const char* threads = std::getenv("MMB_BENCH_THREADS");
  mmb::ThreadPolicy p = mmb::default_thread_policy(threads ? std::atoi(threads) : 0);
  if (const char* t = std::getenv("MMB_BENCH_TORCH_THREADS")) p.torch_intra_op = std::atoi(t);
  mmb::apply_thread_policy(p);
}

// One batch, step after step (the benches time the step, not data loading).
struct FixedBatch : mmb::BatchSource<int> {
  int next() override { return 0; }
  mmb::Json state() const override { return mmb::Json::object(); }
  void load_state(const mmb::Json&) override {}
};

// Options for a bench's Trainer: endless steps, no progress line, no checkpoint (out_dir unwritten).
mmb::TrainOptions bench_train_options(const std::string& out_dir) {
  mmb::TrainOptions o;
  o.total_steps = 1 << 30;
  o.out_dir = out_dir;
  o.progress = false;
  return o;
}

mmb::LlavaConfig bench_config() {
  mmb::LlavaConfig c;  // vision defaults: 64 px, patch 8, hidden 128, 4 layers, 4 heads, mlp 512
  c.text.vocab_size = kVocab;
  c.text.hidden_size = 256;
  c.text.intermediate_size = 688;
  c.text.num_hidden_layers = 4;
  c.text.num_attention_heads = 8;
  c.text.num_key_value_heads = 4;
  c.text.max_position_embeddings = 512;
  return c;
}

// Model FLOPs of one training step: 6 * (matmul parameters) * tokens for vision tower, projector
// and decoder, plus attention scores (QK^T and AV, x3 for backward). Embeddings excluded.
double step_flops(const mmb::LlavaConfig& c) {
  const double Cv = double(c.vision.hidden_size), Iv = double(c.vision.intermediate_size);
  const double Pv = double(c.vision.num_patches() + 1), Lv = double(c.vision.num_hidden_layers);
  const double C = double(c.text.hidden_size), I = double(c.text.intermediate_size);
  const double L = double(c.text.num_hidden_layers), D = double(c.text.head_dim());
  const double Hkv = double(c.text.num_key_value_heads);
  // The vision tower runs layers up to vision_feature_layer (-2: all but the last).
  const double Lv_used = Lv + 1 + double(c.vision_feature_layer);
  const double vision_params = Lv_used * (4 * Cv * Cv + 2 * Cv * Iv);
  const double proj_params = Cv * C + C * C;
  const double text_params = L * (2 * C * C + 2 * C * Hkv * D + 3 * C * I) + C * double(c.text.vocab_size);
  const double N = double(c.image_seq_length()), T = double(kSeq), B = double(kBatch);
  double flops = 6 * (vision_params * Pv + proj_params * N + text_params * T) * B;
  flops += 3 * 2 * 2 * B * (Lv_used * Pv * Pv * Cv + L * T * T * C);  // attention matmuls
  return flops;
}

// The model (written to disk for train_ref.py) and one fixed batch.
struct Setup {
  mmb::LlavaConfig cfg = bench_config();
  mmb::LlavaForConditionalGeneration model{cfg};
  int64_t n_img = 0, n_text = 0;
  torch::Tensor text, ids, pixels;

  Setup() {
    apply_bench_policy();
    mmb::init_weights(*model, 0);
    const char* dir_env = std::getenv("MMB_TRAIN_BENCH_MODEL");
    mmb::save_model_dir(dir_env ? dir_env : "/tmp/mmb_train_bench_model", mmb::to_json(cfg), *model);
    n_img = cfg.image_seq_length();  // 64
    n_text = kSeq - 1 - n_img;       // 35
    torch::manual_seed(1);
    text = torch::randint(5, kVocab, {kBatch, n_text}, torch::kLong);  // (B, 35)
    ids = torch::cat({torch::ones({kBatch, 1}, torch::kLong),
                      torch::full({kBatch, n_img}, cfg.image_token_index, torch::kLong), text},
                     1);  // (B, 100)
    pixels = torch::randn({kBatch, 3, cfg.vision.image_size, cfg.vision.image_size});
  }
  torch::Tensor loss() {
    mmb::VlmInput in;
    in.input_ids = ids;
    in.pixel_values = pixels;
    auto logits = model->forward(in);                                  // (B, T, V)
    auto pred = logits.narrow(1, n_img, n_text).reshape({-1, kVocab});  // positions 64..98 predict text
    return torch::nn::functional::cross_entropy(pred, text.reshape({-1}));
  }
};

// Forward + loss + backward only (no optimiser): separates model time from the loop's.
void BM_LlavaForwardBackward(benchmark::State& state) {
  Setup s;
  s.loss().backward();
  for (auto _ : state) {
    for (auto& p : s.model->parameters()) p.mutable_grad() = torch::Tensor();
    auto loss = s.loss();
    loss.backward();
    benchmark::DoNotOptimize(loss.item<double>());
  }
  state.counters["samples/s"] = benchmark::Counter(double(kBatch), benchmark::Counter::kIsIterationInvariantRate);
}

// Clip + AdamW alone on the model's parameters with fixed random gradients.
void BM_ClipAndAdamW(benchmark::State& state) {
  Setup s;
  torch::manual_seed(2);
  auto params = s.model->parameters();
  for (auto& p : params) p.mutable_grad() = torch::randn_like(p) * 1e-3;
  mmb::ParamGroupOptions po;
  po.lr = 1e-4;
  auto groups = mmb::make_param_groups(*s.model, po);
  auto adamw = mmb::make_adamw(groups, 0.9, 0.999, 1e-8);
  adamw->step();
  for (auto _ : state) {
    torch::nn::utils::clip_grad_norm_(params, 1.0);
    adamw->step();
  }
}

void BM_LlavaSftStep(benchmark::State& state) {
  Setup s;
  auto& cfg = s.cfg;
  auto& model = s.model;
  FixedBatch source;

  mmb::ParamGroupOptions po;
  po.lr = 1e-4;
  po.weight_decay = 0.0;
  mmb::TrainOptions o = bench_train_options("/tmp/mmb_train_bench_run");
  mmb::Trainer trainer(*model, mmb::make_param_groups(*model, po), o);
  trainer.set_data<int>(source, [&](int&) {
    mmb::LossOutput out;
    out.loss = s.loss();
    out.tokens = kBatch * s.n_text;
    out.samples = kBatch;
    return out;
  });
  const double first_loss = trainer.step().loss;  // warm-up (allocates AdamW state)
  for (auto _ : state) benchmark::DoNotOptimize(trainer.step().loss);
  state.counters["samples/s"] = benchmark::Counter(double(kBatch), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s"] = benchmark::Counter(step_flops(cfg) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["first_loss"] = first_loss;  // equals train_ref.py's first loss (same weights, data)
  state.SetLabel(mmb::describe_threads());
}

// ---- DPO step: 8 pairs of the SFT bench's shape (bos, 64 image slots, 35 response tokens); the
// chosen and rejected responses differ, the image is shared. Sigmoid loss, β = 0.1, clip, AdamW.
constexpr int64_t kPairs = 8;

void BM_DpoStep(benchmark::State& state) {
  const bool recompute = state.range(0) != 0;
  Setup s;  // writes the policy's weights; the reference is a frozen copy of them
  mmb::LlavaForConditionalGeneration ref{s.cfg};
  {
    torch::NoGradGuard no_grad;
    const auto policy = s.model->named_parameters();
    for (auto& item : ref->named_parameters()) item.value().copy_(policy[item.key()]);
  }
  ref->eval();
  torch::manual_seed(1);
  const int64_t n_img = s.n_img, n_text = s.n_text;
  auto chosen = torch::randint(5, kVocab, {kPairs, n_text}, torch::kLong);
  auto rejected = torch::randint(5, kVocab, {kPairs, n_text}, torch::kLong);
  auto pixels = torch::randn({kPairs, 3, s.cfg.vision.image_size, s.cfg.vision.image_size});
  std::vector<mmb::Side> sides(2 * kPairs);
  for (int64_t row = 0; row < 2 * kPairs; ++row) {
    mmb::Side& side = sides[size_t(row)];
    side.ids.push_back(1);
    for (int64_t i = 0; i < n_img; ++i) side.ids.push_back(int32_t(s.cfg.image_token_index));
    auto resp = row < kPairs ? chosen[row] : rejected[row - kPairs];
    for (int64_t i = 0; i < n_text; ++i) side.ids.push_back(int32_t(resp[i].item<int64_t>()));
    side.target.assign(side.ids.size(), 0);
    std::fill(side.target.begin() + 1 + n_img, side.target.end(), 1);
  }
  std::vector<const mmb::Side*> cs, rs;
  for (int64_t i = 0; i < kPairs; ++i) cs.push_back(&sides[size_t(i)]), rs.push_back(&sides[size_t(kPairs + i)]);
  const mmb::DpoBatch b = mmb::collate_pairs(cs, rs, pixels, 0);  // (8, 135): prompt once, both responses
  mmb::DpoLossOptions lo;
  lo.beta = 0.1;
  torch::Tensor cached;
  {
    torch::NoGradGuard no_grad;
    cached = mmb::sequence_logps(ref, b).first;
  }
  FixedBatch source;
  mmb::ParamGroupOptions po;
  po.lr = 1e-4;
  po.weight_decay = 0.0;
  mmb::Trainer trainer(*s.model, mmb::make_param_groups(*s.model, po), bench_train_options("/tmp/mmb_dpo_bench_run"));
  trainer.set_data<int>(source, [&](int&) {
    torch::Tensor ref_lp = cached;
    if (recompute) {
      torch::NoGradGuard no_grad;
      ref_lp = mmb::sequence_logps(ref, b).first;
    }
    auto [lp, n] = mmb::sequence_logps(s.model, b);
    mmb::LossOutput out;
    out.loss = mmb::dpo_loss(mmb::split_pair_logps(lp, n, ref_lp), lo).loss.mean();
    out.samples = kPairs;
    out.tokens = 2 * kPairs * n_text;
    return out;
  });
  const double first_loss = trainer.step().loss;
  for (auto _ : state) benchmark::DoNotOptimize(trainer.step().loss);
  state.counters["pairs/s"] = benchmark::Counter(double(kPairs), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["first_loss"] = first_loss;  // log 2 at equal weights; train_ref.py --dpo prints the same
  state.SetLabel(std::string(recompute ? "reference recomputed, " : "reference cached, ") + mmb::describe_threads());
}

// ---- CLIP step: the default recipe's CLIP (vision 64 px / 8, conv stem 32, 64, hidden 128,
// 4 layers; text hidden 128, 2 layers, vocabulary 600), batch 64 x 32 caption tokens, symmetric
// InfoNCE, clip, AdamW. Writes the model to $MMB_CLIP_BENCH_MODEL (default
// /tmp/mmb_clip_bench_model) for the side by side:
//   /usr/bin/python3 bench/clip_ref.py /tmp/mmb_clip_bench_model
constexpr int64_t kClipBatch = 64, kCaption = 32, kClipVocab = 600;

void BM_ClipStep(benchmark::State& state) {
  apply_bench_policy();
  mmb::ClipVisionConfig vision;
  vision.stem_channels = {32, 64};
  const mmb::ClipConfig c = mmb::base_clip_config(vision, kClipVocab, /*eos_id=*/2);
  mmb::ClipModel model(c);
  mmb::init_weights(*model, 0);
  const char* dir_env = std::getenv("MMB_CLIP_BENCH_MODEL");
  mmb::save_model_dir(dir_env ? dir_env : "/tmp/mmb_clip_bench_model", mmb::to_json(c), *model);
  torch::manual_seed(1);
  mmb::ClipBatch b;  // captions: bos, 30 words, eos (the same ids clip_ref.py draws)
  b.pixel_values = torch::randn({kClipBatch, 3, c.vision.image_size, c.vision.image_size});
  b.input_ids = torch::cat({torch::ones({kClipBatch, 1}, torch::kLong),
                            torch::randint(5, kClipVocab, {kClipBatch, kCaption - 2}, torch::kLong),
                            torch::full({kClipBatch, 1}, 2, torch::kLong)},
                           1);  // (B, 32)
  b.attention_mask = torch::ones_like(b.input_ids);
  FixedBatch source;
  mmb::ParamGroupOptions po;
  po.lr = 1e-4;
  mmb::TrainOptions o = bench_train_options("/tmp/mmb_clip_bench_run");
  o.weight_by_tokens = false;
  mmb::Trainer trainer(*model, mmb::make_param_groups(*model, po), o);
  trainer.set_data<int>(source, [&](int&) { return mmb::clip_loss(model, b); });
  const double first_loss = trainer.step().loss;
  for (auto _ : state) benchmark::DoNotOptimize(trainer.step().loss);
  state.counters["images/s"] = benchmark::Counter(double(kClipBatch), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["first_loss"] = first_loss;  // equals clip_ref.py's first loss (same weights, data)
  state.SetLabel(mmb::describe_threads());
}

}  // namespace

BENCHMARK(BM_LlavaForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ClipAndAdamW)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LlavaSftStep)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DpoStep)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ClipStep)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
