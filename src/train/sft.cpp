// VLM SFT (LLaVA-1.5, Liu et al. 2023): cross-entropy on assistant tokens only; stage "align"
// trains the projector alone (LLaVA's feature alignment), stage "full" everything not frozen,
// with optional per-part learning rates. CLIP training: symmetric InfoNCE with a learned
// temperature (Radford et al. 2021).
#include "mmb/sft.h"

#include <cmath>
#include <functional>
#include <fstream>

#include "mmb/atomic_file.h"
#include "mmb/checkpoint.h"
#include "mmb/distributed.h"
#include "mmb/error.h"
#include "mmb/progress.h"
#include "mmb/run_dir.h"
#include "mmb/safetensors.h"
#include "mmb/vlm.h"
#include "run_util.h"

namespace mmb {

LossOutput sft_loss(LlavaForConditionalGeneration& model, const SftBatch& b) {
  auto hidden = model->forward_hidden({b.input_ids, b.attention_mask, b.pixel_values});  // (B, T, C)
  const int64_t T = b.input_ids.size(1), C = hidden.size(2);
  // Position t predicts token t+1; only the targets' positions get logits (the LM head and the
  // cross-entropy over a fifth of a QA batch's positions, not all: the same loss and gradient).
  auto is_target = b.loss_mask.narrow(1, 1, T - 1).reshape({-1});                // (B*(T-1),) bool
  auto rows = is_target.nonzero().view({-1});                                    // (N,)
  auto h = hidden.narrow(1, 0, T - 1).reshape({-1, C}).index_select(0, rows);     // (N, C)
  auto target = b.input_ids.narrow(1, 1, T - 1).reshape({-1}).index_select(0, rows);  // (N,)
  // The weight of each target (SftDataOptions::loss_norm); a batch without weights is per token.
  const int64_t n_targets = rows.size(0);
  auto w = b.loss_weight.defined() ? b.loss_weight.narrow(1, 1, T - 1).reshape({-1}).index_select(0, rows)
                                   : torch::ones({n_targets}, hidden.options());   // (N,)
  auto pred = model->logits(h);                                                  // (N, V)
  auto nll = torch::nn::functional::cross_entropy(
      pred, target, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));  // (N,)
  const double n = std::max<double>(1.0, double(n_targets));
  const double wsum = b.loss_weight.defined() ? std::max(1e-12, w.sum().item<double>()) : n;
  LossOutput out;
  out.loss = (nll * w).sum() / wsum;
  out.tokens = n_targets;
  out.weight = wsum;  // micro-batches (and ranks) weigh by their targets' total weight
  out.samples = b.input_ids.size(0);
  {
    torch::NoGradGuard ng;
    out.metrics["token_accuracy"] = (pred.argmax(-1) == target).sum().item<double>() / n;
  }
  return out;
}

LossOutput clip_loss(ClipModel& model, const ClipBatch& b, const ClipTagLoss* tag) {
  {
    torch::NoGradGuard ng;
    model->logit_scale().clamp_(0.0, std::log(100.0));
  }
  const int64_t B = b.pixel_values.size(0);
  const int64_t N = b.negative_of.defined() ? b.negative_of.numel() : 0;
  if (b.input_ids.size(0) != B + N)
    fail("clip_loss: ", b.input_ids.size(0), " captions for ", B, " images and ", N, " hard negatives");
  const bool tagged = tag && tag->weight > 0 && b.tags.defined();
  torch::Tensor img, tag_logits;
  if (tagged) {
    auto [e, h] = model->image_embeds_and_hidden(b.pixel_values, tag->layer);  // (B, E), (B, P, Cv)
    img = e;
    // Per-patch tag logits pooled over patches: max (multiple-instance learning: a tag is in the
    // image if some patch shows it) or mean.
    auto per_patch = torch::nn::functional::linear(h.narrow(1, 1, h.size(1) - 1), tag->head->weight,
                                                   tag->head->bias);     // (B, P-1, K)
    if (tag->pool == "max") tag_logits = std::get<0>(per_patch.max(1));  // (B, K)
    else if (tag->pool == "mean") tag_logits = per_patch.mean(1);
    else fail("clip_loss: tag pooling must be 'max' or 'mean', got '", tag->pool, "'");
    if (tag_logits.sizes() != b.tags.sizes())
      fail("clip_loss: the tag head predicts ", tag_logits.sizes(), " but the batch has tags ", b.tags.sizes());
  } else {
    img = model->image_embeds(b.pixel_values);                                  // (B, E)
  }
  auto txt = model->text_embeds(b.input_ids, b.attention_mask);   // (B + N, E)
  auto logits = model->logits_per_image(img, txt);                // (B, B + N)
  auto labels = torch::arange(B, torch::kLong);
  // Image -> text over every caption, hard negatives included (NegCLIP); text -> image over the
  // B true captions only (a negative describes no image of the batch).
  auto li = torch::nn::functional::cross_entropy(logits, labels);
  auto lt = torch::nn::functional::cross_entropy(logits.narrow(1, 0, B).t(), labels);
  LossOutput out;
  out.loss = 0.5 * (li + lt);
  out.samples = B;
  out.tokens = b.attention_mask.sum().item<int64_t>();
  if (tagged) {
    auto bce = torch::nn::functional::binary_cross_entropy_with_logits(tag_logits, b.tags);
    out.metrics["contrastive_loss"] = out.loss.item<double>();
    out.metrics["tag_loss"] = bce.item<double>();
    out.loss = out.loss + tag->weight * bce;
    torch::NoGradGuard ng;
    auto right = (tag_logits > 0).to(torch::kFloat32) == b.tags;  // (B, K)
    out.metrics["tag_accuracy"] = right.to(torch::kFloat32).mean().item<double>();
    out.metrics["tag_exact"] = right.all(1).to(torch::kFloat32).mean().item<double>();  // every tag of the image right
  }
  torch::NoGradGuard ng;
  out.metrics["i2t_accuracy"] = (logits.argmax(1) == labels).to(torch::kFloat32).mean().item<double>();
  out.metrics["temperature"] = 1.0 / model->logit_scale().exp().item<double>();
  if (N > 0) {
    // Share of hard negatives scored below their image's true caption.
    auto own = logits.diagonal().index_select(0, b.negative_of);                               // (N,)
    auto neg = logits.narrow(1, B, N).gather(0, b.negative_of.view({1, N})).squeeze(0);      // (N,)
    out.metrics["hard_negative_accuracy"] = (own > neg).to(torch::kFloat32).mean().item<double>();
  }
  return out;
}

void copy_vision_from_clip(LlavaForConditionalGeneration& model, const std::string& clip_dir) {
  ClipModel clip = load_clip(clip_dir);
  const auto& a = clip->config().vision;
  const auto& b = model->config().vision;
  if (a.hidden_size != b.hidden_size || a.num_hidden_layers != b.num_hidden_layers ||
      a.image_size != b.image_size || a.patch_size != b.patch_size || a.intermediate_size != b.intermediate_size ||
      a.num_attention_heads != b.num_attention_heads || a.stem_channels != b.stem_channels)
    fail("copy_vision_from_clip: ", clip_dir, "'s vision tower does not match the VLM's vision config");
  torch::NoGradGuard ng;
  auto dst = model->vision_model()->named_parameters();
  for (const auto& p : clip->vision_model()->named_parameters()) dst[p.key()].copy_(p.value());
}

namespace {

constexpr const char* kTagHeadName = "mmb_tag_head";

}  // namespace

StepStats run_sft(const SftRunOptions& o, RunDir* run) {
  if (o.data.empty()) fail("run_sft: no data files");
  if (o.out.empty()) fail("run_sft: no output directory");
  if (o.stage != "align" && o.stage != "full") fail("run_sft: stage must be 'align' or 'full', got '", o.stage, "'");
  Distributed dist(dist_env_from_environment());
  torch::manual_seed(o.seed);
  auto model = load_llava(o.model_dir);
  if (!o.init_vision_from.empty()) copy_vision_from_clip(model, o.init_vision_from);
  if (dist.active()) dist.broadcast_module(*model);
  model->train();
  TokenizerOptions topts;
  topts.image_id = int32_t(model->config().image_token_index);
  Tokenizer tok = Tokenizer::load(o.model_dir + "/tokenizer.model", topts);

  std::vector<ConversationSample> samples;
  for (const auto& f : o.data) {
    auto part = read_conversations(f);
    samples.insert(samples.end(), part.begin(), part.end());
  }
  const size_t read = samples.size();
  samples = filter_tasks(std::move(samples), o.tasks, "run_sft: --tasks");
  if (samples.size() < read)
    log_info("sft data: " + std::to_string(samples.size()) + " of " + std::to_string(read) +
             " samples have the tasks asked for");
  if (!o.task_repeat.empty()) {
    const size_t before = samples.size();
    samples = repeat_tasks(std::move(samples), parse_task_repeat(o.task_repeat, "run_sft: --task-repeat"),
                           "run_sft: --task-repeat");
    log_info("sft data: " + std::to_string(samples.size()) + " samples after --task-repeat " +
             o.task_repeat + " (" + std::to_string(before) + " before)");
  }
  SftDataOptions dopts;
  dopts.max_length = std::min<int64_t>(o.max_length, model->config().text.max_position_embeddings);
  dopts.loss_norm = o.loss_norm;
  const ChatTemplate tmpl = chat_template_for(o.model_dir);
  SftDataset data(samples, o.image_root, tok, tmpl, model->config(), dopts);
  const auto& rep = data.report();
  log_info("sft data: " + std::to_string(rep.used) + " of " + std::to_string(rep.samples) + " samples, " +
           std::to_string(rep.images) + " images, " + std::to_string(rep.rejected_too_long) + " rejected as too long");
  if (run) {
    run->set_result("data", {{"samples", rep.samples},
                             {"used", rep.used},
                             {"images", rep.images},
                             {"rejected_too_long", rep.rejected_too_long},
                             {"rejected_examples", rep.rejected_examples}});
  }

  ParamGroupOptions popts;
  popts.lr = o.lr;
  popts.weight_decay = o.weight_decay;
  if (o.stage == "align") {
    popts.frozen_prefixes = {"vision_tower.", "language_model."};
  } else {
    if (o.freeze_vision) popts.frozen_prefixes.push_back("vision_tower.");
    if (o.projector_lr > 0) popts.groups.push_back({"projector", {"multi_modal_projector."}, o.projector_lr, -1});
    if (o.vision_lr > 0 && !o.freeze_vision) popts.groups.push_back({"vision", {"vision_tower."}, o.vision_lr, -1});
  }
  auto groups = make_param_groups(*model, popts);
  check_batch("run_sft", o.batch_size, dist);
  TrainOptions topt = base_train_options(o.out, o.steps, o.warmup_ratio, o.grad_clip, o.grad_accum,
                                         o.checkpoint_every, o.seed);
  Trainer trainer(*model, groups, topt);
  ShardedIndexBatches batches(data.lengths(), o.group_by_length, o.batch_size, o.seed, dist.rank(), dist.world_size());
  trainer.set_data<std::vector<int64_t>>(batches,
                                         [&](std::vector<int64_t>& idx) { return sft_loss(model, data.batch(idx)); });
  return train_and_save(trainer, run, dist, *model, to_json(model->config()), o.model_dir, o.out);
}

StepStats run_clip(const ClipRunOptions& o, RunDir* run) {
  if (o.out.empty()) fail("run_clip: no output directory");
  Distributed dist(dist_env_from_environment());
  if (o.tag_loss < 0) fail("run_clip: tag loss weight must be >= 0, got ", o.tag_loss);
  torch::manual_seed(o.seed);
  auto model = load_clip(o.model_dir);
  const std::vector<std::string> tag_words = o.tag_loss > 0 ? world_tag_words() : std::vector<std::string>{};
  ClipTagLoss tag{nullptr, o.tag_layer, o.tag_loss, o.tag_pool};
  if (o.tag_pool != "max" && o.tag_pool != "mean")
    fail("run_clip: --tag-pool must be 'max' or 'mean', got '", o.tag_pool, "'");
  if (o.tag_loss > 0) {
    // Registered on the model so that checkpoints (and an exact resume) carry it; dropped
    // before the model is saved, which stays a plain CLIP.
    const int64_t L = model->config().vision.num_hidden_layers;
    if (o.tag_layer < -L - 1 || o.tag_layer > L)
      fail("run_clip: tag layer ", o.tag_layer, " outside -", L + 1, "..", L);
    tag.head = model->register_module(
        kTagHeadName, torch::nn::Linear(model->config().vision.hidden_size, int64_t(tag_words.size())));
  }
  if (dist.active()) dist.broadcast_module(*model);
  model->train();
  Tokenizer tok = Tokenizer::load(o.model_dir + "/tokenizer.model");
  CaptionDataset data(o.captions, o.image_root, tok, model->config().vision.image_size,
                      std::min(o.max_tokens, model->config().text.max_position_embeddings),
                      world_hard_negatives(o.hard_negatives), tag_words);
  log_info("clip data: " + std::to_string(data.size()) + " image-caption pairs, " + std::to_string(data.truncated()) +
           " captions truncated to " + std::to_string(o.max_tokens) + " tokens");
  if (run) run->set_result("data", {{"pairs", data.size()}, {"truncated", data.truncated()}});
  ParamGroupOptions popts;
  popts.lr = o.lr;
  popts.weight_decay = o.weight_decay;
  auto groups = make_param_groups(*model, popts);
  check_batch("run_clip", o.batch_size, dist);
  TrainOptions topt = base_train_options(o.out, o.steps, o.warmup_ratio, 1.0, 1, o.checkpoint_every, o.seed);
  topt.weight_by_tokens = false;
  Trainer trainer(*model, groups, topt);
  ShardedIndexBatches batches(data.size(), o.batch_size, o.seed, dist.rank(), dist.world_size());
  const ClipTagLoss* tag_ptr = o.tag_loss > 0 ? &tag : nullptr;
  trainer.set_data<std::vector<int64_t>>(
      batches, [&](std::vector<int64_t>& idx) { return clip_loss(model, data.batch(idx), tag_ptr); });
  return train_and_save(trainer, run, dist, *model, to_json(model->config()), o.model_dir, o.out, [&] {
    if (o.tag_loss > 0) model->unregister_module(kTagHeadName);
  });
}

}  // namespace mmb
