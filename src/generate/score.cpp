// Teacher-forced scoring: per-token log-probabilities and entropies of given responses.
#include "mmb/generate.h"

namespace mmb {

torch::Tensor shifted_token_logprobs(const torch::Tensor& logits, const torch::Tensor& ids) {
  const int64_t B = ids.size(0), T = ids.size(1);
  auto logp = torch::log_softmax(logits.narrow(1, 0, T - 1).to(torch::kFloat32), -1);   // (B, T-1, V)
  auto tok = logp.gather(-1, ids.narrow(1, 1, T - 1).unsqueeze(-1)).squeeze(-1);      // (B, T-1)
  return torch::cat({torch::zeros({B, 1}, tok.options()), tok}, 1);                   // (B, T)
}

torch::Tensor shifted_entropies(const torch::Tensor& logits) {
  const int64_t B = logits.size(0), T = logits.size(1);
  auto logp = torch::log_softmax(logits.narrow(1, 0, T - 1).to(torch::kFloat32), -1);  // (B, T-1, V)
  auto ent = -(logp.exp() * logp).sum(-1);                                            // (B, T-1)
  return torch::cat({torch::zeros({B, 1}, ent.options()), ent}, 1);                   // (B, T)
}

TokenScores score_tokens(LlavaForConditionalGeneration& model, const VlmInput& in, bool with_entropy) {
  auto logits = model->forward(in);  // (B, T, V)
  TokenScores s;
  s.logprobs = shifted_token_logprobs(logits, in.input_ids);
  if (with_entropy) {
    torch::NoGradGuard ng;
    s.entropies = shifted_entropies(logits.detach());
  }
  return s;
}

}  // namespace mmb
