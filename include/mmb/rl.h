// RL for step confidence (MMBoundary's second stage, SPEC.md §1.5; docs/boundary.md): `mmb train rl`.
//
// GRPO (the named alternative to the paper's PPO): per prompt the policy samples G >= 2 responses
// (batched over prompts with the KV cache); each gets MMBoundary's reward (mmb/boundary.h:
// knowledge accuracy, expected calibration, self-calibration, optional "I don't know" term) from
// the verifier's step truth, the confidence each step states, and the level the policy's own
// signals give it (confidence.json's normalisation, the current policy's log-probs and entropies);
// advantages are the rewards normalised within each prompt's group, A = (r − mean) / (std + 1e-4);
// one policy-gradient update per batch (TRL's default of one iteration, so the clipped ratio is 1
// at the update and the clip fraction is logged for completeness), with a k3 KL penalty per token
// to the starting model, KL = exp(ref − π) − (ref − π) − 1, weight `kl_beta`:
//   loss = mean_i mean_t [ −min(ρ A_i, clip(ρ, 1 ± ε) A_i) + β·KL_it ],  ρ = exp(log π − log π_old).
// The paper's PPO with a value head and GAE is not implemented.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "mmb/boundary.h"
#include "mmb/train.h"

namespace mmb {

class RunDir;

struct RlRunOptions {
  std::string model_dir;       // the policy's start (the SFT warm-up model) and the KL reference
  std::string clip_dir;        // CLIP of the signals
  std::string confidence;      // confidence.json (mmb boundary fit): levels of the internal estimate
  std::string world_dir;
  std::string split = "train";
  std::vector<std::string> tasks{"reasoning"};
  std::string out;
  std::string algo = "grpo";
  int64_t group_size = 4;      // G responses per prompt (>= 2)
  int64_t batch_size = 8;      // prompts per step
  int64_t steps = 100;
  int64_t max_new_tokens = 96;
  double temperature = 1.0, top_p = 1.0;
  double lr = 1e-5, weight_decay = 0, warmup_ratio = 0.05, grad_clip = 1.0;
  double kl_beta = 0.04, clip_epsilon = 0.2;
  int64_t grad_accum = 1, checkpoint_every = 50;
  bool freeze_vision = true;
  BoundaryRewardOptions reward;
  uint64_t seed = 1234;
};

StepStats run_rl(const RlRunOptions& options, RunDir* run);

// (r − mean) / (std + 1e-4) within each consecutive group of `group_size` rewards (population
// std). Throws unless the count is a positive multiple of group_size.
std::vector<float> group_advantages(const std::vector<double>& rewards, int64_t group_size);

// The loss above from per-token log-probs (R, T): the policy's (with gradients), the sampling
// policy's (log π_old) and the reference's, a float mask of the response tokens (R, T) and the
// advantages (R,). Also returns the mean KL and the clip fraction over masked tokens.
struct GrpoLoss {
  torch::Tensor loss;  // scalar
  double kl = 0, clip_fraction = 0;
};
GrpoLoss grpo_loss(const torch::Tensor& logp, const torch::Tensor& old_logp, const torch::Tensor& ref_logp,
                   const torch::Tensor& mask, const torch::Tensor& advantages, double clip_epsilon, double kl_beta);

}  // namespace mmb
