// The DPO trainers' shared pieces (dpo.cpp: offline DPO; dpo_online.cpp: online, mixed and avg
// DPO): tokenized pair sides, the concatenated batch of chosen and rejected rows, the policy's
// sequence log-probs, the offline pair set, the step's loss and metrics. Internal to src/train/.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "mmb/chat_template.h"
#include "mmb/distributed.h"
#include "mmb/dpo.h"
#include "mmb/model.h"
#include "mmb/optim.h"
#include "mmb/prefs.h"
#include "mmb/tokenizer.h"
#include "mmb/train.h"

namespace mmb {

// One tokenized side of a pair: prompt + response + EOS, image tokens expanded.
struct Side {
  std::vector<int32_t> ids;
  std::vector<uint8_t> target;  // 1 on the response's tokens and its EOS
};

// B pairs packed one row each: [shared prompt | chosen response | rejected response | pad]. The
// prompt (and its image slots) is forwarded once; both responses continue its rotary positions
// and attend to it and to themselves only (segments 0 / 1 / 2, packed_attention), so each side's
// log-probs equal a forward of prompt + that side alone.
struct DpoBatch {
  torch::Tensor input_ids;       // (B, T) right-padded
  torch::Tensor attention_mask;  // (B, T) 1 on real tokens
  torch::Tensor position_ids;    // (B, T) rotary positions: the responses both start at the prompt's length
  torch::Tensor attend;          // (B, T, T) bool: packed_attention of the segments
  torch::Tensor source;          // (N,) int64: flat index b * T + t of the position predicting each scored token
  torch::Tensor token;           // (N,) int64: the scored token (response tokens and EOS)
  torch::Tensor side;            // (N,) int64: its side's row in the (2B,) outputs (chosen b, rejected B + b)
  torch::Tensor pixel_values;    // (n, 3, S, S) for the pairs with an image, in pair order
  int64_t pairs = 0;
  int64_t outputs = 0;           // rows of sequence_logps' outputs: 2B, or B for chosen sides alone
  int64_t forwarded_tokens = 0;  // real tokens of the packed rows (the unpacked rows would have more)
};

// Tokenizes prompt + response into `out`; false when it does not fit (and cannot be cut to fit).
// An empty response (a sample that ended at once) is the end token alone.
bool tokenize_side(const Tokenizer& tok, const ChatTemplate& tmpl, const LlavaConfig& cfg, const PreferencePair& p,
                   const std::string& response, int64_t max_length, bool truncate, Side& out, int64_t* truncated);

// B pairs packed as DpoBatch describes: the shared prompt is the longest common prefix of the two
// sides that ends before either response begins. `pixels` holds the images of the pairs that have
// one, in pair order. With `rejected` empty, B rows [prompt | chosen] (outputs = B).
DpoBatch collate_pairs(const std::vector<const Side*>& chosen, const std::vector<const Side*>& rejected,
                       const torch::Tensor& pixels, int64_t pad_id);

// The loss inputs of B pairs from sequence_logps' (2B,) outputs: the policy's log-probs and token
// counts, and the reference's log-probs in the same layout.
DpoInputs split_pair_logps(const torch::Tensor& policy, const torch::Tensor& counts, const torch::Tensor& ref);

// mDPO's corrupted images m': image i of `pixels` (normalised, (n, 3, S, S)) corrupted as
// o.image_corruption says, by a generator seeded with seeds[i] (a pair's m' does not depend on the
// batch it is in).
torch::Tensor corrupt_images(const torch::Tensor& pixels, const DpoRunOptions& o, const std::vector<uint64_t>& seeds);
uint64_t corruption_seed(uint64_t seed, int64_t a, int64_t b = 0);

// --qa-balance: the indices (descending) of the pairs to drop so that as many QA pairs choose
// "yes" as "no": the last pairs of the larger side. polarity per pair: +1 yes, -1 no, 0 not QA.
std::vector<size_t> qa_balance_drops(const std::vector<int>& polarity);

// Summed log-probs of each side's response tokens and their count: (outputs,), (outputs,),
// chosen sides first, then rejected.
std::pair<torch::Tensor, torch::Tensor> sequence_logps(LlavaForConditionalGeneration& model, const DpoBatch& b);

// An offline preference file, tokenized once, images loaded once (uint8).
class PairDataset {
 public:
  PairDataset(const std::vector<PreferencePair>& pairs, const std::string& image_root, const Tokenizer& tok,
              const ChatTemplate& tmpl, const LlavaConfig& cfg, int64_t max_length, bool truncate);

  int64_t size() const { return int64_t(chosen_.size()); }
  int64_t rejected_too_long() const { return rejected_too_long_; }
  int64_t truncated() const { return truncated_; }
  const std::vector<std::string>& rejected_examples() const { return rejected_examples_; }

  DpoBatch batch(const std::vector<int64_t>& indices) const;
  // The chosen sides of `indices` alone on their corrupted images (mDPO's m'), seeded by pair index.
  DpoBatch corrupt_batch(const std::vector<int64_t>& indices, const DpoRunOptions& o) const;
  const Side& chosen(int64_t i) const { return chosen_.at(size_t(i)); }
  const Side& rejected(int64_t i) const { return rejected_.at(size_t(i)); }
  // The pair's image (3, S, S) uint8, undefined for a text-only pair.
  torch::Tensor image_u8(int64_t i) const;
  // Index of pair i in the vector the set was built from (over-long pairs are left out).
  int64_t source(int64_t i) const { return source_.at(size_t(i)); }

 private:
  std::vector<Side> chosen_, rejected_;
  std::vector<int64_t> image_of_, source_;
  torch::Tensor images_;  // (n, 3, S, S) uint8
  int64_t pad_id_;
  int64_t rejected_too_long_ = 0, truncated_ = 0;
  std::vector<std::string> rejected_examples_;
};

// The optimiser's parameter groups and the trainer's options of a DPO run.
std::vector<ParamGroup> dpo_param_groups(const DpoRunOptions& o, LlavaForConditionalGeneration& model);
TrainOptions dpo_train_options(const DpoRunOptions& o, const Distributed& dist);

// The step's loss (mean over its pairs; micro-batches and ranks weigh by their pairs) and TRL's
// metrics, each a mean over the pairs.
LossOutput dpo_step_output(const DpoInputs& in, const DpoLossOptions& options);

// The held-out evaluation of a run with eval_data (null without it): the loss and TRL's metrics of
// the policy on those pairs against the reference's log-probs, computed here once. For
// Trainer::set_eval (which runs it in eval mode without gradients).
std::function<Json(int64_t)> dpo_eval_fn(const DpoRunOptions& o, LlavaForConditionalGeneration& model,
                                          const Tokenizer& tok, const ChatTemplate& tmpl);

// Online DPO, and mixed and avg DPO when `data` is given too (dpo_online.cpp). `offline` is the
// tokenized `data` (null without it), `offline_pairs` the file's pairs.
StepStats run_online_dpo(const DpoRunOptions& o, RunDir* run, Distributed& dist, LlavaForConditionalGeneration& model,
                         const Tokenizer& tok, const ChatTemplate& tmpl, const PairDataset* offline,
                         const std::vector<PreferencePair>& offline_pairs);

}  // namespace mmb
