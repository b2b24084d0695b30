// A loaded CLIP used as a judge of text against images and of text against text: CLIPScore per
// sentence (CSR's image reward, MMBoundary's cross-modal signal) and sentence similarity
// (SPEC.md §0: cosine of mean-pooled, L2-normalised token states of the text tower; MMBoundary's
// TokenSAR, BDHS's resampling test).
//
// Texts are tokenised as CLIP was trained on captions: BOS text EOS, cut to the tower's
// max_position_embeddings keeping EOS. Not thread-safe (one model, run under inference mode).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "mmb/model.h"
#include "mmb/tokenizer.h"

namespace mmb {

class ClipScorer {
 public:
  ClipScorer(ClipModel model, Tokenizer tokenizer, int64_t max_tokens);
  // DIR/config.json, DIR/model.safetensors, DIR/tokenizer.model. Throws mmb::Error.
  static ClipScorer load(const std::string& dir);

  // CLIPScore / 100 = max(cos(E_img, E_txt), 0) of each text against the image (pixel values as
  // the VLM's, (1, 3, H, W)). In [0, 1]; empty input gives an empty result.
  std::vector<double> score(const torch::Tensor& pixel_values, const std::vector<std::string>& texts);

  // Mean over real tokens (BOS and EOS included) of the text tower's final-layer-norm states,
  // L2-normalised: (B, C) float. All texts in one forward. Throws on an empty list.
  torch::Tensor sentence_embeddings(const std::vector<std::string>& texts);
  // cos(mean-pooled a, mean-pooled b) per pair; a and b of equal length.
  std::vector<double> similarity(const std::vector<std::string>& a, const std::vector<std::string>& b);

  const Tokenizer& tokenizer() const { return tok_; }
  int64_t image_size() const { return model_->config().vision.image_size; }  // pixels (square)

 private:
  // (ids, mask) (B, T) of the texts, right-padded.
  std::pair<torch::Tensor, torch::Tensor> encode(const std::vector<std::string>& texts) const;

  ClipModel model_;
  Tokenizer tok_;
  int64_t max_tokens_;
};

}  // namespace mmb
