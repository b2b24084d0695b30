// Model configurations in the Hugging Face layout (config.json), for CLIPModel and
// LlavaForConditionalGeneration (CLIP vision tower + projector + Llama decoder).
//
// Parsing is strict: a missing required key or a key of the wrong type is an error naming the key;
// keys that are neither used by mmb nor in the list of known Hugging Face bookkeeping keys are
// reported together in one error (pass strict=false to accept them).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mmb/json.h"

namespace mmb {

struct ClipVisionConfig {
  int64_t hidden_size = 128;
  int64_t intermediate_size = 512;
  int64_t num_hidden_layers = 4;
  int64_t num_attention_heads = 4;
  int64_t image_size = 64;      // pixels (square)
  int64_t patch_size = 8;       // pixels; image_size must be a multiple
  int64_t num_channels = 3;
  double layer_norm_eps = 1e-5;
  std::string hidden_act = "quick_gelu";  // "quick_gelu" | "gelu"
  // mmb extension (config key "mmb_stem_channels"; empty = Hugging Face's CLIP): a convolutional
  // stem before the patch embedding. Channel c[0]: 3x3 convolution, stride 1; each later c[i]: 3x3,
  // stride 2; GELU after each. The patch embedding then has kernel = stride = patch_size / 2^(n-1),
  // so the image still gives (image_size / patch_size)^2 tokens. Small ViTs trained from scratch
  // learn shapes much faster with it (docs/results/base-model.md).
  std::vector<int64_t> stem_channels;
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
};

struct ClipTextConfig {
  int64_t vocab_size = 1024;
  int64_t hidden_size = 128;
  int64_t intermediate_size = 512;
  int64_t num_hidden_layers = 4;
  int64_t num_attention_heads = 4;
  int64_t max_position_embeddings = 77;
  double layer_norm_eps = 1e-5;
  std::string hidden_act = "quick_gelu";
  int64_t eos_token_id = 2;
  // Where the pooled text embedding is taken. "hf": Hugging Face's rule (argmax of input ids when
  // eos_token_id == 2, the legacy OpenAI CLIP case; else the first eos). "first_eos": always the
  // first eos (mmb's world CLIP, whose tokenizer has eos = 2 but not as the largest id).
  std::string pooling = "hf";
};

struct ClipConfig {
  ClipTextConfig text;
  ClipVisionConfig vision;
  int64_t projection_dim = 128;
  double logit_scale_init_value = 2.6592;  // log(1/0.07), as CLIP
};

struct LlamaConfig {
  int64_t vocab_size = 1024;
  int64_t hidden_size = 256;
  int64_t intermediate_size = 688;
  int64_t num_hidden_layers = 4;
  int64_t num_attention_heads = 8;
  int64_t num_key_value_heads = 4;        // grouped-query attention when < num_attention_heads
  int64_t max_position_embeddings = 512;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  // std of the normal init of the decoder, its embeddings and the projector (init_weights); HF's
  // default 0.02 learns image lookup slowly in a small decoder trained from scratch (docs/results/base-model.md)
  double initializer_range = 0.02;
  bool tie_word_embeddings = false;
  int64_t bos_token_id = 1;
  int64_t eos_token_id = 2;
  int64_t pad_token_id = 3;
  std::string hidden_act = "silu";
  int64_t head_dim() const { return hidden_size / num_attention_heads; }
};

struct LlavaConfig {
  ClipVisionConfig vision;
  LlamaConfig text;
  int64_t image_token_index = 4;          // id of <image> in the text vocabulary
  int64_t vision_feature_layer = -2;      // hidden state index of the vision tower (HF convention)
  std::string vision_feature_select_strategy = "default";  // "default" drops CLS, "full" keeps it
  std::string projector_hidden_act = "gelu";
  // Number of image features per image (positions the <image> token expands to).
  int64_t image_seq_length() const {
    return vision.num_patches() + (vision_feature_select_strategy == "full" ? 1 : 0);
  }
};

// Validates shapes and choices (heads divide hidden size, patch divides image, known
// activations). Throws mmb::Error naming the field.
void validate(const ClipVisionConfig& c, const std::string& context);
void validate(const ClipTextConfig& c, const std::string& context);
void validate(const LlamaConfig& c, const std::string& context);
void validate(const LlavaConfig& c);
void validate(const ClipConfig& c);

// config.json <-> structs. `context` names the file in errors.
LlavaConfig llava_config_from_json(const Json& j, const std::string& context, bool strict = true);
Json to_json(const LlavaConfig& c);
ClipConfig clip_config_from_json(const Json& j, const std::string& context, bool strict = true);
Json to_json(const ClipConfig& c);

// "llava" or "clip" from config.json's model_type. Throws if absent or other.
std::string model_type_of(const Json& j, const std::string& context);

}  // namespace mmb
