// A loaded VLM ready to answer: model + tokenizer + chat template + image preprocessing.
// The one prompt path shared by `mmb generate`, `mmb score` and evaluation:
// question (+ image) -> Vicuna-v1 prompt -> tokens with <image> expanded -> model.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "mmb/chat_template.h"
#include "mmb/generate.h"
#include "mmb/image.h"
#include "mmb/model.h"
#include "mmb/tokenizer.h"

namespace mmb {

// Resizes (bilinear, antialias off as CLIP's processor on already-square images) to size x size
// and normalises with CLIP's mean/std: (3, size, size) float.
torch::Tensor image_to_pixel_values(const Image& image, int64_t size);

// `config` with the tokenizer's vocabulary size and bos / eos / pad / image ids: a new model's.
LlavaConfig with_token_ids(LlavaConfig config, const Tokenizer& tok);

struct VlmAnswer {
  std::string text;           // decoded answer, stop token and trailing EOS removed
  Generation generation;      // tokens, per-token log-probs and entropies
};

class Vlm {
 public:
  // Loads DIR/config.json, DIR/model.safetensors and DIR/tokenizer.model. Checks that the
  // tokenizer's image id equals the config's image_token_index. Throws mmb::Error.
  static Vlm load(const std::string& dir, torch::Device device = torch::kCPU);
  Vlm(LlavaForConditionalGeneration model, Tokenizer tokenizer, ChatTemplate tmpl);

  // Prompt tokens with <image> expanded (B = 1) and the image's pixel values, or no image when
  // `image` is null (text only).
  VlmInput encode_prompt(const std::string& question, const Image* image) const;
  // Left-padded batch of prompts; images[i] may be null only if every row is text-only.
  VlmInput encode_prompts(const std::vector<std::string>& questions, const std::vector<const Image*>& images) const;
  // The same, each prompt followed by the start of its answer, prefixes[i] ("" = none), tokenized
  // as the answer of encode_exchange without its closing EOS: generation continues the answer.
  VlmInput encode_prompts(const std::vector<std::string>& questions, const std::vector<const Image*>& images,
                          const std::vector<std::string>& prefixes) const;
  // Prompt + response (teacher forcing): ids, and response_begin (index of the first response token).
  VlmInput encode_exchange(const std::string& question, const Image* image, const std::string& response,
                           int64_t* response_begin) const;

  // Answers a batch. Stops at EOS (plus options.stop). Greedy by default. With
  // num_return_sequences n > 1 (Hugging Face's name) each prompt is answered n times, its answers
  // consecutive (prompt i's j-th at i * n + j): the prompt is prefilled once and its cache forked
  // into n rows, not encoded n times.
  std::vector<VlmAnswer> answer(const std::vector<std::string>& questions, const std::vector<const Image*>& images,
                                SampleOptions options, int64_t num_return_sequences = 1);
  // Per-token log-probs and entropies of `response` (its tokens, EOS included).
  Generation score(const std::string& question, const Image* image, const std::string& response);

  // Text of generated tokens (EOS and pads dropped).
  std::string decode(const std::vector<int64_t>& tokens) const;
  StopOptions default_stop(int64_t max_new_tokens) const;

  LlavaForConditionalGeneration& model() { return model_; }
  const Tokenizer& tokenizer() const { return tok_; }
  const ChatTemplate& chat_template() const { return tmpl_; }

 private:
  LlavaForConditionalGeneration model_;
  Tokenizer tok_;
  ChatTemplate tmpl_;
};

}  // namespace mmb
