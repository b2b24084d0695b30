// Supervised training runs: VLM SFT (LLaVA's recipe, with the two-stage option) and CLIP
// contrastive training, on the Trainer loop (train.h). Both resume from <out>/checkpoints when
// a run directory already holds them, and write the final model to <out>/model.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mmb/data.h"
#include "mmb/model.h"
#include "mmb/train.h"

namespace mmb {

class RunDir;

// Mean cross-entropy over answer tokens (loss_mask), each predicted from the previous position.
LossOutput sft_loss(LlavaForConditionalGeneration& model, const SftBatch& batch);
// Symmetric InfoNCE (CLIP): mean of image->text and text->image cross-entropies of
// logits_per_image with the diagonal as targets; the temperature is learned (logit_scale,
// clamped to log(100) as CLIP). With hard negatives in the batch (ClipBatch::negative_of), the
// image->text side ranks each image's caption against every caption and negative of the batch.
// CLIP's auxiliary tag loss: a linear head scores every patch token of the tower at `layer`
// (CLS dropped; the layer the VLM will read), the patch scores are pooled (`pool`) into the
// image's, which predict the caption's tags (ClipBatch::tags) with
// binary cross-entropy, added with `weight`. Contrastive captions can be told apart by colour and
// position alone, so the tower learns little about shapes; naming which shapes and colours are in
// the image, as a supervised tagger does, makes it (docs/results/base-model.md, "The vision tower").
struct ClipTagLoss {
  torch::nn::Linear head{nullptr};  // (Cv -> K tags), trained with CLIP, not saved with the model
  int64_t layer = -2;
  double weight = 1.0;
  // How per-patch logits become image logits: "max" (multiple-instance learning: some patch
  // shows the tag; gradient reaches one patch per tag) or "mean" (every patch gets gradient;
  // as good at naming, and it leaves the contrastive loss much lower: docs/results/base-model.md).
  std::string pool = "max";
};
// With `tag` (and tags in the batch), loss = InfoNCE + weight * tag BCE.
LossOutput clip_loss(ClipModel& model, const ClipBatch& batch, const ClipTagLoss* tag = nullptr);

struct SftRunOptions {
  std::string model_dir;            // start: config.json + model.safetensors + tokenizer.model
  std::vector<std::string> data;    // LLaVA JSON / JSONL files
  std::vector<std::string> tasks;   // train on the samples with these "task"s only (empty: all)
  std::string task_repeat;          // "qa=3": each sample of a task that many times (repeat_tasks)
  std::string image_root;           // image paths are relative to it
  std::string out;                  // run directory: checkpoints/, model/
  std::string stage = "full";       // "align": projector only (LLaVA stage 1); "full": all but frozen
  bool freeze_vision = false;       // keep the vision tower fixed in "full"
  int64_t batch_size = 16;          // global batch (split across ranks)
  int64_t steps = 1000;             // optimiser steps
  double lr = 1e-3;                 // peak lr of the decoder
  double projector_lr = -1;         // < 0: = lr
  double vision_lr = -1;            // < 0: = lr
  double weight_decay = 0.0;
  double warmup_ratio = 0.03;
  double grad_clip = 1.0;
  int64_t grad_accum = 1;
  int64_t checkpoint_every = 200;
  int64_t max_length = 512;
  int64_t group_by_length = 0;      // > 0: batches drawn from this many batches' samples sorted by
                                    // length (LengthGrouping): less padding; 0 = random batches
  std::string loss_norm = "token";  // "token" | "turn": SftDataOptions::loss_norm
  uint64_t seed = 1234;
  std::string init_vision_from;     // CLIP model dir whose vision tower initialises the VLM's
};
StepStats run_sft(const SftRunOptions& options, RunDir* run);

struct ClipRunOptions {
  std::string model_dir;            // a CLIP directory (mmb model init --kind clip)
  std::string captions;             // captions.jsonl
  std::string image_root;
  std::string out;
  int64_t batch_size = 64;
  int64_t steps = 500;
  double lr = 1e-3;
  double weight_decay = 0.0;
  double warmup_ratio = 0.05;
  int64_t checkpoint_every = 200;
  int64_t max_tokens = 77;
  int hard_negatives = 0;           // per image: its caption with one shape or colour word swapped
                                    // (world_hard_negatives in mmb/data.h); 0 = plain InfoNCE
  double tag_loss = 0.0;            // weight of the tag loss on the world's shape and colour words
                                    // (ClipTagLoss, world_tag_words); 0 = off
  int64_t tag_layer = -2;           // tower layer the tag head reads (LLaVA's vision_feature_layer)
  std::string tag_pool = "max";     // ClipTagLoss::pool: "max" | "mean"
  uint64_t seed = 1234;
};
StepStats run_clip(const ClipRunOptions& options, RunDir* run);

// Copies a CLIP model's vision tower into the VLM's (vision configs must match).
void copy_vision_from_clip(LlavaForConditionalGeneration& model, const std::string& clip_dir);

}  // namespace mmb
