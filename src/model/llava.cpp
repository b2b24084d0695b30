// The VLM, as Hugging Face's LlavaForConditionalGeneration (Liu et al. 2023, LLaVA-1.5):
//   pixels -> CLIP vision tower, hidden state `vision_feature_layer` (-2), CLS dropped
//          -> multi_modal_projector: linear_1 -> GELU -> linear_2
//          -> written into the <image> token slots of the text embeddings
//          -> Llama decoder: RMSNorm, rotary positions (rotate-half), SwiGLU MLP,
//             grouped-query attention, causal, with a KV cache -> lm_head.
// Shapes follow the legend in include/mmb/model.h.
#include <cmath>
#include <map>
#include <optional>

#include "clip_layer.h"
#include "llama_step.h"
#include "mmb/error.h"
#include "mmb/model.h"
#include "mmb/strings.h"

namespace mmb {
namespace {

constexpr double kMaskValue = -1e9;  // additive mask; exp underflows to exactly 0 in fp32

// y = weight * x / sqrt(mean(x^2) + eps), computed in fp32.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  const bool fp32 = x.scalar_type() == torch::kFloat32;
  auto xf = fp32 ? x : x.to(torch::kFloat32);
  auto y = xf * (xf.pow(2).mean(-1, true) + eps).rsqrt();
  return weight * (fp32 ? y : y.to(x.scalar_type()));
}

// Rotary positions, HF's x * cos + rotate_half(x) * sin with rotate_half(x) = (-x2, x1), written
// as x * cos + (x2, x1) * sin_signed where sin_signed = (-sin1, sin2) is precomputed: the same
// numbers (negation is exact) in two fewer ops. x (B, T, heads, D); cos, sin_signed (B, T, 1, D).
// A cache built by prefill / extend holds inference tensors (c10::InferenceMode, see generate.h),
// which may be written only in inference mode: callers appending to one from outside enter it
// (autograd must be off: nothing can backpropagate into such a cache).
bool needs_inference_mode(const KvCache* cache, const char* who) {
  if (!cache || !cache->real.defined() || !cache->real.is_inference() || c10::InferenceMode::is_enabled())
    return false;
  if (torch::GradMode::is_enabled())
    fail(who, ": the cache was built in inference mode (prefill / extend) and cannot take part in autograd; "
         "use torch::NoGradGuard");
  return true;
}

torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin_signed) {
  return x * cos + x.roll(x.size(-1) / 2, -1) * sin_signed;
}

}  // namespace

// ---------------------------------------------------------------- decoder layer
class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  explicit LlamaDecoderLayerImpl(const LlamaConfig& c) : cfg_(c) {
    const int64_t C = c.hidden_size, D = c.head_dim();
    auto attn = register_module("self_attn", std::make_shared<torch::nn::Module>());
    auto lin = [](int64_t in, int64_t out) { return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false)); };
    q_proj_ = attn->register_module("q_proj", lin(C, c.num_attention_heads * D));
    k_proj_ = attn->register_module("k_proj", lin(C, c.num_key_value_heads * D));
    v_proj_ = attn->register_module("v_proj", lin(C, c.num_key_value_heads * D));
    o_proj_ = attn->register_module("o_proj", lin(c.num_attention_heads * D, C));
    auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>());
    gate_proj_ = mlp->register_module("gate_proj", lin(C, c.intermediate_size));
    up_proj_ = mlp->register_module("up_proj", lin(C, c.intermediate_size));
    down_proj_ = mlp->register_module("down_proj", lin(c.intermediate_size, C));
    auto ln1 = register_module("input_layernorm", std::make_shared<torch::nn::Module>());
    input_norm_ = ln1->register_parameter("weight", torch::ones({C}));
    auto ln2 = register_module("post_attention_layernorm", std::make_shared<torch::nn::Module>());
    post_norm_ = ln2->register_parameter("weight", torch::ones({C}));
  }

  // x (B, T, C); cos/sin (B, T, 1, D) rotary tables of the new positions (sin sign-folded, see
  // apply_rotary); bias additive, (B*Hkv, G*T, S), or (B*Hkv or 1, 1, S) broadcast over the G*T
  // query rows; k_cache/v_cache (B, Hkv, capacity, D) or undefined; start = cached length before
  // this call.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& bias, torch::Tensor* k_cache, torch::Tensor* v_cache,
                        int64_t start) {
    const int64_t B = x.size(0), T = x.size(1), H = cfg_.num_attention_heads,
                  Hkv = cfg_.num_key_value_heads, G = H / Hkv, D = cfg_.head_dim();
    // attention block
    auto h = rms_norm(x, input_norm_, cfg_.rms_norm_eps);                        // (B, T, C)
    auto q = apply_rotary(q_proj_(h).view({B, T, H, D}), cos, sin);              // (B, T, H, D)
    auto k = apply_rotary(k_proj_(h).view({B, T, Hkv, D}), cos, sin).transpose(1, 2);  // (B, Hkv, T, D)
    auto v = v_proj_(h).view({B, T, Hkv, D}).transpose(1, 2);                    // (B, Hkv, T, D)
    if (k_cache) {
      k_cache->narrow(2, start, T).copy_(k);
      v_cache->narrow(2, start, T).copy_(v);
      k = k_cache->narrow(2, 0, start + T);                                      // (B, Hkv, S, D)
      v = v_cache->narrow(2, 0, start + T);                                      // (B, Hkv, S, D)
    }
    const int64_t S = k.size(2);
    // Query heads j*G .. j*G+G-1 share key/value head j (HF repeat_kv): group them, no copy of K/V
    // (a cache slice folds to (B*Hkv, S, D) as a view).
    auto qg = q.transpose(1, 2).reshape({B * Hkv, G * T, D});                    // (B*Hkv, G*T, D)
    auto kt = k.reshape({B * Hkv, S, D}).transpose(1, 2);                        // (B*Hkv, D, S)
    // bias + (q k^T) / sqrt(D) in one batched GEMM
    auto att = torch::baddbmm(bias, qg, kt, 1.0, 1.0 / std::sqrt(double(D))).softmax(-1);  // (B*Hkv, G*T, S)
    auto y = torch::bmm(att, v.reshape({B * Hkv, S, D}));                        // (B*Hkv, G*T, D)
    y = y.view({B, H, T, D}).transpose(1, 2).reshape({B, T, H * D});              // (B, T, C)
    auto r = x + o_proj_(y);
    // SwiGLU MLP block
    auto m = rms_norm(r, post_norm_, cfg_.rms_norm_eps);
    return r + down_proj_(torch::silu(gate_proj_(m)) * up_proj_(m));             // (B, T, C)
  }

  // The weights as raw pointers for llama_decode_step; false when one is not contiguous CPU float32.
  bool step_weights(LlamaStepLayer* out) const {
    const torch::Tensor* ts[] = {&q_proj_->weight, &k_proj_->weight, &v_proj_->weight, &o_proj_->weight,
                                 &gate_proj_->weight, &up_proj_->weight, &down_proj_->weight, &input_norm_,
                                 &post_norm_};
    for (const auto* t : ts)
      if (!t->device().is_cpu() || t->scalar_type() != torch::kFloat32 || !t->is_contiguous()) return false;
    *out = {q_proj_->weight.data_ptr<float>(), k_proj_->weight.data_ptr<float>(), v_proj_->weight.data_ptr<float>(),
            o_proj_->weight.data_ptr<float>(), gate_proj_->weight.data_ptr<float>(),
            up_proj_->weight.data_ptr<float>(), down_proj_->weight.data_ptr<float>(), input_norm_.data_ptr<float>(),
            post_norm_.data_ptr<float>()};
    return true;
  }

 private:
  LlamaConfig cfg_;
  torch::nn::Linear q_proj_{nullptr}, k_proj_{nullptr}, v_proj_{nullptr}, o_proj_{nullptr};
  torch::nn::Linear gate_proj_{nullptr}, up_proj_{nullptr}, down_proj_{nullptr};
  torch::Tensor input_norm_, post_norm_;
};

// ---------------------------------------------------------------- KV cache
KvCache KvCache::select(const torch::Tensor& index) const {
  KvCache out;
  auto idx = index.to(torch::kLong);
  for (size_t l = 0; l < k.size(); ++l) {
    out.k.push_back(k[l].index_select(0, idx));
    out.v.push_back(v[l].index_select(0, idx));
  }
  out.key_keep = key_keep.index_select(0, idx);
  out.real = real.index_select(0, idx);
  out.next_position = next_position.index_select(0, idx);
  out.length = length;
  return out;
}

void KvCache::truncate(int64_t new_length) {
  if (new_length < 0 || new_length > length)
    fail("KvCache::truncate: new length ", new_length, " outside 0..", length);
  std::optional<c10::InferenceMode> inference;
  if (needs_inference_mode(this, "KvCache::truncate")) inference.emplace();
  // Rotary positions of the dropped tokens are released: next position = kept real tokens.
  next_position = real.narrow(1, 0, new_length).sum(1).to(torch::kLong);
  key_keep.narrow(1, new_length, capacity() - new_length).fill_(false);
  real.narrow(1, new_length, capacity() - new_length).fill_(false);
  length = new_length;
}

void KvCache::reserve(int64_t want) {
  if (want <= capacity()) return;
  std::optional<c10::InferenceMode> inference;
  if (needs_inference_mode(this, "KvCache::reserve")) inference.emplace();
  const int64_t cap = std::max(want, 2 * capacity()), B = batch();
  for (auto* vec : {&k, &v})
    for (auto& t : *vec) {
      auto bigger = torch::zeros({t.size(0), t.size(1), cap, t.size(3)}, t.options());
      bigger.narrow(2, 0, length).copy_(t.narrow(2, 0, length));
      t = bigger;
    }
  for (auto* mask : {&key_keep, &real}) {
    auto bigger = torch::zeros({B, cap}, mask->options());
    bigger.narrow(1, 0, length).copy_(mask->narrow(1, 0, length));
    *mask = bigger;
  }
}

// ---------------------------------------------------------------- decoder
LlamaModelImpl::LlamaModelImpl(const LlamaConfig& c) : cfg_(c) {
  validate(c, "LlamaModel");
  embed_tokens_ = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  auto list = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layers_.push_back(std::make_shared<LlamaDecoderLayerImpl>(c));
    list->push_back(layers_.back());
  }
  auto norm = register_module("norm", std::make_shared<torch::nn::Module>());
  norm_weight_ = norm->register_parameter("weight", torch::ones({c.hidden_size}));
  // Rotary tables (not parameters): inv_freq_i = theta^(-2i/D), angle = position * inv_freq.
  const int64_t D = c.head_dim();
  auto inv_freq = torch::pow(c.rope_theta, -torch::arange(0, D, 2, torch::kFloat64) / double(D));
  auto angles = torch::outer(torch::arange(c.max_position_embeddings, torch::kFloat64), inv_freq);  // (Pmax, D/2)
  auto emb = torch::cat({angles, angles}, -1);                                                     // (Pmax, D)
  rope_cos_ = emb.cos().to(torch::kFloat32);
  rope_sin_ = emb.sin().to(torch::kFloat32);
  rope_sin_.narrow(1, 0, D / 2).neg_();  // sign-folded for apply_rotary: (-sin1, sin2)
}

std::pair<torch::Tensor, torch::Tensor> LlamaModelImpl::rope_tables(const torch::TensorOptions& like) {
  // Converted once per device / dtype (the fp32 tables convert exactly as their rows would).
  if (rope_cos_.device() != like.device() || rope_cos_.scalar_type() != like.dtype()) {
    torch::NoGradGuard ng;
    rope_cos_ = rope_cos_.to(like.device(), like.dtype());
    rope_sin_ = rope_sin_.to(like.device(), like.dtype());
  }
  return {rope_cos_, rope_sin_};
}

KvCache LlamaModelImpl::new_cache(int64_t batch, int64_t capacity) const {
  KvCache c;
  auto opts = norm_weight_.options().requires_grad(false);
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
    c.k.push_back(torch::zeros({batch, cfg_.num_key_value_heads, capacity, cfg_.head_dim()}, opts));
    c.v.push_back(torch::zeros({batch, cfg_.num_key_value_heads, capacity, cfg_.head_dim()}, opts));
  }
  c.key_keep = torch::zeros({batch, capacity}, torch::dtype(torch::kBool).device(opts.device()));
  c.real = torch::zeros({batch, capacity}, torch::dtype(torch::kBool).device(opts.device()));
  c.next_position = torch::zeros({batch}, torch::dtype(torch::kLong).device(opts.device()));
  return c;
}

torch::Tensor LlamaModelImpl::forward(const torch::Tensor& embeds, const torch::Tensor& positions,
                                      const torch::Tensor& key_keep, KvCache* cache, const torch::Tensor& attend) {
  const int64_t B = embeds.size(0), T = embeds.size(1);
  if (attend.defined()) {
    if (cache) fail("LlamaModel: a packed attention mask (attend) is for forwards without a cache");
    if (attend.dim() != 3 || attend.size(0) != B || attend.size(1) != T || attend.size(2) != T)
      fail("LlamaModel: attend must be (", B, ", ", T, ", ", T, "), got ", attend.sizes());
  }
  const int64_t start = cache ? cache->length : 0;
  std::optional<c10::InferenceMode> inference;
  if (needs_inference_mode(cache, "LlamaModel")) inference.emplace();
  const int64_t max_position = positions.max().item<int64_t>();
  if (max_position >= cfg_.max_position_embeddings)
    fail("LlamaModel: position ", max_position, " exceeds max_position_embeddings ", cfg_.max_position_embeddings);
  torch::Tensor keep_all = key_keep;  // (B, S) or undefined (all kept)
  if (cache) {
    if (cache->batch() != B) fail("LlamaModel: cache has ", cache->batch(), " rows, input has ", B);
    cache->reserve(start + T);
    if (key_keep.defined())
      cache->key_keep.narrow(1, start, T).copy_(key_keep);
    else
      cache->key_keep.narrow(1, start, T).fill_(true);
    keep_all = cache->key_keep.narrow(1, 0, start + T);
  }
  const int64_t S = start + T, Hkv = cfg_.num_key_value_heads, G = cfg_.num_attention_heads / Hkv;
  // Additive attention bias, built once for all layers in the layout of their batched GEMM.
  // allowed(b, i, j) = keep(b, j) and j <= start + i: causal in cache-index order. A single new
  // token (T == 1, decoding) is causally after every cached one: only keep matters.
  const auto long_opts = torch::dtype(torch::kLong).device(embeds.device());
  torch::Tensor allowed;                                                  // (B or 1, 1, 1, T or 1, S)
  if (T > 1)
    allowed = (torch::arange(S, long_opts).view({1, S}) <= torch::arange(T, long_opts).view({T, 1}) + start)
                  .view({1, 1, 1, T, S});
  if (keep_all.defined())
    allowed = allowed.defined() ? allowed & keep_all.view({B, 1, 1, 1, S}) : keep_all.view({B, 1, 1, 1, S});
  if (attend.defined())  // T == S here (no cache)
    allowed = allowed.defined() ? allowed & attend.to(torch::kBool).view({B, 1, 1, T, S})
                                : attend.to(torch::kBool).view({B, 1, 1, T, S});
  if (!allowed.defined()) allowed = torch::ones({1, 1, 1, 1, S}, long_opts.dtype(torch::kBool));
  auto bias = torch::zeros(allowed.sizes(), embeds.options()).masked_fill_(allowed.logical_not(), kMaskValue);
  if (T > 1)
    bias = bias.expand({B, Hkv, G, T, S}).reshape({B * Hkv, G * T, S});  // (B*Hkv, G*T, S)
  else if (bias.size(0) > 1)
    bias = bias.expand({B, Hkv, 1, 1, S}).reshape({B * Hkv, 1, S});      // (B*Hkv, 1, S)
  else
    bias = bias.view({1, 1, S});                                          // (1, 1, S): broadcast
  auto flat = positions.reshape({-1});
  auto tables = rope_tables(embeds.options());
  auto cos = tables.first.index_select(0, flat).view({B, T, 1, -1});     // (B, T, 1, D)
  auto sin = tables.second.index_select(0, flat).view({B, T, 1, -1});    // (B, T, 1, D)
  auto x = embeds;
  for (size_t l = 0; l < layers_.size(); ++l)
    x = layers_[l]->forward(x, cos, sin, bias, cache ? &cache->k[l] : nullptr, cache ? &cache->v[l] : nullptr,
                            start);
  if (cache) cache->length = start + T;
  return rms_norm(x, norm_weight_, cfg_.rms_norm_eps);  // (B, T, C)
}

torch::Tensor LlamaModelImpl::decode_step(const torch::Tensor& ids, const torch::Tensor& positions,
                                          const torch::Tensor& key_keep, KvCache& cache) {
  if (torch::GradMode::is_enabled() || !ids.device().is_cpu() || ids.dim() != 2 || ids.size(1) != 1) return {};
  const int64_t B = ids.size(0), C = cfg_.hidden_size, D = cfg_.head_dim();
  if (cache.batch() != B || D > 512) return {};
  if (positions.numel() != B || (key_keep.defined() && key_keep.numel() != B))
    fail("LlamaModel::decode_step: positions ", positions.sizes(), " and key_keep ",
         key_keep.defined() ? key_keep.sizes() : torch::IntArrayRef{}, " must have one entry per row (", B, ")");
  auto f32 = [](const torch::Tensor& t) {
    return t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous();
  };
  LlamaStepModel m;
  m.hidden = C;
  m.heads = cfg_.num_attention_heads;
  m.kv_heads = cfg_.num_key_value_heads;
  m.head_dim = D;
  m.intermediate = cfg_.intermediate_size;
  m.eps = cfg_.rms_norm_eps;
  m.layers.resize(layers_.size());
  for (size_t l = 0; l < layers_.size(); ++l)
    if (!layers_[l]->step_weights(&m.layers[l])) return {};
  const auto& embed = embed_tokens_->weight;
  if (!f32(embed) || !f32(norm_weight_)) return {};
  for (const auto* vec : {&cache.k, &cache.v})
    for (const auto& t : *vec)
      if (!f32(t)) return {};
  if (!cache.key_keep.is_contiguous() || !cache.key_keep.device().is_cpu() || cache.key_keep.scalar_type() != torch::kBool)
    return {};
  auto tables = rope_tables(norm_weight_.options());
  m.embed = embed.data_ptr<float>();
  m.norm = norm_weight_.data_ptr<float>();
  m.rope_cos = tables.first.data_ptr<float>();
  m.rope_sin = tables.second.data_ptr<float>();
  auto id = ids.to(torch::kLong).contiguous(), pos = positions.to(torch::kLong).contiguous();
  const int64_t* idp = id.data_ptr<int64_t>();
  const int64_t* posp = pos.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    if (idp[b] < 0 || idp[b] >= cfg_.vocab_size)
      fail("LlamaModel: token id ", idp[b], " outside the vocabulary (", cfg_.vocab_size, ")");
    if (posp[b] < 0 || posp[b] >= cfg_.max_position_embeddings)
      fail("LlamaModel: position ", posp[b], " exceeds max_position_embeddings ", cfg_.max_position_embeddings);
  }
  const int64_t start = cache.length;
  cache.reserve(start + 1);
  {  // the new token's key_keep entry
    bool* keep = cache.key_keep.data_ptr<bool>();
    auto kk = key_keep.defined() ? key_keep.to(torch::kBool).contiguous() : torch::Tensor();
    for (int64_t b = 0; b < B; ++b) keep[b * cache.capacity() + start] = kk.defined() ? kk.data_ptr<bool>()[b] : true;
  }
  LlamaStepCache c;
  for (size_t l = 0; l < cache.k.size(); ++l) {
    c.k.push_back(cache.k[l].data_ptr<float>());
    c.v.push_back(cache.v[l].data_ptr<float>());
  }
  c.key_keep = cache.key_keep.data_ptr<bool>();
  c.capacity = cache.capacity();
  c.start = start;
  auto out = torch::empty({B, 1, C}, norm_weight_.options());
  llama_decode_step(m, B, idp, posp, c, out.data_ptr<float>());
  cache.length = start + 1;
  return out;
}

torch::Tensor packed_attention(const torch::Tensor& segment_ids) {
  if (segment_ids.dim() != 2) fail("packed_attention: segment_ids must be (B, T), got ", segment_ids.sizes());
  auto q = segment_ids.unsqueeze(2), k = segment_ids.unsqueeze(1);  // (B, T, 1), (B, 1, T)
  return (k == 0) | (k == q);                                        // (B, T, T)
}

// ---------------------------------------------------------------- LLaVA
LlavaForConditionalGenerationImpl::LlavaForConditionalGenerationImpl(const LlavaConfig& c) : cfg_(c) {
  validate(c);
  auto tower = register_module("vision_tower", std::make_shared<torch::nn::Module>());
  vision_model_ = tower->register_module("vision_model", ClipVisionTransformer(c.vision));
  auto proj = register_module("multi_modal_projector", std::make_shared<torch::nn::Module>());
  linear_1_ = proj->register_module("linear_1", torch::nn::Linear(c.vision.hidden_size, c.text.hidden_size));
  linear_2_ = proj->register_module("linear_2", torch::nn::Linear(c.text.hidden_size, c.text.hidden_size));
  auto lm = register_module("language_model", std::make_shared<torch::nn::Module>());
  language_model_model_ = lm->register_module("model", LlamaModel(c.text));
  if (!c.text.tie_word_embeddings)
    lm_head_ = lm->register_module(
        "lm_head", torch::nn::Linear(torch::nn::LinearOptions(c.text.hidden_size, c.text.vocab_size).bias(false)));
}

torch::Tensor LlavaForConditionalGenerationImpl::image_features(const torch::Tensor& pixel_values) {
  auto h = vision_model_->hidden_state(pixel_values, cfg_.vision_feature_layer);  // (n, P, Cv)
  if (cfg_.vision_feature_select_strategy == "default") h = h.narrow(1, 1, h.size(1) - 1);  // drop CLS
  return linear_2_(torch::gelu(linear_1_(h)));                                   // (n, N, C)
}

torch::Tensor LlavaForConditionalGenerationImpl::embed(const torch::Tensor& input_ids,
                                                       const torch::Tensor& image_features) {
  if (input_ids.dim() != 2) fail("Llava::embed: expected input_ids (B, T), got ", input_ids.sizes());
  auto is_img = input_ids == cfg_.image_token_index;  // (B, T)
  const int64_t have = image_features.defined() ? image_features.size(0) * image_features.size(1) : 0;
  auto mismatch = [&](int64_t slots) {
    fail("Llava::embed: the input has ", slots, " image-token slots but ", have, " image features were given (",
         image_features.defined() ? image_features.size(0) : 0, " images x ", cfg_.image_seq_length(),
         "); expand each <image> to ", cfg_.image_seq_length(), " tokens");
  };
  if (have == 0) {  // text only (every decoding step): a plain lookup, after checking for slots
    if (is_img.any().item<bool>()) mismatch(is_img.sum().item<int64_t>());
    return language_model_model_->embed_tokens()(input_ids);  // (B, T, C)
  }
  const int64_t slots = is_img.sum().item<int64_t>();
  if (slots != have) mismatch(slots);
  auto embeds = language_model_model_->embed_tokens()(input_ids.masked_fill(is_img, 0));  // (B, T, C)
  return embeds.index_put({is_img}, image_features.reshape({-1, embeds.size(2)}).to(embeds.dtype()));
}

torch::Tensor LlavaForConditionalGenerationImpl::forward_hidden(const VlmInput& in, KvCache* cache) {
  const auto& ids = in.input_ids;
  if (!ids.defined() || ids.dim() != 2) fail("Llava::forward: input_ids must be (B, T)");
  const int64_t B = ids.size(0), T = ids.size(1);
  // An undefined attention_mask means every token is real (the common decoding case): no mask
  // tensors are built for it.
  const bool all_real = !in.attention_mask.defined();
  torch::Tensor mask = all_real ? torch::Tensor() : in.attention_mask.to(torch::kLong);  // (B, T)
  if (!all_real && mask.sizes() != ids.sizes())
    fail("Llava::forward: attention_mask ", mask.sizes(), " != input_ids ", ids.sizes());
  if (cache && T == 1 && !in.image_features.defined() && !in.pixel_values.defined() && !in.position_ids.defined() &&
      !in.attend.defined()) {
    if (auto hidden = decode_step(in, mask, *cache); hidden.defined()) return hidden;
  }
  torch::Tensor feats = in.image_features;
  if (!feats.defined() && in.pixel_values.defined()) feats = image_features(in.pixel_values);
  auto embeds = embed(ids, feats);                                    // (B, T, C)
  const bool packed = in.position_ids.defined() || in.attend.defined();
  if (packed) {
    if (!in.position_ids.defined() || !in.attend.defined())
      fail("Llava::forward: packed rows need both position_ids and attend");
    if (cache) fail("Llava::forward: packed rows (position_ids, attend) are for forwards without a cache");
    if (in.position_ids.sizes() != ids.sizes())
      fail("Llava::forward: position_ids ", in.position_ids.sizes(), " != input_ids ", ids.sizes());
    if (in.position_ids.min().item<int64_t>() < 0) fail("Llava::forward: negative position_ids");
  }
  // Rotary positions count real tokens only, so left padding does not shift them.
  auto positions = packed     ? in.position_ids.to(torch::kLong)
                   : all_real ? torch::arange(T, ids.options().dtype(torch::kLong)).view({1, T})
                              : (mask.cumsum(1) - 1).clamp_min(0);    // (1 or B, T)
  if (cache) {
    if (cache->batch() != B) fail("Llava::forward: cache has ", cache->batch(), " rows, input has ", B);
    positions = positions + cache->next_position.view({B, 1});        // (B, T)
  } else {
    positions = positions.expand({B, T});
  }
  torch::Tensor keep = all_real ? torch::Tensor() : mask.to(torch::kBool);  // (B, T); undefined = all
  if (in.key_keep.defined()) {
    if (in.key_keep.sizes() != ids.sizes())
      fail("Llava::forward: key_keep ", in.key_keep.sizes(), " != input_ids ", ids.sizes());
    keep = keep.defined() ? keep & in.key_keep.to(torch::kBool) : in.key_keep.to(torch::kBool);
  }
  const int64_t start = cache ? cache->length : 0;
  auto hidden = language_model_model_->forward(embeds, positions, keep, cache, in.attend);
  if (cache) {  // after a possible growth
    std::optional<c10::InferenceMode> inference;
    if (needs_inference_mode(cache, "Llava::forward")) inference.emplace();
    if (all_real) {
      cache->real.narrow(1, start, T).fill_(true);
      cache->next_position = cache->next_position + T;
    } else {
      cache->real.narrow(1, start, T).copy_(mask.to(torch::kBool));
      cache->next_position = cache->next_position + mask.sum(1);
    }
  }
  return hidden;
}

torch::Tensor LlavaForConditionalGenerationImpl::decode_step(const VlmInput& in, const torch::Tensor& mask,
                                                             KvCache& cache) {
  const auto& ids = in.input_ids;                                     // (B, 1)
  const int64_t B = ids.size(0), start = cache.length;
  if (cache.batch() != B) fail("Llava::forward: cache has ", cache.batch(), " rows, input has ", B);
  if (!ids.device().is_cpu()) return {};
  {
    auto id = ids.to(torch::kLong).contiguous();
    const int64_t* p = id.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b)
      if (p[b] == cfg_.image_token_index) embed(ids, {});  // throws the slot-count error
  }
  // At T = 1 the new token's rotary position is the row's next position, padding or not.
  torch::Tensor keep = mask.defined() ? mask.to(torch::kBool) : torch::Tensor();  // (B, 1)
  if (in.key_keep.defined()) {
    if (in.key_keep.sizes() != ids.sizes())
      fail("Llava::forward: key_keep ", in.key_keep.sizes(), " != input_ids ", ids.sizes());
    keep = keep.defined() ? keep & in.key_keep.to(torch::kBool) : in.key_keep.to(torch::kBool);
  }
  auto hidden = language_model_model_->decode_step(ids, cache.next_position.view({B, 1}), keep, cache);
  if (!hidden.defined()) return hidden;
  std::optional<c10::InferenceMode> inference;
  if (needs_inference_mode(&cache, "Llava::forward")) inference.emplace();
  if (mask.defined()) {
    cache.real.narrow(1, start, 1).copy_(mask.to(torch::kBool));
    cache.next_position = cache.next_position + mask.view({B});
  } else {
    cache.real.narrow(1, start, 1).fill_(true);
    cache.next_position = cache.next_position + 1;
  }
  return hidden;
}

torch::Tensor LlavaForConditionalGenerationImpl::logits(const torch::Tensor& hidden) {
  if (lm_head_) return lm_head_(hidden);
  return torch::matmul(hidden, language_model_model_->embed_tokens()->weight.t());  // tied
}

namespace {

// A CLIP tower's layers are "<tower>encoder.layers.<i>." (the Llama decoder's are "model.layers.").
const std::string kClipLayers = "encoder.layers.";

// Hugging Face's CLIPPreTrainedModel._init_weights (initializer_factor 1) for a CLIP tower's
// parameter, or -1 when the name is not one it scales: q/k/v and fc2 C^-1/2 (2L)^-1/2, out_proj
// C^-1/2, fc1 (2C)^-1/2, class_embedding C^-1/2, visual/text projection (their input)^-1/2.
// `layers` maps a tower's "...encoder.layers." prefix to its layer count.
double clip_init_std(const std::string& name, const torch::Tensor& t, const std::map<std::string, int64_t>& layers) {
  auto ends_with = [&](const std::string& suffix) { return mmb::ends_with(name, suffix); };
  if (ends_with("embeddings.class_embedding")) return 1.0 / std::sqrt(double(t.size(0)));
  if (ends_with("visual_projection.weight") || ends_with("text_projection.weight"))
    return 1.0 / std::sqrt(double(t.size(1)));
  const auto at = name.find(kClipLayers);
  if (at == std::string::npos || !ends_with(".weight") || t.dim() != 2) return -1;
  const double L = double(layers.at(name.substr(0, at + kClipLayers.size())));
  if (ends_with("self_attn.q_proj.weight") || ends_with("self_attn.k_proj.weight") ||
      ends_with("self_attn.v_proj.weight"))
    return 1.0 / std::sqrt(double(t.size(1))) / std::sqrt(2 * L);
  if (ends_with("self_attn.out_proj.weight")) return 1.0 / std::sqrt(double(t.size(1)));
  if (ends_with("mlp.fc1.weight")) return 1.0 / std::sqrt(2.0 * double(t.size(1)));
  if (ends_with("mlp.fc2.weight")) return 1.0 / std::sqrt(double(t.size(0))) / std::sqrt(2 * L);
  return -1;
}

}  // namespace

void init_weights(torch::nn::Module& module, uint64_t seed, double normal_std) {
  torch::NoGradGuard ng;
  torch::manual_seed(seed);
  std::map<std::string, int64_t> layers;  // CLIP tower "...encoder.layers." -> layer count
  for (const auto& p : module.named_parameters()) {
    const auto at = p.key().find(kClipLayers);
    if (at == std::string::npos) continue;
    const size_t end = at + kClipLayers.size();
    const int64_t i = std::stoll(p.key().substr(end));
    auto& n = layers[p.key().substr(0, end)];
    n = std::max(n, i + 1);
  }
  for (auto& p : module.named_parameters()) {
    const std::string& name = p.key();
    torch::Tensor t = p.value();
    auto ends_with = [&](const std::string& suffix) { return mmb::ends_with(name, suffix); };
    if (ends_with("logit_scale")) continue;
    if (name.find("embeddings.stem.") != std::string::npos && t.dim() == 4) {
      // Convolutions followed by GELU: 0.02 would shrink the signal ~10x per layer. PyTorch's
      // default (kaiming_uniform, a = sqrt 5): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
      const double bound = 1.0 / std::sqrt(double(t[0].numel()));
      t.uniform_(-bound, bound);
    } else if (const double std = clip_init_std(name, t, layers); std > 0) {
      t.normal_(0.0, std);
    } else if (ends_with("bias")) {
      t.zero_();
    } else if (t.dim() == 1) {
      t.fill_(1.0);  // LayerNorm / RMSNorm weights
    } else {
      t.normal_(0.0, normal_std);  // initializer_range: embeddings, patch embedding, Llama, projector
    }
  }
}

}  // namespace mmb
