// GRPO with MMBoundary's rewards (include/mmb/rl.h; SPEC.md §1.5).
#include "mmb/rl.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "mmb/chat_template.h"
#include "mmb/checkpoint.h"
#include "mmb/data.h"
#include "mmb/distributed.h"
#include "mmb/elicitation.h"
#include "mmb/error.h"
#include "mmb/optim.h"
#include "mmb/progress.h"
#include "mmb/run_dir.h"
#include "mmb/vlm.h"
#include "mmb/world.h"
#include "run_util.h"

namespace mmb {
namespace {

// Prompt + response + EOS of every row, right-padded; `target` marks the response tokens.
struct RolloutBatch {
  torch::Tensor input_ids, attention_mask, target;  // (R, T)
};

RolloutBatch collate_rollouts(const Tokenizer& tok, const ChatTemplate& tmpl, const LlavaConfig& cfg,
                              const std::vector<std::string>& questions, const std::vector<std::vector<int64_t>>& responses) {
  std::vector<std::vector<int32_t>> rows;
  std::vector<size_t> begin;
  size_t T = 0;
  for (size_t i = 0; i < responses.size(); ++i) {
    auto prompt = expand_image_tokens(tokenize_prompt(tok, tmpl, {{questions[i], ""}}, true), tok.image_id(),
                                      cfg.image_seq_length());
    begin.push_back(prompt.size());
    for (int64_t t : responses[i]) prompt.push_back(int32_t(t));
    if (responses[i].empty() || responses[i].back() != tok.eos_id()) prompt.push_back(tok.eos_id());
    T = std::max(T, prompt.size());
    rows.push_back(std::move(prompt));
  }
  const int64_t R = int64_t(rows.size());
  auto ids = torch::full({R, int64_t(T)}, cfg.text.pad_token_id, torch::kLong);
  auto mask = torch::zeros({R, int64_t(T)}, torch::kLong);
  auto target = torch::zeros({R, int64_t(T)}, torch::kBool);
  auto ia = ids.accessor<int64_t, 2>();
  auto ma = mask.accessor<int64_t, 2>();
  auto ta = target.accessor<bool, 2>();
  for (int64_t r = 0; r < R; ++r)
    for (size_t t = 0; t < rows[size_t(r)].size(); ++t) {
      ia[r][int64_t(t)] = rows[size_t(r)][t];
      ma[r][int64_t(t)] = 1;
      ta[r][int64_t(t)] = t >= begin[size_t(r)];
    }
  return {ids, mask, target};
}

// Log-prob of each token given the ones before it: (R, T - 1), entry t for token t + 1.
torch::Tensor token_logps(LlavaForConditionalGeneration& model, const RolloutBatch& b, const torch::Tensor& pixels) {
  auto logits = model->forward({b.input_ids, b.attention_mask, pixels, {}});  // (R, T, V)
  const int64_t T = logits.size(1);
  auto lp = torch::log_softmax(logits.narrow(1, 0, T - 1).to(torch::kFloat32), -1);
  return lp.gather(2, b.input_ids.narrow(1, 1, T - 1).unsqueeze(2)).squeeze(2);  // (R, T-1)
}

}  // namespace

std::vector<float> group_advantages(const std::vector<double>& rewards, int64_t G) {
  if (G < 1 || rewards.empty() || rewards.size() % size_t(G) != 0)
    fail("group_advantages: ", rewards.size(), " rewards do not form groups of ", G);
  std::vector<float> adv(rewards.size());
  for (size_t b = 0; b < rewards.size(); b += size_t(G)) {
    double mean = 0, var = 0;
    for (int64_t k = 0; k < G; ++k) mean += rewards[b + size_t(k)];
    mean /= double(G);
    for (int64_t k = 0; k < G; ++k) var += (rewards[b + size_t(k)] - mean) * (rewards[b + size_t(k)] - mean);
    const double sd = std::sqrt(var / double(G));
    for (int64_t k = 0; k < G; ++k) adv[b + size_t(k)] = float((rewards[b + size_t(k)] - mean) / (sd + 1e-4));
  }
  return adv;
}

GrpoLoss grpo_loss(const torch::Tensor& logp, const torch::Tensor& old_logp, const torch::Tensor& ref_logp,
                   const torch::Tensor& mask, const torch::Tensor& advantages, double eps, double beta) {
  const auto A = advantages.to(logp.dtype()).unsqueeze(1);  // (R, 1)
  const auto ratio = torch::exp(logp - old_logp);
  const auto pg = -torch::min(ratio * A, torch::clamp(ratio, 1 - eps, 1 + eps) * A);
  const auto d = ref_logp - logp;
  const auto kl = torch::exp(d) - d - 1;
  const auto per_row = ((pg + beta * kl) * mask).sum(1) / mask.sum(1).clamp_min(1.0);  // (R,)
  GrpoLoss out;
  out.loss = per_row.mean();
  const double n = std::max(1.0, mask.sum().item<double>());
  out.kl = (kl.detach() * mask).sum().item<double>() / n;
  out.clip_fraction = (((ratio.detach() - 1).abs() > eps).to(mask.dtype()) * mask).sum().item<double>() / n;
  return out;
}

StepStats run_rl(const RlRunOptions& o, RunDir* run) {
  if (o.algo != "grpo") fail("run_rl: algo \"", o.algo, "\" is not available (grpo; the paper's PPO is not implemented)");
  if (o.group_size < 2) fail("run_rl: group_size must be >= 2 (advantages are relative to the group), got ", o.group_size);
  if (o.out.empty()) fail("run_rl: no output directory");
  if (o.kl_beta < 0 || o.clip_epsilon <= 0) fail("run_rl: kl_beta must be >= 0 and clip_epsilon > 0");
  boundary_reward({}, o.reward);  // checks the reward options
  Distributed dist(dist_env_from_environment());
  torch::manual_seed(o.seed);
  auto model = load_llava(o.model_dir);
  if (dist.active()) dist.broadcast_module(*model);
  model->train();
  auto ref = load_llava(o.model_dir);
  ref->eval();
  TokenizerOptions topts;
  topts.image_id = int32_t(model->config().image_token_index);
  const Tokenizer tok = Tokenizer::load(o.model_dir + "/tokenizer.model", topts);
  const ChatTemplate tmpl = chat_template_for(o.model_dir);
  Vlm sampler(model, Tokenizer::load(o.model_dir + "/tokenizer.model", topts), tmpl);  // shares the policy's weights
  ClipScorer clip = ClipScorer::load(o.clip_dir);
  const ConfidenceEstimator estimator = ConfidenceEstimator::load(o.confidence);
  const ConfidencePhrases& phrases = ConfidencePhrases::builtin();
  const auto questions = read_boundary_questions(o.world_dir, o.split, o.tasks, -1);
  const BoundaryJudge judge(o.world_dir);
  const int64_t image_size = model->config().vision.image_size;
  log_info("rl: grpo on " + std::to_string(questions.size()) + " questions, " + std::to_string(o.group_size) +
           " samples each");

  ParamGroupOptions popts;
  popts.lr = o.lr;
  popts.weight_decay = o.weight_decay;
  if (o.freeze_vision) popts.frozen_prefixes.push_back("vision_tower.");
  check_batch("run_rl", o.batch_size, dist);
  Trainer trainer(*model, make_param_groups(*model, popts),
                  base_train_options(o.out, o.steps, o.warmup_ratio, o.grad_clip, o.grad_accum, o.checkpoint_every,
                                     o.seed));
  ShardedIndexBatches batches(int64_t(questions.size()), o.batch_size, o.seed, dist.rank(), dist.world_size());
  int64_t rollout_tokens = 0;
  double rollout_seconds = 0;
  trainer.set_data<std::vector<int64_t>>(batches, [&](std::vector<int64_t>& idx) {
    const int64_t G = o.group_size;
    // 1. G samples per prompt from the current policy (eval mode, no gradients).
    std::vector<Image> images;
    std::vector<torch::Tensor> pix_u8;
    for (int64_t i : idx) {
      images.push_back(read_image(o.world_dir + "/" + questions[size_t(i)].image));
      pix_u8.push_back(load_image_u8(o.world_dir + "/" + questions[size_t(i)].image, image_size));
    }
    std::vector<std::string> prompts, qs;
    std::vector<const Image*> ims;
    for (size_t b = 0; b < idx.size(); ++b) {
      prompts.push_back(questions[size_t(idx[b])].question);
      ims.push_back(&images[b]);
      for (int64_t k = 0; k < G; ++k) qs.push_back(prompts.back());
    }
    SampleOptions so;
    so.temperature = o.temperature;
    so.top_p = o.top_p;
    so.stop = sampler.default_stop(o.max_new_tokens);
    const auto t0 = std::chrono::steady_clock::now();
    const auto answers =
        sample_rollouts(sampler, *model, prompts, ims, G, so, o.seed, trainer.step_count(), idx.front());
    // 2. Rewards: step truth, stated confidence, the internal level from the policy's own signals.
    const size_t N = answers.size();
    std::vector<BoundaryReward> rewards(N);
    std::vector<bool> correct(N, false), abstained(N, false);
    double entropy = 0;
    int64_t tokens = 0, stating = 0, steps_total = 0;
    for (size_t r = 0; r < N; ++r) {
      const BoundaryQuestion& q = questions[size_t(idx[r / size_t(G)])];
      const auto& a = answers[r];
      for (float h : a.generation.entropies) entropy += h;
      tokens += int64_t(a.generation.tokens.size());
      if (!q.canonical.empty()) {
        const auto check = judge.verifier().check_answer(a.text, q.canonical);
        correct[r] = check.truth == world::Truth::kTrue;
        abstained[r] = check.is_idk;
      }
    }
    rollout_tokens += tokens;
    std::vector<std::vector<StepOutcome>> outcomes(N);
    for (size_t r = 0; r < N; ++r) {
      const BoundaryQuestion& q = questions[size_t(idx[r / size_t(G)])];
      const auto& a = answers[r];
      const auto pixels = image_to_pixel_values(images[r / size_t(G)], clip.image_size()).unsqueeze(0);
      const auto sig = response_signals(tok, clip, pixels, a.generation.tokens, a.generation.logprobs,
                                        a.generation.entropies);
      for (size_t s = 0; s < sig.steps.size(); ++s) {
        StepOutcome out;
        out.correct = judge.step_truth(q.image, sig.steps[s].text, q.canonical) == world::Truth::kTrue;
        const auto stated = parse_verbal_confidence(sig.steps[s].text);
        if (stated.found) {
          out.stated = stated.value;
          ++stating;
        }
        out.internal = phrases.at(estimator.level(estimator.fuse(sig.signals[s]))).confidence;
        outcomes[r].push_back(out);
        ++steps_total;
      }
    }
    for (size_t b = 0; b < idx.size(); ++b) {
      bool any_correct = false;
      for (int64_t k = 0; k < G; ++k) any_correct = any_correct || correct[b * size_t(G) + size_t(k)];
      for (int64_t k = 0; k < G; ++k) {
        const size_t r = b * size_t(G) + size_t(k);
        rewards[r] = boundary_reward(outcomes[r], o.reward, abstained[r], !any_correct,
                                     questions[size_t(idx[b])].reference_steps);
      }
    }
    rollout_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // 3. Group-normalised advantages.
    std::vector<double> totals;
    for (const auto& r : rewards) totals.push_back(r.total);
    const std::vector<float> adv = group_advantages(totals, G);
    double reward_sum = 0, reward_std = 0;
    for (size_t b = 0; b < idx.size(); ++b) {
      double mean = 0, var = 0;
      for (int64_t k = 0; k < G; ++k) mean += totals[b * size_t(G) + size_t(k)] / double(G);
      for (int64_t k = 0; k < G; ++k) var += std::pow(totals[b * size_t(G) + size_t(k)] - mean, 2) / double(G);
      reward_std += std::sqrt(var);
      reward_sum += mean * double(G);
    }
    // 4. The clipped policy-gradient loss with the KL penalty, one pass with gradients.
    std::vector<std::vector<int64_t>> responses;
    for (const auto& a : answers) responses.push_back(a.generation.tokens);
    const RolloutBatch batch = collate_rollouts(tok, tmpl, model->config(), qs, responses);
    std::vector<torch::Tensor> rows_pix;
    for (size_t r = 0; r < N; ++r) rows_pix.push_back(pix_u8[r / size_t(G)]);
    const auto pixels = normalise_u8(torch::stack(rows_pix));
    const auto lp = token_logps(model, batch, pixels);  // (R, T-1)
    torch::Tensor ref_lp;
    {
      torch::NoGradGuard no_grad;
      ref_lp = token_logps(ref, batch, pixels);
    }
    const auto m = batch.target.narrow(1, 1, lp.size(1)).to(torch::kFloat32);  // (R, T-1)
    const GrpoLoss g = grpo_loss(lp, lp.detach(), ref_lp, m, torch::tensor(adv), o.clip_epsilon, o.kl_beta);
    LossOutput out;
    out.loss = g.loss;
    out.weight = double(N);
    out.samples = int64_t(idx.size());
    out.tokens = tokens;
    double ka = 0, ec = 0, cs = 0, idk = 0, acc = 0;
    for (size_t r = 0; r < N; ++r) {
      ka += rewards[r].knowledge;
      ec += rewards[r].calibration;
      cs += rewards[r].self;
      idk += rewards[r].idk;
      acc += correct[r];
    }
    const double n = double(N);
    out.metrics["reward"] = reward_sum / n;
    out.metrics["reward_std"] = reward_std / double(idx.size());
    out.metrics["rewards/knowledge"] = ka / n;
    out.metrics["rewards/calibration"] = ec / n;
    out.metrics["rewards/self_calibration"] = cs / n;
    out.metrics["rewards/idk"] = idk / n;
    out.metrics["answer_accuracy"] = acc / n;
    out.metrics["stated_share"] = steps_total ? double(stating) / double(steps_total) : 0.0;
    out.metrics["mean_steps"] = double(steps_total) / n;
    out.metrics["kl"] = g.kl;
    out.metrics["entropy"] = tokens ? entropy / double(tokens) : 0.0;
    out.metrics["clip_fraction"] = g.clip_fraction;
    out.metrics["rollout_tokens_per_s"] = double(rollout_tokens) / std::max(1e-9, rollout_seconds);
    return out;
  });
  StepStats last = train_and_save(trainer, run, dist, *model, to_json(model->config()), o.model_dir, o.out);
  if (run) run->set_result("rl", {{"rollout_tokens_per_s", double(rollout_tokens) / std::max(1e-9, rollout_seconds)}});
  return last;
}

}  // namespace mmb
