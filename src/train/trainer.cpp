// The training loop: micro-batches with gradient accumulation, cross-rank gradient averaging,
// global-norm clipping, AdamW with warmup + cosine lr, metrics, evaluation and checkpoints.
// Checkpoint writing and resuming live in train_checkpoint.cpp.
#include <chrono>
#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>

#include "mmb/distributed.h"
#include "mmb/error.h"
#include "mmb/progress.h"
#include "mmb/run_dir.h"
#include "mmb/train.h"

namespace mmb {

Trainer::Trainer(torch::nn::Module& module, std::vector<ParamGroup> groups, TrainOptions options)
    : module_(module), groups_(std::move(groups)), options_(std::move(options)) {
  const char* fn = "Trainer";
  const auto& o = options_;
  if (o.total_steps <= 0) fail(fn, ": total_steps must be > 0, got ", o.total_steps);
  if (o.grad_accum < 1) fail(fn, ": grad_accum must be >= 1, got ", o.grad_accum);
  if (o.warmup_steps < 0) fail(fn, ": warmup_steps must be >= 0, got ", o.warmup_steps);
  if (!(o.min_lr_ratio >= 0 && o.min_lr_ratio <= 1)) fail(fn, ": min_lr_ratio must be in [0, 1], got ", o.min_lr_ratio);
  if (!(o.grad_clip >= 0)) fail(fn, ": grad_clip must be >= 0, got ", o.grad_clip);
  if (o.log_every < 1) fail(fn, ": log_every must be >= 1, got ", o.log_every);
  if (o.eval_every < 0 || o.checkpoint_every < 0 || o.keep_last_checkpoints < 0)
    fail(fn, ": eval_every, checkpoint_every and keep_last_checkpoints must be >= 0");
  if (o.out_dir.empty()) fail(fn, ": out_dir is required (checkpoints go to <out_dir>/checkpoints)");
  if (groups_.empty()) fail(fn, ": no parameter groups");
  for (const auto& g : groups_)
    for (const auto& np : g.params)
      if (!np.param.requires_grad())
        fail(fn, ": parameter '", np.name, "' of group '", g.name, "' does not require grad");
  for (size_t g = 0; g < groups_.size(); ++g)
    if (groups_[g].name == "default") base_group_ = g;
  optimizer_ = make_adamw(groups_, o.beta1, o.beta2, o.eps);
}

Trainer::~Trainer() = default;

bool Trainer::is_main() const { return !dist_ || dist_->is_main(); }

std::vector<torch::Tensor> Trainer::trainable_params() const {
  std::vector<torch::Tensor> out;
  for (const auto& g : groups_)
    for (const auto& np : g.params) out.push_back(np.param);
  return out;
}

StepStats Trainer::step() {
  const char* fn = "Trainer::step";
  if (!micro_step_) fail(fn, ": no data; call set_data() first");
  const auto t0 = std::chrono::steady_clock::now();
  const double factor = cosine_lr_factor(step_, options_.warmup_steps, options_.total_steps, options_.min_lr_ratio);
  set_lr_factor(*optimizer_, groups_, factor);
  auto params = trainable_params();
  for (auto& p : params) p.mutable_grad() = torch::Tensor();  // set to none

  // Per micro-batch: backward of w * loss; w = 1 or the micro-batch's token count.
  double loss_w_sum = 0, w_sum = 0, tokens = 0, samples = 0;
  Json extra_sum = Json::object();
  for (int64_t k = 0; k < options_.grad_accum; ++k) {
    LossOutput out = micro_step_();
    if (!out.loss.defined() || out.loss.numel() != 1)
      fail(fn, ": the loss function must return a scalar loss (step ", step_ + 1, ")");
    if (!out.loss.requires_grad())
      fail(fn, ": the loss does not require grad (step ", step_ + 1, "); is everything frozen?");
    const double w = !options_.weight_by_tokens ? 1.0 : out.weight >= 0 ? out.weight : double(out.tokens);
    if (options_.weight_by_tokens && !(w > 0))
      fail(fn, ": weight_by_tokens needs LossOutput::tokens (or weight) > 0, got ", w, " (step ", step_ + 1, ")");
    (w == 1.0 ? out.loss : out.loss * w).backward();
    const double loss = out.loss.item<double>();
    if (!std::isfinite(loss)) fail(fn, ": non-finite loss ", loss, " at step ", step_ + 1, ", micro-batch ", k);
    loss_w_sum += loss * w;
    w_sum += w;
    tokens += double(out.tokens);
    samples += double(out.samples);
    for (auto it = out.metrics.begin(); it != out.metrics.end(); ++it)
      if (it.value().is_number())
        extra_sum[it.key()] = extra_sum.value(it.key(), 0.0) + it.value().get<double>() * w;
  }
  Json extra = Json::object();
  for (auto it = extra_sum.begin(); it != extra_sum.end(); ++it) extra[it.key()] = it.value().get<double>() / w_sum;

  // Sums over ranks, then gradients averaged by the global weight.
  torch::Tensor totals = torch::tensor({loss_w_sum, w_sum, tokens, samples}, torch::kFloat64);
  if (dist_ && dist_->active()) dist_->allreduce_sum(totals);
  auto tot = totals.accessor<double, 1>();
  if (dist_) {
    dist_->allreduce_gradients(params, tot[1]);
  } else if (tot[1] != 1.0) {
    torch::NoGradGuard no_grad;
    for (auto& p : params)
      if (p.grad().defined()) p.grad().div_(tot[1]);
  }
  const double max_norm = options_.grad_clip > 0 ? options_.grad_clip : std::numeric_limits<double>::infinity();
  const double grad_norm = torch::nn::utils::clip_grad_norm_(params, max_norm);
  if (!std::isfinite(grad_norm))
    fail(fn, ": non-finite gradient norm at step ", step_ + 1, " (loss ", tot[0] / tot[1], ")");
  optimizer_->step();
  ++step_;
  tokens_seen_ += int64_t(tot[2]);

  StepStats s;
  s.step = step_;
  s.loss = tot[0] / tot[1];
  s.lr = groups_[base_group_].lr * factor;
  s.grad_norm = grad_norm;
  s.tokens = int64_t(tot[2]);
  s.samples = int64_t(tot[3]);
  s.step_time_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  s.extra = std::move(extra);
  log_step(s);
  if (step_cb_) step_cb_(s);
  return s;
}

void Trainer::log_step(const StepStats& s) {
  if (!is_main()) return;
  if (progress_) {
    std::ostringstream note;
    note << "loss " << std::fixed << std::setprecision(4) << s.loss << " lr " << std::scientific
         << std::setprecision(2) << s.lr << " |g| " << std::fixed << std::setprecision(3) << s.grad_norm;
    progress_->set_note(note.str());
    progress_->set(s.step);
  }
  if (!run_ || (s.step % options_.log_every != 0 && s.step != options_.total_steps)) return;
  const double dt = s.step_time_s > 0 ? s.step_time_s : 1e-9;
  Json rec = {{"step", s.step},         {"loss", s.loss},
              {"lr", s.lr},             {"grad_norm", s.grad_norm},
              {"tokens", s.tokens},     {"tokens_per_s", double(s.tokens) / dt},
              {"samples", s.samples},   {"samples_per_s", double(s.samples) / dt},
              {"step_time_s", s.step_time_s}};
  if (groups_.size() > 1) {
    const double base = groups_[base_group_].lr;
    const double factor = base > 0 ? s.lr / base : 0.0;
    for (const auto& g : groups_)
      if (g.name.find("/no_decay") == std::string::npos) rec["lr/" + g.name] = g.lr * factor;
  }
  for (auto it = s.extra.begin(); it != s.extra.end(); ++it)
    rec[rec.contains(it.key()) ? "extra/" + it.key() : it.key()] = it.value();
  run_->log_metrics(std::move(rec));
}

void Trainer::run_eval() {
  if (!eval_fn_) return;
  const bool was_training = module_.is_training();
  module_.eval();
  Json result;
  {
    torch::NoGradGuard no_grad;
    result = eval_fn_(step_);
  }
  module_.train(was_training);
  if (!is_main() || !result.is_object()) return;
  Json rec = {{"step", step_}};
  std::ostringstream line;
  line << "eval at step " << step_ << ":";
  for (auto it = result.begin(); it != result.end(); ++it) {
    rec["eval/" + it.key()] = it.value();
    line << " " << it.key() << " " << it.value().dump();
  }
  if (run_) run_->log_metrics(std::move(rec));
  log_info(line.str());
}

StepStats Trainer::train() {
  if (!micro_step_) fail("Trainer::train: no data; call set_data() first");
  if (step_ == 0 && !resumed_) torch::manual_seed(options_.seed);
  if (dist_) dist_->broadcast_module(module_, 0);
  if (is_main() && options_.progress) {
    progress_ = std::make_unique<Progress>("train", options_.total_steps, "steps");
    progress_->set(step_);
  }
  StepStats last;
  last.step = step_;
  int64_t saved_at = resumed_ ? step_ : -1;
  while (step_ < options_.total_steps) {
    last = step();
    const bool at_end = step_ == options_.total_steps;
    if ((options_.eval_every > 0 && step_ % options_.eval_every == 0) || at_end) run_eval();
    if ((options_.checkpoint_every > 0 && step_ % options_.checkpoint_every == 0) || at_end) {
      save_checkpoint();
      saved_at = step_;
    }
  }
  if (saved_at != step_) save_checkpoint();
  if (progress_) {
    progress_->done();
    progress_.reset();
  }
  return last;
}

}  // namespace mmb
