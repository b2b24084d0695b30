// mmb train rl: GRPO with MMBoundary's rewards from the SFT warm-up model (docs/boundary.md).
#include <iostream>

#include "commands.h"
#include "common.h"
#include "mmb/error.h"
#include "mmb/rl.h"

namespace mmb::app {
namespace {

struct RlCmd {
  CommonOptions common;
  RlRunOptions o;
};

}  // namespace

void setup_train_rl(CLI::App& cmd) {
  auto c = std::make_shared<RlCmd>();
  auto& o = c->o;
  add_common_options(cmd, c->common, true);
  add_examples(cmd,
               "mmb train rl --model runs/boundary/sft/model --clip models/base/clip --confidence "
               "runs/boundary/confidence.json --world runs/world --out runs/boundary/rl\n"
               "mmb train rl ... --ec-form brier --delta 0.2   # the proper-scoring reward; the IDK term\n");
  cmd.add_option("--model", o.model_dir, "Policy's start and KL reference (the SFT warm-up model)")->required();
  cmd.add_option("--clip", o.clip_dir, "CLIP model directory (TokenSAR, CLIPScore)")->required();
  cmd.add_option("--confidence", o.confidence, "confidence.json (mmb boundary fit): the internal levels")->required();
  cmd.add_option("--world", o.world_dir, "World directory: questions and their truth")->required();
  const char* d = "Data";
  cmd.add_option("--split", o.split, "World split of the prompts")->group(d)->capture_default_str();
  cmd.add_option("--tasks", o.tasks, "reasoning, description")->delimiter(',')->group(d)->capture_default_str();
  const char* r = "Reward (SPEC: alpha = beta = gamma = 1/3)";
  cmd.add_option("--alpha", o.reward.alpha, "Weight of R_KA (step accuracy)")->group(r)->capture_default_str();
  cmd.add_option("--beta", o.reward.beta, "Weight of R_EC (stated confidence vs truth)")->group(r)->capture_default_str();
  cmd.add_option("--gamma", o.reward.gamma, "Weight of R_CS (stated vs internal level)")->group(r)->capture_default_str();
  cmd.add_option("--ka-form", o.reward.ka_form,
                 "reference (true steps / max(steps, reference steps)) | steps (mean over the response's steps)")
      ->group(r)
      ->capture_default_str();
  cmd.add_option("--ec-form", o.reward.ec_form, "absolute (the paper) | brier (a proper scoring rule)")
      ->group(r)
      ->capture_default_str();
  cmd.add_option("--delta", o.reward.delta, "Weight of the \"I don't know\" term (0 = the paper)")
      ->group(r)
      ->capture_default_str();
  const char* s = "Sampling and loss";
  cmd.add_option("--algo", o.algo, "grpo")->group(s)->capture_default_str();
  cmd.add_option("--group-size", o.group_size, "Responses G per prompt (>= 2)")->group(s)->capture_default_str();
  cmd.add_option("--temperature", o.temperature, "Sampling temperature")->group(s)->capture_default_str();
  cmd.add_option("--top-p", o.top_p, "Nucleus sampling mass")->group(s)->capture_default_str();
  cmd.add_option("--max-new-tokens", o.max_new_tokens, "Longest response")->group(s)->capture_default_str();
  cmd.add_option("--kl-beta", o.kl_beta, "Weight of the per-token KL to the start")->group(s)->capture_default_str();
  cmd.add_option("--clip-epsilon", o.clip_epsilon, "Ratio clip")->group(s)->capture_default_str();
  const char* t = "Training";
  cmd.add_option("--steps", o.steps, "Optimiser steps")->group(t)->capture_default_str();
  cmd.add_option("--batch", o.batch_size, "Prompts per global batch")->group(t)->capture_default_str();
  cmd.add_option("--lr", o.lr, "Peak learning rate")->group(t)->capture_default_str();
  cmd.add_option("--weight-decay", o.weight_decay, "Decoupled weight decay")->group(t)->capture_default_str();
  cmd.add_option("--warmup-ratio", o.warmup_ratio, "Warmup steps / steps")->group(t)->capture_default_str();
  cmd.add_option("--grad-clip", o.grad_clip, "Global gradient-norm clip")->group(t)->capture_default_str();
  cmd.add_option("--grad-accum", o.grad_accum, "Micro-batches per step")->group(t)->capture_default_str();
  cmd.add_option("--checkpoint-every", o.checkpoint_every, "Steps between checkpoints")->group(t)->capture_default_str();
  cmd.add_flag("--freeze-vision,!--train-vision", o.freeze_vision, "Keep the vision tower fixed (default)")->group(t);
  cmd.callback([&cmd, c] {
    apply_common_options(c->common);
    if (c->common.out.empty()) fail("mmb train rl: --out DIR is required");
    c->o.out = c->common.out;
    c->o.seed = c->common.seed;
    auto run = open_run_dir(cmd, c->common);
    print_step_stats(run_rl(c->o, run.get()));
    std::cout << "model: " << c->o.out << "/model\n";
    if (run) run->finish();
  });
}

}  // namespace mmb::app
