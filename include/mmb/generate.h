// Generation and scoring over the VLM (src/generate/): KV-cache decoding, greedy / temperature /
// top-k / top-p sampling, beam search and group beam search with a Hamming diversity penalty,
// stops on tokens, strings and sentence ends, continuation from a prefix with the cache reused,
// pluggable logits processors (including a lock-step second context, BPO's two-pass sampler),
// and teacher-forced scoring.
//
// Log-probabilities and entropies reported per generated token are those of the model's own
// distribution (softmax of the raw logits at temperature 1), whatever the sampler or processors
// did: they are the model's confidence signals.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "mmb/model.h"

namespace mmb {

// A batch encoded into a cache: what generation continues from.
struct DecodeState {
  KvCache cache;
  torch::Tensor last_logits;  // (B, V) logits predicting each row's next token
  // Rows of the copy (DecodeState is a value; KvCache::select copies the filled part).
  DecodeState select(const torch::Tensor& rows) const {
    return {cache.select(rows), last_logits.index_select(0, rows.to(torch::kLong))};
  }
};

// Runs the prompt batch (left-padded; attention_mask marks real tokens) into a fresh cache with
// room for `extra_capacity` more tokens. Only the last position's logits are computed.
DecodeState prefill(LlavaForConditionalGeneration& model, const VlmInput& in, int64_t extra_capacity = 64);

// Appends tokens (B, T) to a state (a given answer prefix, a chosen token); mask (B, T) marks real
// tokens (undefined = all). Updates last_logits from the last position.
void extend(LlavaForConditionalGeneration& model, DecodeState& state, const torch::Tensor& ids,
            const torch::Tensor& mask = {});

// Changes next-token logits before a token is chosen.
class LogitsProcessor {
 public:
  virtual ~LogitsProcessor() = default;
  // logits (B, V) float, modifiable; generated (B, t) tokens so far this call (t may be 0).
  virtual void process(torch::Tensor& logits, const torch::Tensor& generated) = 0;
  // The tokens chosen this step (B,) and which rows were still running (B,) bool.
  virtual void advance(const torch::Tensor& /*chosen*/, const torch::Tensor& /*running*/) {}
  // Rows were reordered/duplicated (beam search): index (B_new,) into the old rows.
  virtual void reorder(const torch::Tensor& /*index*/) {}
};

// BPO's two-pass sampler (BPO): a second context — the same prompt with another image, e.g.
// a diffusion-noised one — decodes in lock-step. With l the main logits and l' the second's:
//   s = (1 + alpha) * l - alpha * l';  tokens with l < log(cutoff) + max(l) get -inf.
// alpha = +1 is contrastive decoding (removes the prior, as the released code); alpha = -1 samples
// from the second context's logits (the paper's intent: answers from a weakened image).
class SecondContextProcessor : public LogitsProcessor {
 public:
  SecondContextProcessor(LlavaForConditionalGeneration model, DecodeState second, double alpha, double cutoff = 0.2);
  void process(torch::Tensor& logits, const torch::Tensor& generated) override;
  void advance(const torch::Tensor& chosen, const torch::Tensor& running) override;
  void reorder(const torch::Tensor& index) override;

 private:
  LlavaForConditionalGeneration model_;
  DecodeState second_;
  double alpha_, log_cutoff_;
};

// When to stop a row. The stop token itself is kept in the output.
struct StopOptions {
  int64_t max_new_tokens = 64;
  std::vector<int64_t> stop_tokens;        // e.g. EOS
  std::vector<std::string> stop_strings;   // matched at the end of the decoded generation
  bool stop_at_sentence_end = false;       // mmb::ends_sentence on the decoded generation
  // Detokenizer for string / sentence stops (required when either is used).
  std::function<std::string(const std::vector<int64_t>&)> decode;
};

struct SampleOptions {
  double temperature = 0.0;  // 0 = greedy (argmax)
  int64_t top_k = 0;         // keep the k most likely tokens (0 = off)
  double top_p = 1.0;        // keep the smallest set with mass >= top_p (1 = off)
  // Hugging Face's repetition_penalty (CTRL): the logit of every token already generated in the
  // row is divided by it when positive and multiplied by it when negative (1 = off). Unlike
  // Hugging Face, only the generation counts, not the prompt: a question's words stay sayable.
  double repetition_penalty = 1.0;
  // Hugging Face's no_repeat_ngram_size: a token that would complete an n-gram already in the
  // row's generation is forbidden (0 = off; again the generation only, not the prompt).
  int64_t no_repeat_ngram_size = 0;
  uint64_t seed = 0;         // sampling RNG (own generator: deterministic per call)
  StopOptions stop;
};

struct Generation {
  std::vector<int64_t> tokens;   // generated tokens (stop token included)
  std::vector<float> logprobs;   // log p(token) under the model, per token
  std::vector<float> entropies;  // entropy (nats) of the model's full next-token distribution
  std::string finish_reason;     // "stop_token" | "stop_string" | "sentence_end" | "length"
  double sum_logprob() const;
};

// Generates for every row of `state` (which is advanced: it ends holding the generations, so a
// caller can continue from it). Rows stop independently; without processors, finished rows leave
// the decoded batch and `state` is then replaced by a new one with every row (copies of the old
// state's tensors no longer follow it).
std::vector<Generation> generate(LlavaForConditionalGeneration& model, DecodeState& state,
                                 const SampleOptions& options,
                                 const std::vector<LogitsProcessor*>& processors = {});

struct BeamOptions {
  int64_t num_beams = 5;
  int64_t num_groups = 1;          // group beam search when > 1 (num_beams divisible by it)
  double diversity_penalty = 0.0;  // Hamming: per pick of the token by an earlier group this step
  double length_penalty = 1.0;     // final score = sum_logprob / length^length_penalty
  StopOptions stop;
};

struct Beam {
  std::vector<int64_t> tokens;
  std::vector<float> logprobs;  // model log-probs of each token (no diversity penalty)
  double beam_score = 0;        // accumulated search score (includes diversity penalties)
  double score = 0;             // beam_score / length^length_penalty, the ranking score
  int64_t group = 0;
  std::string finish_reason;
  double sum_logprob() const;
};

// Beam search from a single-row state (not modified). Returns, for each group in order, its
// num_beams / num_groups best finished hypotheses, best first. With num_groups = num_beams and a
// diversity penalty this is CSR's search (5 beams in 5 groups, penalty 3.0).
std::vector<Beam> beam_search(LlavaForConditionalGeneration& model, const DecodeState& state,
                              const BeamOptions& options);

// Teacher-forced scores of a batch: for each position t >= 1, the log-probability of ids[t]
// given ids[<t] and the entropy of that next-token distribution; position 0 gets 0. Shapes
// (B, T). Differentiable when grad mode is on.
struct TokenScores {
  torch::Tensor logprobs;   // (B, T)
  torch::Tensor entropies;  // (B, T); undefined unless requested
};
TokenScores score_tokens(LlavaForConditionalGeneration& model, const VlmInput& in, bool with_entropy = true);

// From logits (B, T, V) and ids (B, T): log p(ids[t] | ...) at t >= 1 from logits[t-1]; 0 at t=0.
torch::Tensor shifted_token_logprobs(const torch::Tensor& logits, const torch::Tensor& ids);
// Entropy of softmax(logits[t-1]) at t >= 1; 0 at t=0. (B, T).
torch::Tensor shifted_entropies(const torch::Tensor& logits);

}  // namespace mmb
