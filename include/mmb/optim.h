// Optimiser pieces of the trainer: parameter groups, AdamW construction, the learning-rate
// schedule, and AdamW state as named tensors (for checkpoints).
//
// The optimiser itself is libtorch's torch::optim::AdamW (decoupled weight decay, Loshchilov &
// Hutter 2019, as torch.optim.AdamW); nothing here re-implements its update.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "mmb/json.h"

namespace mmb {

// A user's description of one parameter group (e.g. LLaVA's projector with its own lr).
struct ParamGroupSpec {
  std::string name;                   // used in metrics ("lr/<name>") and errors; unique
  std::vector<std::string> prefixes;  // parameter names starting with one of these belong here
  double lr = -1;                     // peak learning rate; < 0 = the default lr
  double weight_decay = -1;           // decoupled weight decay; < 0 = the default
};

struct NamedParam {
  std::string name;    // module.named_parameters() key, e.g. "multi_modal_projector.linear_1.weight"
  torch::Tensor param;
};

// A resolved group: what AdamW receives, with names kept for checkpoints and logs.
struct ParamGroup {
  std::string name;
  double lr = 0;            // peak learning rate (the schedule multiplies it)
  double weight_decay = 0;
  std::vector<NamedParam> params;
};

struct ParamGroupOptions {
  double lr = 3e-4;                          // default peak lr
  double weight_decay = 0.0;                 // default decoupled weight decay
  std::vector<ParamGroupSpec> groups;        // first matching prefix wins
  std::vector<std::string> frozen_prefixes;  // requires_grad(false); excluded from AdamW
  // false (HF / LLaVA practice): 1-D parameters (biases, norm weights) go into a sibling group
  // "<name>/no_decay" with weight_decay 0. true: they decay like the rest.
  bool decay_1d = false;
};

// Freezes parameters matching frozen_prefixes, then assigns every parameter that requires grad
// to the first spec with a matching prefix (else group "default"). Empty groups are dropped.
// Throws mmb::Error if a prefix (group or frozen) matches no parameter (a typo would otherwise
// silently train the wrong set), if group names repeat, or if nothing is left to train.
std::vector<ParamGroup> make_param_groups(torch::nn::Module& module, const ParamGroupOptions& options);

// One AdamW over the groups (per-group lr and weight decay; shared betas and eps).
std::unique_ptr<torch::optim::AdamW> make_adamw(const std::vector<ParamGroup>& groups, double beta1,
                                                double beta2, double eps);

// Linear warmup then cosine decay to min_lr_ratio, as a factor of the peak lr, for the 0-based
// optimiser step `step`:
//   step < warmup:  (step + 1) / warmup          (the first step already trains; HF's uses step/warmup)
//   otherwise:      r + (1 - r) * 0.5 * (1 + cos(pi * p)),  p = (step - warmup) / (total - warmup)
// p is clamped to [0, 1], so steps past `total` stay at r.
double cosine_lr_factor(int64_t step, int64_t warmup_steps, int64_t total_steps, double min_lr_ratio);

// Sets every group's lr to its peak lr * factor. `groups` must be the ones AdamW was built from.
void set_lr_factor(torch::optim::AdamW& optimizer, const std::vector<ParamGroup>& groups, double factor);

// AdamW per-parameter state as tensors "<param>.exp_avg", "<param>.exp_avg_sq" (and
// "<param>.max_exp_avg_sq" with amsgrad), with the per-parameter step counts as JSON
// {"<param>": step}. Parameters that have not been stepped have no entries.
struct AdamWStateDump {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;  // CPU copies
  Json steps = Json::object();
};
AdamWStateDump dump_adamw_state(const torch::optim::AdamW& optimizer, const std::vector<ParamGroup>& groups);

// Restores a dump into `optimizer` (replacing its state), copying tensors onto each parameter's
// device. Throws mmb::Error (naming `context`) on a missing tensor, a shape mismatch, or a state
// entry for a parameter that is not in `groups`.
void load_adamw_state(torch::optim::AdamW& optimizer, const std::vector<ParamGroup>& groups,
                      const std::map<std::string, torch::Tensor>& tensors, const Json& steps,
                      const std::string& context);

}  // namespace mmb
