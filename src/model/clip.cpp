// CLIP (Radford et al. 2021) as Hugging Face's CLIPModel: pre-norm transformer encoder layers
// with biased q/k/v/out projections and quick-GELU MLPs; the vision tower embeds 2-D patches
// plus a class token, the text tower is causal and pools at the end-of-text token.
// Shapes follow the legend in include/mmb/model.h.
#include <cmath>

#include "clip_layer.h"
#include "mmb/error.h"
#include "mmb/model.h"

namespace mmb {

torch::Tensor act_fn(const torch::Tensor& x, const std::string& act) {
  if (act == "quick_gelu") return x * torch::sigmoid(1.702 * x);
  return torch::gelu(x);  // exact (erf) GELU, HF "gelu"
}

// ---------------------------------------------------------------- encoder layer
ClipEncoderLayerImpl::ClipEncoderLayerImpl(int64_t hidden, int64_t inter, int64_t heads, double eps,
                                           std::string act)
    : heads_(heads), act_(std::move(act)) {
  auto attn = register_module("self_attn", std::make_shared<torch::nn::Module>());
  q_proj_ = attn->register_module("q_proj", torch::nn::Linear(hidden, hidden));
  k_proj_ = attn->register_module("k_proj", torch::nn::Linear(hidden, hidden));
  v_proj_ = attn->register_module("v_proj", torch::nn::Linear(hidden, hidden));
  out_proj_ = attn->register_module("out_proj", torch::nn::Linear(hidden, hidden));
  auto ln = [&](const char* name) {
    return register_module(name, torch::nn::LayerNorm(torch::nn::LayerNormOptions({hidden}).eps(eps)));
  };
  layer_norm1_ = ln("layer_norm1");
  layer_norm2_ = ln("layer_norm2");
  auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>());
  fc1_ = mlp->register_module("fc1", torch::nn::Linear(hidden, inter));
  fc2_ = mlp->register_module("fc2", torch::nn::Linear(inter, hidden));
}

torch::Tensor ClipEncoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& bias) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), D = C / heads_;
  // attention block
  auto h = layer_norm1_(x);                                             // (B, T, C)
  auto q = q_proj_(h).view({B, T, heads_, D}).transpose(1, 2);           // (B, H, T, D)
  auto k = k_proj_(h).view({B, T, heads_, D}).transpose(1, 2);           // (B, H, T, D)
  auto v = v_proj_(h).view({B, T, heads_, D}).transpose(1, 2);           // (B, H, T, D)
  auto att = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(D)));  // (B, H, T, T)
  if (bias.defined()) att = att + bias;                                 // (B, 1, T, T) additive mask
  att = torch::softmax(att, -1);
  auto y = torch::matmul(att, v).transpose(1, 2).reshape({B, T, C});     // (B, T, C)
  auto r = x + out_proj_(y);
  // MLP block
  auto h2 = layer_norm2_(r);
  if (act_ == "quick_gelu") {
    // fc2(z·σ(1.702 z)), z = fc1(h2), as fc2'(silu(fc1'(h2))) with fc1' = 1.702·fc1 and fc2's
    // weight / 1.702: the same function, and its activation is libtorch's one fused silu kernel
    // instead of three elementwise ops and their backward (docs/performance.md has the CLIP step's time).
    namespace F = torch::nn::functional;
    constexpr double k = 1.702;
    auto z = torch::silu(F::linear(h2, fc1_->weight * k, fc1_->bias * k));  // (B, T, I)
    return r + F::linear(z, fc2_->weight * (1.0 / k), fc2_->bias);           // (B, T, C)
  }
  return r + fc2_(act_fn(fc1_(h2), act_));                                 // (B, T, C)
}

// ---------------------------------------------------------------- vision tower
ClipVisionTransformerImpl::ClipVisionTransformerImpl(const ClipVisionConfig& c) : cfg_(c) {
  validate(c, "ClipVisionTransformer");
  auto emb = register_module("embeddings", std::make_shared<torch::nn::Module>());
  class_embedding_ = emb->register_parameter("class_embedding", torch::randn({c.hidden_size}));
  int64_t in = c.num_channels, patch = c.patch_size;
  if (!c.stem_channels.empty()) {
    auto list = emb->register_module("stem", torch::nn::ModuleList());
    for (size_t i = 0; i < c.stem_channels.size(); ++i) {
      const int64_t stride = i == 0 ? 1 : 2;
      stem_.emplace_back(torch::nn::Conv2dOptions(in, c.stem_channels[i], 3).stride(stride).padding(1));
      list->push_back(stem_.back());
      in = c.stem_channels[i];
      patch /= stride;
    }
  }
  patch_embedding_ = emb->register_module(
      "patch_embedding",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(in, c.hidden_size, patch).stride(patch).bias(false)));
  position_embedding_ =
      emb->register_module("position_embedding", torch::nn::Embedding(c.num_patches() + 1, c.hidden_size));
  auto ln = torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps);
  pre_layrnorm_ = register_module("pre_layrnorm", torch::nn::LayerNorm(ln));  // sic, as in HF
  auto enc = register_module("encoder", std::make_shared<torch::nn::Module>());
  auto list = enc->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layers_.push_back(std::make_shared<ClipEncoderLayerImpl>(c.hidden_size, c.intermediate_size,
                                                             c.num_attention_heads, c.layer_norm_eps,
                                                             c.hidden_act));
    list->push_back(layers_.back());
  }
  post_layernorm_ = register_module("post_layernorm", torch::nn::LayerNorm(ln));
}

int64_t ClipVisionTransformerImpl::layer_index(int64_t layer) const {
  const int64_t L = cfg_.num_hidden_layers;
  if (layer < 0) layer += L + 1;
  if (layer < 0 || layer > L) fail("ClipVisionTransformer: layer ", layer, " outside 0..", L);
  return layer;
}

torch::Tensor ClipVisionTransformerImpl::embed(const torch::Tensor& pixel_values) {
  if (pixel_values.dim() != 4 || pixel_values.size(1) != cfg_.num_channels ||
      pixel_values.size(2) != cfg_.image_size || pixel_values.size(3) != cfg_.image_size)
    fail("ClipVisionTransformer: expected pixel_values (B, ", cfg_.num_channels, ", ", cfg_.image_size, ", ",
         cfg_.image_size, "), got ", pixel_values.sizes());
  const int64_t B = pixel_values.size(0);
  auto pixels = pixel_values.to(class_embedding_.dtype());
  for (auto& conv : stem_) pixels = torch::gelu(conv(pixels));  // (B, c_i, H / 2^i, W / 2^i)
  auto patches = patch_embedding_(pixels);                    // (B, Cv, h, w)
  patches = patches.flatten(2).transpose(1, 2);                                // (B, P-1, Cv)
  auto cls = class_embedding_.view({1, 1, -1}).expand({B, 1, cfg_.hidden_size});
  auto x = torch::cat({cls, patches}, 1);                                      // (B, P, Cv)
  x = x + position_embedding_->weight.unsqueeze(0);
  return pre_layrnorm_(x);
}

torch::Tensor ClipVisionTransformerImpl::hidden_state(const torch::Tensor& pixel_values, int64_t layer) {
  layer = layer_index(layer);
  auto x = embed(pixel_values);
  for (int64_t i = 0; i < layer; ++i) x = layers_[i]->forward(x, torch::Tensor());
  return x;                                                                    // (B, P, Cv)
}

torch::Tensor ClipVisionTransformerImpl::pooled(const torch::Tensor& pixel_values) {
  auto x = hidden_state(pixel_values, cfg_.num_hidden_layers);
  return post_layernorm_(x.select(1, 0));  // (B, Cv)
}

std::pair<torch::Tensor, torch::Tensor> ClipVisionTransformerImpl::hidden_and_pooled(const torch::Tensor& pixel_values,
                                                                                     int64_t layer) {
  layer = layer_index(layer);
  auto x = embed(pixel_values);
  torch::Tensor at = layer == 0 ? x : torch::Tensor();
  for (int64_t i = 0; i < cfg_.num_hidden_layers; ++i) {
    x = layers_[i]->forward(x, torch::Tensor());
    if (i + 1 == layer) at = x;
  }
  return {at, post_layernorm_(x.select(1, 0))};
}

// ---------------------------------------------------------------- text tower
ClipTextTransformerImpl::ClipTextTransformerImpl(const ClipTextConfig& c) : cfg_(c) {
  validate(c, "ClipTextTransformer");
  auto emb = register_module("embeddings", std::make_shared<torch::nn::Module>());
  token_embedding_ = emb->register_module("token_embedding", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  position_embedding_ =
      emb->register_module("position_embedding", torch::nn::Embedding(c.max_position_embeddings, c.hidden_size));
  auto enc = register_module("encoder", std::make_shared<torch::nn::Module>());
  auto list = enc->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layers_.push_back(std::make_shared<ClipEncoderLayerImpl>(c.hidden_size, c.intermediate_size,
                                                             c.num_attention_heads, c.layer_norm_eps,
                                                             c.hidden_act));
    list->push_back(layers_.back());
  }
  final_layer_norm_ = register_module(
      "final_layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
}

torch::Tensor ClipTextTransformerImpl::last_hidden_state(const torch::Tensor& input_ids,
                                                         const torch::Tensor& attention_mask) {
  if (input_ids.dim() != 2) fail("ClipTextTransformer: expected input_ids (B, T), got ", input_ids.sizes());
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  if (T > cfg_.max_position_embeddings)
    fail("ClipTextTransformer: ", T, " tokens exceed max_position_embeddings ", cfg_.max_position_embeddings);
  auto x = token_embedding_(input_ids) + position_embedding_->weight.narrow(0, 0, T).unsqueeze(0);  // (B, T, C)
  // causal + padding mask, additive (B, 1, T, T)
  auto allowed = torch::ones({T, T}, torch::kBool).tril().view({1, 1, T, T});
  if (attention_mask.defined()) allowed = allowed & attention_mask.to(torch::kBool).view({B, 1, 1, T});
  auto bias = torch::zeros(allowed.sizes(), x.options()).masked_fill(allowed.logical_not(), -1e9);
  for (auto& layer : layers_) x = layer->forward(x, bias);
  return final_layer_norm_(x);  // (B, T, C)
}

torch::Tensor ClipTextTransformerImpl::pooled(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
  auto x = last_hidden_state(input_ids, attention_mask);  // (B, T, C)
  const int64_t B = input_ids.size(0);
  torch::Tensor idx;
  if (cfg_.pooling == "hf" && cfg_.eos_token_id == 2) {
    idx = input_ids.argmax(-1);  // legacy OpenAI CLIP: the end-of-text token has the largest id
  } else {
    auto is_eos = (input_ids == cfg_.eos_token_id).to(torch::kInt);
    if (!is_eos.any(1).all().item<bool>()) fail("ClipTextTransformer: a row has no eos token ", cfg_.eos_token_id);
    idx = is_eos.argmax(-1);  // first eos
  }
  return x.index({torch::arange(B), idx});  // (B, C)
}

// ---------------------------------------------------------------- CLIPModel
ClipModelImpl::ClipModelImpl(const ClipConfig& c) : cfg_(c) {
  validate(c);
  text_model_ = register_module("text_model", ClipTextTransformer(c.text));
  vision_model_ = register_module("vision_model", ClipVisionTransformer(c.vision));
  visual_projection_ =
      register_module("visual_projection",
                      torch::nn::Linear(torch::nn::LinearOptions(c.vision.hidden_size, c.projection_dim).bias(false)));
  text_projection_ = register_module(
      "text_projection", torch::nn::Linear(torch::nn::LinearOptions(c.text.hidden_size, c.projection_dim).bias(false)));
  logit_scale_ = register_parameter("logit_scale", torch::tensor(c.logit_scale_init_value));
}

torch::Tensor ClipModelImpl::image_embeds(const torch::Tensor& pixel_values) {
  auto e = visual_projection_(vision_model_->pooled(pixel_values));  // (B, E)
  return e / e.norm(2, -1, true);
}

std::pair<torch::Tensor, torch::Tensor> ClipModelImpl::image_embeds_and_hidden(const torch::Tensor& pixel_values,
                                                                             int64_t layer) {
  auto [hidden, pooled] = vision_model_->hidden_and_pooled(pixel_values, layer);
  auto e = visual_projection_(pooled);  // (B, E)
  return {e / e.norm(2, -1, true), hidden};
}

torch::Tensor ClipModelImpl::text_embeds(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
  auto e = text_projection_(text_model_->pooled(input_ids, attention_mask));  // (B, E)
  return e / e.norm(2, -1, true);
}

torch::Tensor ClipModelImpl::text_mean_embeds(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
  auto x = text_model_->last_hidden_state(input_ids, attention_mask);  // (B, T, C)
  auto m = attention_mask.defined() ? attention_mask.to(x.dtype()).unsqueeze(-1)
                                    : torch::ones({x.size(0), x.size(1), 1}, x.options());  // (B, T, 1)
  auto e = (x * m).sum(1) / m.sum(1).clamp_min(1.0);  // (B, C)
  return e / e.norm(2, -1, true).clamp_min(1e-12);
}

torch::Tensor ClipModelImpl::logits_per_image(const torch::Tensor& image_embeds, const torch::Tensor& text_embeds) {
  return logit_scale_.exp() * torch::matmul(image_embeds, text_embeds.t());  // (B_img, B_txt)
}

torch::Tensor clip_score(const torch::Tensor& image_embeds, const torch::Tensor& text_embeds) {
  return torch::clamp_min(100.0 * (image_embeds * text_embeds).sum(-1), 0.0);  // (B,)
}

torch::Tensor clip_normalize(const torch::Tensor& pixels01) {
  auto opts = pixels01.options();
  auto mean = torch::tensor({0.48145466, 0.4578275, 0.40821073}, opts).view({1, 3, 1, 1});
  auto std = torch::tensor({0.26862954, 0.26130258, 0.27577711}, opts).view({1, 3, 1, 1});
  return (pixels01 - mean) / std;
}

}  // namespace mmb
