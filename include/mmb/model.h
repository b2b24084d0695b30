// The models: CLIP (Hugging Face CLIPModel) and a LLaVA-architecture VLM (Hugging Face
// LlavaForConditionalGeneration: CLIP vision tower -> 2-layer GELU projector -> Llama decoder).
// Module and parameter names follow the Hugging Face checkpoints exactly, so named_parameters()
// are the safetensors keys. The forward passes read top to bottom in src/model/llava.cpp and
// src/model/clip.cpp.
//
// Dimension legend used in shape comments:
//   B batch, T new tokens, S cached + new tokens, C text hidden, Cv vision hidden, H heads,
//   Hkv key/value heads, D head dim, V vocabulary, P patches (+1 with CLS), N image features.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "mmb/model_config.h"

namespace mmb {

// ---------------------------------------------------------------- CLIP building blocks
class ClipEncoderLayerImpl;
class ClipVisionTransformerImpl : public torch::nn::Module {
 public:
  explicit ClipVisionTransformerImpl(const ClipVisionConfig& c);
  // Hidden state `layer` of the encoder, HF numbering: 0 = embeddings after pre_layrnorm,
  // k = after k layers, negative counts from the end (-1 = last). Only the layers needed run.
  // pixel_values (B, 3, H, W) normalised -> (B, P, Cv) with P = patches + 1 (CLS first).
  torch::Tensor hidden_state(const torch::Tensor& pixel_values, int64_t layer);
  // post_layernorm(CLS of the last layer): (B, Cv).
  torch::Tensor pooled(const torch::Tensor& pixel_values);
  // Hidden state `layer` and the pooled output from one pass: {(B, P, Cv), (B, Cv)}.
  std::pair<torch::Tensor, torch::Tensor> hidden_and_pooled(const torch::Tensor& pixel_values, int64_t layer);
  const ClipVisionConfig& config() const { return cfg_; }

 private:
  int64_t layer_index(int64_t layer) const;           // HF numbering -> 0..L, checked
  torch::Tensor embed(const torch::Tensor& pixel_values);  // layer 0: (B, P, Cv)
  ClipVisionConfig cfg_;
  torch::Tensor class_embedding_;          // embeddings.class_embedding (Cv)
  std::vector<torch::nn::Conv2d> stem_;     // embeddings.stem.{i} (mmb_stem_channels; usually none)
  torch::nn::Conv2d patch_embedding_{nullptr};
  torch::nn::Embedding position_embedding_{nullptr};
  torch::nn::LayerNorm pre_layrnorm_{nullptr}, post_layernorm_{nullptr};
  std::vector<std::shared_ptr<ClipEncoderLayerImpl>> layers_;
};
TORCH_MODULE(ClipVisionTransformer);

// A CLIP text tower with projections, and the vision tower with its projection.
class ClipTextTransformerImpl : public torch::nn::Module {
 public:
  explicit ClipTextTransformerImpl(const ClipTextConfig& c);
  // input_ids (B, T) int64, attention_mask (B, T) (1 = token, 0 = padding; may be undefined).
  // Returns the pooled embedding (B, C) before text_projection (final_layer_norm applied).
  torch::Tensor pooled(const torch::Tensor& input_ids, const torch::Tensor& attention_mask);
  // Every position's state after final_layer_norm: (B, T, C).
  torch::Tensor last_hidden_state(const torch::Tensor& input_ids, const torch::Tensor& attention_mask);
  const ClipTextConfig& config() const { return cfg_; }

 private:
  ClipTextConfig cfg_;
  torch::nn::Embedding token_embedding_{nullptr}, position_embedding_{nullptr};
  std::vector<std::shared_ptr<ClipEncoderLayerImpl>> layers_;
  torch::nn::LayerNorm final_layer_norm_{nullptr};
};
TORCH_MODULE(ClipTextTransformer);

class ClipModelImpl : public torch::nn::Module {
 public:
  explicit ClipModelImpl(const ClipConfig& c);
  torch::Tensor image_embeds(const torch::Tensor& pixel_values);  // (B, E), L2-normalised
  // image_embeds and the tower's hidden state `layer` (B, P, Cv) from one pass.
  std::pair<torch::Tensor, torch::Tensor> image_embeds_and_hidden(const torch::Tensor& pixel_values, int64_t layer);
  torch::Tensor text_embeds(const torch::Tensor& input_ids,
                            const torch::Tensor& attention_mask);  // (B, E), L2-normalised
  // Sentence embedding for similarity (SPEC.md §0): the text tower's final states averaged over
  // the tokens attention_mask marks (all when undefined), L2-normalised; no projection. (B, C).
  torch::Tensor text_mean_embeds(const torch::Tensor& input_ids, const torch::Tensor& attention_mask);
  // exp(logit_scale) * image_embeds @ text_embeds^T: (B_img, B_txt).
  torch::Tensor logits_per_image(const torch::Tensor& image_embeds, const torch::Tensor& text_embeds);
  torch::Tensor logit_scale() const { return logit_scale_; }
  const ClipConfig& config() const { return cfg_; }
  ClipVisionTransformer vision_model() const { return vision_model_; }

 private:
  ClipConfig cfg_;
  ClipTextTransformer text_model_{nullptr};
  ClipVisionTransformer vision_model_{nullptr};
  torch::nn::Linear visual_projection_{nullptr}, text_projection_{nullptr};
  torch::Tensor logit_scale_;
};
TORCH_MODULE(ClipModel);

// CLIPScore = max(100 * cos(E_img, E_txt), 0) for L2-normalised embeddings: (B,) from (B, E) pairs.
torch::Tensor clip_score(const torch::Tensor& image_embeds, const torch::Tensor& text_embeds);

// ---------------------------------------------------------------- KV cache
// Keys and values of every decoder layer for a batch of sequences, preallocated to a capacity
// that grows by doubling. Position s of row b may be attended only when key_keep[b][s] is true
// (padding and hidden image tokens are false). next_position[b] is the rotary position the next
// token of row b gets (padding does not advance it).
struct KvCache {
  std::vector<torch::Tensor> k, v;  // per layer (B, Hkv, capacity, D)
  torch::Tensor key_keep;           // (B, capacity) bool: may be attended
  torch::Tensor real;               // (B, capacity) bool: a real token (not padding)
  torch::Tensor next_position;      // (B,) int64
  int64_t length = 0;               // filled positions

  int64_t batch() const { return next_position.defined() ? next_position.size(0) : 0; }
  int64_t capacity() const { return k.empty() ? 0 : k[0].size(2); }
  // Rows `index` (int64, any order, repeats allowed) as a new cache: beam reordering, forking a
  // prompt cache into several continuations. Copies only the filled part.
  KvCache select(const torch::Tensor& index) const;
  // Drops positions >= `new_length` (continuation from an earlier prefix).
  void truncate(int64_t new_length);
  // Grows the capacity to at least `capacity` (doubling), keeping the filled part.
  void reserve(int64_t capacity);
  // A deep copy.
  KvCache clone() const { return select(torch::arange(batch(), torch::kLong)); }
};

// ---------------------------------------------------------------- Llama decoder
class LlamaDecoderLayerImpl;
class LlamaModelImpl : public torch::nn::Module {
 public:
  explicit LlamaModelImpl(const LlamaConfig& c);
  // embeds (B, T, C); positions (B, T) int64 rotary positions; key_keep (B, T) bool for the new
  // positions (undefined = all kept). With a cache, the new keys/values are appended and attention
  // covers the cache; without one, attention covers the T positions. Causal in both cases.
  // attend (B, T, T) bool, optional and only without a cache: query i may also see key j only
  // where attend(b, i, j) (ANDed with causality and key_keep; packed sequences use it).
  // Returns (B, T, C) after the final norm.
  torch::Tensor forward(const torch::Tensor& embeds, const torch::Tensor& positions,
                        const torch::Tensor& key_keep, KvCache* cache, const torch::Tensor& attend = {});
  torch::nn::Embedding embed_tokens() const { return embed_tokens_; }
  const LlamaConfig& config() const { return cfg_; }
  // An empty cache for `batch` rows with room for `capacity` positions.
  KvCache new_cache(int64_t batch, int64_t capacity) const;
  // forward for one new token per row with a cache (decoding), in plain loops and BLAS calls
  // (src/model/llama_step.cpp) instead of ~150 libtorch ops: ids (B, 1) int64 (embedded here),
  // positions (B, 1), key_keep (B, 1) bool or undefined. Returns the (B, 1, C) hidden state, or an
  // undefined tensor, having done nothing, when the fast step does not apply (autograd on, not
  // CPU float32, non-contiguous weights or cache); callers then use forward.
  torch::Tensor decode_step(const torch::Tensor& ids, const torch::Tensor& positions, const torch::Tensor& key_keep,
                            KvCache& cache);

 private:
  LlamaConfig cfg_;
  torch::nn::Embedding embed_tokens_{nullptr};
  std::vector<std::shared_ptr<LlamaDecoderLayerImpl>> layers_;
  // Rotary tables (max_position_embeddings, D), not parameters, in the dtype / device of the last
  // forward; rope_sin_ has rotate-half's sign folded in (first half negated).
  std::pair<torch::Tensor, torch::Tensor> rope_tables(const torch::TensorOptions& like);
  torch::Tensor norm_weight_;     // norm.weight (C)
  torch::Tensor rope_cos_, rope_sin_;
};
TORCH_MODULE(LlamaModel);

// ---------------------------------------------------------------- LLaVA
// One forward's inputs. Rows are left- or right-padded; attention_mask marks real tokens.
struct VlmInput {
  torch::Tensor input_ids;       // (B, T) int64; image_token_index marks image-feature slots
  torch::Tensor attention_mask;  // (B, T) 1/0 (undefined = all real tokens)
  torch::Tensor pixel_values;    // (n_images, 3, H, W) normalised, one per image slot group
  torch::Tensor image_features;  // or precomputed projector outputs (n_images, N, C)
  torch::Tensor key_keep;        // (B, T) bool, optional: false hides a real position from
                                 // attention as a key (BDHS masks image tokens this way)
  // Packed rows (training and scoring without a cache only; both or neither):
  torch::Tensor position_ids;    // (B, T) int64 rotary positions, replacing the count of real tokens
  torch::Tensor attend;          // (B, T, T) bool: query i may see key j (ANDed with causality and
                                 // the masks above); see packed_attention()
};

// The attention of packed rows: segment_ids (B, T) int64, 0 = a shared prefix that every segment
// sees, s > 0 = a segment that sees the prefix and itself only (e.g. [prompt | chosen | rejected]
// with 0, 1, 2). Returns (B, T, T) bool, attend(b, i, j) = seg(j) == 0 or seg(j) == seg(i).
torch::Tensor packed_attention(const torch::Tensor& segment_ids);

class LlavaForConditionalGenerationImpl : public torch::nn::Module {
 public:
  explicit LlavaForConditionalGenerationImpl(const LlavaConfig& c);

  // Vision tower layer `vision_feature_layer`, CLS dropped ("default"), projected:
  // pixel_values (n, 3, H, W) -> (n, N, C).
  torch::Tensor image_features(const torch::Tensor& pixel_values);
  // Token embeddings with image features written into the image-token slots, in order:
  // (B, T) -> (B, T, C). Throws if the slot count differs from n_images * N.
  torch::Tensor embed(const torch::Tensor& input_ids, const torch::Tensor& image_features);
  // Final hidden states (B, T, C). With a cache, appends to it (positions continue per row).
  torch::Tensor forward_hidden(const VlmInput& in, KvCache* cache = nullptr);
  // Logits (B, T, V) = lm_head(hidden).
  torch::Tensor logits(const torch::Tensor& hidden);
  torch::Tensor forward(const VlmInput& in, KvCache* cache = nullptr) {
    return logits(forward_hidden(in, cache));
  }
  KvCache new_cache(int64_t batch, int64_t capacity) const {
    return language_model_model_->new_cache(batch, capacity);
  }
  const LlavaConfig& config() const { return cfg_; }
  ClipVisionTransformer vision_model() const { return vision_model_; }

 private:
  // forward_hidden's decoding step (T = 1, a cache, text only) on LlamaModel::decode_step; mask
  // (B, 1) int64 or undefined. Undefined when the fast step does not apply.
  torch::Tensor decode_step(const VlmInput& in, const torch::Tensor& mask, KvCache& cache);

  LlavaConfig cfg_;
  ClipVisionTransformer vision_model_{nullptr};          // vision_tower.vision_model
  torch::nn::Linear linear_1_{nullptr}, linear_2_{nullptr};  // multi_modal_projector
  LlamaModel language_model_model_{nullptr};             // language_model.model
  torch::nn::Linear lm_head_{nullptr};                   // language_model.lm_head (absent if tied)
};
TORCH_MODULE(LlavaForConditionalGeneration);

// Hugging Face's initialisation: zero biases, unit norms; CLIP towers as CLIPPreTrainedModel
// (attention and MLP weights scaled by width and depth, class embedding C^-1/2), everything else
// normal(0, std) (initializer_range: embeddings, patch embedding, Llama, projector); mmb's conv
// stem as PyTorch's default, U(±1/sqrt(fan_in)).
void init_weights(torch::nn::Module& module, uint64_t seed, double std = 0.02);

// CLIP's image normalisation, applied to (B, 3, H, W) floats in [0, 1].
torch::Tensor clip_normalize(const torch::Tensor& pixels01);

}  // namespace mmb
