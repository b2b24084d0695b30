// Shared pieces of the VLM training runs (run_util.h).
#include "run_util.h"

#include <cmath>
#include <filesystem>

#include "mmb/atomic_file.h"
#include "mmb/checkpoint.h"
#include "mmb/error.h"
#include "mmb/progress.h"

namespace mmb {

void copy_side_files(const std::string& from_dir, const std::string& to_dir, const Json& config) {
  write_json_file(to_dir + "/config.json", config);
  write_file_atomic(to_dir + "/tokenizer.model", read_file(from_dir + "/tokenizer.model"));
  if (std::filesystem::exists(from_dir + "/chat_template.json"))
    write_file_atomic(to_dir + "/chat_template.json", read_file(from_dir + "/chat_template.json"));
}

TrainOptions base_train_options(const std::string& out, int64_t steps, double warmup_ratio, double grad_clip,
                                int64_t grad_accum, int64_t checkpoint_every, uint64_t seed) {
  TrainOptions t;
  t.out_dir = out;
  t.total_steps = steps;
  t.warmup_steps = int64_t(std::round(warmup_ratio * double(steps)));
  t.grad_clip = grad_clip;
  t.grad_accum = grad_accum;
  t.checkpoint_every = checkpoint_every;
  t.seed = seed;
  t.weight_by_tokens = true;
  return t;
}

void check_batch(const char* who, int64_t batch, const Distributed& dist) {
  const int64_t world = std::max(1, dist.world_size());
  if (batch < world || batch % world)
    fail(who, ": batch size ", batch, " must be a positive multiple of the world size ", world);
}

StepStats train_and_save(Trainer& trainer, RunDir* run, Distributed& dist, torch::nn::Module& model, const Json& config,
                         const std::string& model_dir, const std::string& out,
                         const std::function<void()>& before_save) {
  trainer.set_run_dir(run);
  if (dist.active()) trainer.set_distributed(&dist);
  trainer.set_checkpoint_hook([&](const std::string& dir) { copy_side_files(model_dir, dir, config); });
  if (trainer.resume()) log_info("resumed at step " + std::to_string(trainer.step_count()));
  StepStats last = trainer.train();
  if (before_save) before_save();
  if (dist.is_main()) {
    model.eval();
    save_model_dir(out + "/model", config, model);
    copy_side_files(model_dir, out + "/model", config);
  }
  return last;
}

std::vector<VlmAnswer> sample_rollouts(Vlm& sampler, torch::nn::Module& model, const std::vector<std::string>& prompts,
                                       const std::vector<const Image*>& images, int64_t k, SampleOptions options,
                                       uint64_t seed, int64_t step, int64_t first_index) {
  options.seed = seed * 1000003ULL + uint64_t(step) * 7919ULL + uint64_t(first_index);
  model.eval();
  std::vector<VlmAnswer> answers;
  {
    torch::NoGradGuard no_grad;
    answers = sampler.answer(prompts, images, options, k);  // each prompt prefilled once
  }
  model.train();
  return answers;
}

}  // namespace mmb
