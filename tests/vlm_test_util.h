// Toy VLM pieces shared by the trainer tests (sft_test.cpp, dpo_test.cpp).
#pragma once
#include <cstdint>
#include <string>

#include "mmb/image.h"
#include "mmb/model_config.h"

namespace mmb::testing {

// The vision tower of both toy models: 16-px images in 8-px patches (4 tokens), 32 wide, 2 layers.
inline mmb::ClipVisionConfig tiny_vision() {
  mmb::ClipVisionConfig v;
  v.image_size = 16;
  v.patch_size = 8;
  v.hidden_size = 32;
  v.intermediate_size = 64;
  v.num_hidden_layers = 2;
  v.num_attention_heads = 2;
  return v;
}

// A CLIP at toy sizes: tiny_vision(), a 32-wide text tower pooled at the first EOS, 16-d projection.
inline mmb::ClipConfig tiny_clip(int64_t vocab, int64_t max_tokens = 8) {
  mmb::ClipConfig c;
  c.vision = tiny_vision();
  c.text.vocab_size = vocab;
  c.text.hidden_size = 32;
  c.text.intermediate_size = 64;
  c.text.num_hidden_layers = 2;
  c.text.num_attention_heads = 2;
  c.text.max_position_embeddings = max_tokens;
  c.text.pooling = "first_eos";
  c.projection_dim = 16;
  return c;
}

inline mmb::LlavaConfig tiny_vlm(int64_t vocab) {
  mmb::LlavaConfig c;
  c.vision = tiny_vision();
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

// A 16x16 image of one colour, as PNG.
inline void write_png_color(const std::string& path, uint8_t r, uint8_t g, uint8_t b) {
  mmb::Image img(16, 16, 3);
  for (size_t i = 0; i < img.pixels.size(); i += 3) img.pixels[i] = r, img.pixels[i + 1] = g, img.pixels[i + 2] = b;
  mmb::write_png(path, img);
}

}  // namespace mmb::testing
