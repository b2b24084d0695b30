// Pieces every VLM training run shares (SFT, CLIP, DPO): side files of a model directory, the
// trainer options from a run's flags, the batch check, and the resume-train-save sequence.
// Internal to src/train/.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "mmb/distributed.h"
#include "mmb/json.h"
#include "mmb/run_dir.h"
#include "mmb/train.h"
#include "mmb/vlm.h"

namespace mmb {

// Copies config.json (as `config`), tokenizer.model and chat_template.json (when present) of the
// starting model into `to_dir`.
void copy_side_files(const std::string& from_dir, const std::string& to_dir, const Json& config);

TrainOptions base_train_options(const std::string& out, int64_t steps, double warmup_ratio, double grad_clip,
                                int64_t grad_accum, int64_t checkpoint_every, uint64_t seed);

// Throws mmb::Error naming `who` unless `batch` is a positive multiple of the world size.
void check_batch(const char* who, int64_t batch, const Distributed& dist);

// Attaches the run directory and process group, resumes from <out>/checkpoints if any, trains,
// and writes the final model (with tokenizer and template) to <out>/model on rank 0.
// `before_save` runs on the trained model before it is written (e.g. to drop a training-only head).
StepStats train_and_save(Trainer& trainer, RunDir* run, Distributed& dist, torch::nn::Module& model, const Json& config,
                         const std::string& model_dir, const std::string& out,
                         const std::function<void()>& before_save = {});

// The rollouts of online trainers (online DPO, GRPO): `k` samples of each prompt from the policy
// `sampler` (which shares the trained model's weights), rows b·k … b·k + k − 1 for prompt b, in
// eval mode without gradients; `model` is back in train mode afterwards. The sampling seed is
// deterministic in (seed, step, first prompt index), so a resumed run samples what the first did.
std::vector<VlmAnswer> sample_rollouts(Vlm& sampler, torch::nn::Module& model, const std::vector<std::string>& prompts,
                                       const std::vector<const Image*>& images, int64_t k, SampleOptions options,
                                       uint64_t seed, int64_t step, int64_t first_index);

}  // namespace mmb
