// CLIPScore and mean-pooled sentence similarity with a loaded CLIP (include/mmb/clip_scorer.h).
#include "mmb/clip_scorer.h"

#include "mmb/checkpoint.h"
#include "mmb/error.h"

namespace mmb {

ClipScorer::ClipScorer(ClipModel model, Tokenizer tokenizer, int64_t max_tokens)
    : model_(std::move(model)), tok_(std::move(tokenizer)), max_tokens_(max_tokens) {
  if (max_tokens_ < 2) fail("ClipScorer: max_tokens must be >= 2 (BOS and EOS), got ", max_tokens_);
  model_->eval();
}

ClipScorer ClipScorer::load(const std::string& dir) {
  ClipModel m = load_clip(dir);
  const int64_t max_tokens = m->config().text.max_position_embeddings;
  return ClipScorer(std::move(m), Tokenizer::load(dir + "/tokenizer.model"), max_tokens);
}

std::pair<torch::Tensor, torch::Tensor> ClipScorer::encode(const std::vector<std::string>& texts) const {
  // BOS text EOS, cut to max_tokens keeping EOS, right-padded: as CLIP was trained on captions.
  std::vector<std::vector<int32_t>> rows;
  size_t T = 0;
  for (const auto& t : texts) {
    auto ids = tok_.encode(t, /*add_bos=*/true);
    ids.push_back(tok_.eos_id());
    if (int64_t(ids.size()) > max_tokens_) {
      ids.resize(size_t(max_tokens_));
      ids.back() = tok_.eos_id();
    }
    T = std::max(T, ids.size());
    rows.push_back(std::move(ids));
  }
  const int64_t B = int64_t(rows.size());
  const int64_t pad = tok_.pad_id() >= 0 ? tok_.pad_id() : tok_.eos_id();
  std::vector<int64_t> ids(size_t(B) * T, pad), mask(size_t(B) * T, 0);
  for (int64_t b = 0; b < B; ++b)
    for (size_t t = 0; t < rows[size_t(b)].size(); ++t) {
      ids[size_t(b) * T + t] = rows[size_t(b)][t];
      mask[size_t(b) * T + t] = 1;
    }
  return {torch::tensor(ids, torch::kLong).view({B, int64_t(T)}),
          torch::tensor(mask, torch::kLong).view({B, int64_t(T)})};
}

std::vector<double> ClipScorer::score(const torch::Tensor& pixel_values, const std::vector<std::string>& texts) {
  if (texts.empty()) return {};
  c10::InferenceMode inference;
  auto [ids, mask] = encode(texts);
  const int64_t B = ids.size(0);
  auto image = model_->image_embeds(pixel_values);                      // (1, E)
  auto text = model_->text_embeds(ids, mask);                           // (B, E)
  auto s = clip_score(image.expand({B, image.size(1)}), text) / 100.0;  // (B,)
  s = s.to(torch::kDouble).contiguous();
  return std::vector<double>(s.data_ptr<double>(), s.data_ptr<double>() + B);
}

torch::Tensor ClipScorer::sentence_embeddings(const std::vector<std::string>& texts) {
  if (texts.empty()) fail("ClipScorer::sentence_embeddings: no texts");
  c10::InferenceMode inference;
  auto [ids, mask] = encode(texts);
  return model_->text_mean_embeds(ids, mask);  // (B, C)
}

std::vector<double> ClipScorer::similarity(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  if (a.size() != b.size())
    fail("ClipScorer::similarity: ", a.size(), " texts against ", b.size(), " (expected pairs)");
  if (a.empty()) return {};
  std::vector<std::string> all = a;
  all.insert(all.end(), b.begin(), b.end());
  auto e = sentence_embeddings(all);  // (2N, C)
  const int64_t n = int64_t(a.size());
  auto cos = (e.narrow(0, 0, n) * e.narrow(0, n, n)).sum(-1).to(torch::kDouble).contiguous();  // (N,)
  return std::vector<double>(cos.data_ptr<double>(), cos.data_ptr<double>() + n);
}

}  // namespace mmb
