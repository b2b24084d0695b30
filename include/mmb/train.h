// The training loop every trainer (CLIP and SFT today) runs on.
//
// One optimiser step = grad_accum micro-batches: each draws its batch from a BatchSource, runs the
// caller's loss function and backward; then gradients are averaged (across ranks too, see
// distributed.h), clipped to a global norm, and AdamW steps with lr = peak * cosine_lr_factor.
// Steps are counted from 1 in metrics and checkpoint names ("step 5" = after 5 updates).
//
// Checkpoints: <out_dir>/checkpoints/step-<N>/ (format and resume guarantee in docs/training.md).
// A run killed at any moment and resumed gives the same per-step losses as an uninterrupted run,
// provided the loss function draws all its randomness from the torch CPU generator or the data
// cursor (both are checkpointed) and the thread count is unchanged.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "mmb/json.h"
#include "mmb/optim.h"

namespace mmb {

class RunDir;
class Distributed;
class Progress;

struct TrainOptions {
  double beta1 = 0.9, beta2 = 0.999;  // AdamW betas
  double eps = 1e-8;                  // AdamW epsilon
  int64_t warmup_steps = 0;           // linear warmup steps (see cosine_lr_factor)
  int64_t total_steps = 100;          // optimiser steps of the whole run
  double min_lr_ratio = 0.1;          // final lr as a fraction of each group's peak lr
  double grad_clip = 1.0;             // max global L2 norm; 0 = no clipping (norm still reported)
  int64_t grad_accum = 1;             // micro-batches per optimiser step
  // false: every micro-batch weighs the same (its loss should be a mean); true: micro-batch losses
  // are weighted by LossOutput::weight (by default its tokens), so the step's gradient is the
  // token-mean (or the mean over whatever the weight counts, e.g. answers) over all micro-batches
  // (and ranks) however tokens are spread.
  bool weight_by_tokens = false;
  int64_t eval_every = 0;             // steps between eval callbacks (0 = never; also at the end)
  int64_t checkpoint_every = 0;       // steps between checkpoints (0 = only at the end)
  int64_t log_every = 1;              // steps between metrics.jsonl lines
  uint64_t seed = 0;                  // torch CPU generator seed at the start of a fresh run
  std::string out_dir;                // checkpoints go to <out_dir>/checkpoints; required
  int64_t keep_last_checkpoints = 2;  // older step-* dirs are deleted; 0 = keep all
  bool progress = true;               // progress line on stderr (rank 0)
};

// What the caller's loss function returns for one micro-batch.
struct LossOutput {
  torch::Tensor loss;             // scalar with grad (a mean over the micro-batch)
  Json metrics = Json::object();  // extra numbers, averaged over micro-batches into the step's line
  int64_t tokens = 0;             // tokens the loss covers (tokens/s; weights with weight_by_tokens)
  double weight = -1;             // weight with weight_by_tokens when >= 0 (the loss's denominator)
  int64_t samples = 0;            // samples in the micro-batch (samples/s)
};

// One completed step, as logged.
struct StepStats {
  int64_t step = 0;          // 1-based count of completed optimiser steps
  double loss = 0;           // weighted mean over micro-batches (and ranks)
  double lr = 0;             // lr of group "default" this step (else of the first group)
  double grad_norm = 0;      // global L2 norm before clipping
  int64_t tokens = 0, samples = 0;  // over all micro-batches and ranks
  double step_time_s = 0;
  Json extra = Json::object();  // loss function metrics (rank 0's)
};

// A position in a data stream that can be saved and restored (JSON in trainer_state.json).
class DataCursor {
 public:
  virtual ~DataCursor() = default;
  virtual Json state() const = 0;
  // Restores a state() result. Throws mmb::Error if it does not fit this source.
  virtual void load_state(const Json& state) = 0;
};

// A stream of micro-batches of type Batch (this rank's shard in data-parallel runs).
template <typename Batch>
class BatchSource : public DataCursor {
 public:
  virtual Batch next() = 0;
};

// Length grouping (HF Trainer's group_by_length): each run of `megabatch` indices of an epoch's
// permutation is ordered longest first and cut into blocks of `batch`, whose order is then
// shuffled; a batch drawn from one block pads less than a batch of random lengths. Off when
// `megabatch` is 0 (or `lengths` empty).
struct LengthGrouping {
  std::vector<int64_t> lengths;  // one per dataset item (e.g. its tokens)
  int64_t megabatch = 0;         // indices sorted together: a multiple of `batch`
  int64_t batch = 0;             // the global batch
};

// An endless stream of indices into a dataset of `size` items: epoch after epoch, each a
// permutation determined by (seed, epoch) alone (own Fisher-Yates over std::mt19937_64, so the
// same on every platform and rank), optionally length-grouped. State: {"size", "seed",
// "shuffle", "epoch", "position", "megabatch"}.
class ShuffledIndices : public DataCursor {
 public:
  ShuffledIndices(int64_t size, uint64_t seed, bool shuffle = true, LengthGrouping grouping = {});
  std::vector<int64_t> next(int64_t count);
  int64_t epoch() const { return epoch_; }
  int64_t position() const { return position_; }
  Json state() const override;
  void load_state(const Json& state) override;

 private:
  void make_order();
  int64_t size_;
  uint64_t seed_;
  bool shuffle_;
  LengthGrouping grouping_;
  int64_t epoch_ = 0, position_ = 0;
  std::vector<int64_t> order_;
};

// Micro-batches of dataset indices for data parallelism: every rank draws the same global batch
// of `global_batch` indices and keeps its shard_range() slice.
class ShardedIndexBatches : public BatchSource<std::vector<int64_t>> {
 public:
  ShardedIndexBatches(int64_t dataset_size, int64_t global_batch, uint64_t seed, int rank = 0,
                      int world_size = 1, bool shuffle = true);
  // Length-grouped (LengthGrouping): `lengths` per item, `group` global batches sorted together
  // (0: not grouped).
  ShardedIndexBatches(std::vector<int64_t> lengths, int64_t group, int64_t global_batch, uint64_t seed,
                      int rank = 0, int world_size = 1);
  std::vector<int64_t> next() override;
  Json state() const override { return indices_.state(); }
  void load_state(const Json& state) override { indices_.load_state(state); }

 private:
  ShuffledIndices indices_;
  int64_t global_batch_;
  int rank_, world_size_;
};

class Trainer {
 public:
  // `module` and everything passed by pointer must outlive the trainer. `groups` come from
  // make_param_groups(module, ...). Throws mmb::Error on invalid options.
  Trainer(torch::nn::Module& module, std::vector<ParamGroup> groups, TrainOptions options);
  ~Trainer();

  // The data and the loss. Required before step()/train().
  template <typename Batch>
  void set_data(BatchSource<Batch>& source, std::function<LossOutput(Batch&)> loss_fn) {
    cursor_ = &source;
    micro_step_ = [&source, loss_fn]() {
      Batch batch = source.next();
      return loss_fn(batch);
    };
  }
  // Metrics (rank 0 writes metrics.jsonl there; nullptr = no metrics file).
  void set_run_dir(RunDir* run) { run_ = run; }
  // Data parallelism (nullptr or world 1 = single process).
  void set_distributed(Distributed* dist) { dist_ = dist; }
  // Called on every rank every eval_every steps and at the end; returns metrics logged (rank 0)
  // as "eval/<key>". Runs under NoGradGuard with the module in eval() mode.
  void set_eval(std::function<Json(int64_t step)> eval_fn) { eval_fn_ = std::move(eval_fn); }
  // Called (rank 0) with the temporary checkpoint directory before it is committed, to add files
  // (config.json, tokenizer.model); they are checksummed with the rest.
  void set_checkpoint_hook(std::function<void(const std::string& dir)> hook) { ckpt_hook_ = std::move(hook); }
  // Called after every step (all ranks).
  void set_step_callback(std::function<void(const StepStats&)> cb) { step_cb_ = std::move(cb); }

  // Resumes from the newest valid checkpoint under <out_dir>/checkpoints; corrupt or partial ones
  // are skipped with a warning naming them. Returns false (fresh start) when there is none.
  bool resume();
  // Resumes from this checkpoint directory; throws mmb::Error if it is incomplete or corrupt.
  void resume_from(const std::string& checkpoint_dir);

  // Runs steps until total_steps, with evaluation and checkpoints; returns the last step's stats.
  StepStats train();
  // One optimiser step (no eval, no checkpoint).
  StepStats step();
  // Writes <out_dir>/checkpoints/step-<step_count()> (rank 0; all ranks wait). Returns its path.
  std::string save_checkpoint();

  int64_t step_count() const { return step_; }
  torch::optim::AdamW& optimizer() { return *optimizer_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  const TrainOptions& options() const { return options_; }

 private:
  bool is_main() const;
  void log_step(const StepStats& s);
  void run_eval();
  void truncate_metrics_after(int64_t step);
  std::vector<torch::Tensor> trainable_params() const;

  torch::nn::Module& module_;
  std::vector<ParamGroup> groups_;
  TrainOptions options_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  DataCursor* cursor_ = nullptr;
  std::function<LossOutput()> micro_step_;
  RunDir* run_ = nullptr;
  Distributed* dist_ = nullptr;
  std::function<Json(int64_t)> eval_fn_;
  std::function<void(const std::string&)> ckpt_hook_;
  std::function<void(const StepStats&)> step_cb_;
  size_t base_group_ = 0;  // the group whose lr is reported as "lr"
  int64_t step_ = 0;
  int64_t tokens_seen_ = 0;
  bool resumed_ = false;
  std::unique_ptr<Progress> progress_;
};

// ---- checkpoint files (used by Trainer; public for tools and tests) ----

// Checks <dir>/trainer_state.json and every file it lists (size and FNV-1a-64 checksum) and
// returns the state. Throws mmb::Error naming the directory and the first problem.
Json validate_train_checkpoint(const std::string& dir);

// The newest valid step-* directory under `checkpoints_dir`, or "" if none. Invalid newer ones are
// reported through `skipped` (path and reason).
std::string find_latest_train_checkpoint(const std::string& checkpoints_dir,
                                         std::vector<std::string>* skipped = nullptr);

// FNV-1a 64-bit of a byte string, as 16 lowercase hex digits (checkpoint file checksums).
std::string fnv1a64_hex(std::string_view bytes);

}  // namespace mmb
