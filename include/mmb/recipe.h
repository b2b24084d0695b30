// The default recipe (`mmb train base`, configs/base.toml): world -> tokenizer -> CLIP -> VLM,
// all in one run directory:
//   <out>/world      the generated world (images, truth, tasks)
//   <out>/tokenizer  SentencePiece model trained on the world's text and the chat template
//   <out>/clip       CLIP trained on the world's captions (run dir, model/)
//   <out>/sft_curriculum  the VLM's first SFT stage on the curriculum's tasks (when configured)
//   <out>/sft        the VLM: vision tower from CLIP, SFT on the world's conversations (model/)
//   <out>/manifest.json, metrics.jsonl (one "phase" line per phase with its wall time)
// Each phase stores a fingerprint of its resolved settings and of the phase before it
// (<dir>/phase_fingerprint.json). A phase is skipped when its output exists with the same
// fingerprint, so a killed recipe resumes (training phases from their own checkpoints); a phase
// whose settings changed is re-run, and so is every phase after it (the log says which settings
// changed; the old directory is kept as <dir>.replaced).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mmb/json.h"
#include "mmb/model_config.h"

namespace mmb {

class RunDir;

struct BaseRecipeOptions {
  std::string out;                  // run directory
  uint64_t seed = 1234;
  // world
  int64_t train_scenes = 20000, val_scenes = 1000, test_scenes = 2000, shifted_scenes = 2000;
  double sft_idk_fraction = 0.05;   // share of unanswerable questions answered "I don't know" in SFT data
  std::string sft_qa_weights;       // mix of the answerable SFT turns, "existence=9" (world::parse_qa_weights)
  double sft_balanced_negatives = 0;  // share of presence questions whose absent shape is drawn so
                                      // that each shape gets "yes" as often as "no" (WorldConfig)
  double sft_balanced_positives = 0;  // share of "yes" presence questions asking about a present
                                      // object with weight 1 / f: rare shapes' looks (WorldConfig)
  int qa_turns = 6;                 // question-answer turns per SFT conversation
  double sft_hint_fraction = 0;     // share of SFT turns asked with the IDK hint (WorldConfig)
  double sft_hint_idk_fraction = 0.2;  // share of the hinted turns that are unanswerable
  int mc_per_scene = 1;                // multiple-choice questions per scene (SFT conversations and mc.jsonl)
  int reasoning_per_scene = 1;         // reasoning chains per scene
  // tokenizer
  int64_t vocab_size = 600;
  // CLIP
  int64_t clip_steps = 300, clip_batch = 128;
  double clip_lr = 1e-3;
  int clip_hard_negatives = 2;      // per image (NegCLIP): makes the tower see shapes, not only colours
  double clip_tag_loss = 3.0;       // weight of the tag loss (ClipTagLoss): the tower names the shapes and colours
  std::string clip_tag_pool = "max";  // ClipTagLoss::pool
  // VLM
  LlavaConfig vlm;                  // sizes (defaults: the world model)
  int64_t sft_steps = 1200, sft_batch = 32;
  double sft_lr = 2e-3;
  std::string sft_loss_norm = "token";  // SftRunOptions::loss_norm
  int64_t sft_group_by_length = 0;  // SftRunOptions::group_by_length, both stages
  // Curriculum: first this many SFT steps on the samples of these tasks only (the world's "qa":
  // short answers, presence questions among them), then sft_steps on every task; 0 = one stage
  int64_t sft_curriculum_steps = 0;
  std::vector<std::string> sft_curriculum_tasks{"qa"};
  int64_t sft_curriculum_batch = 0;  // the curriculum's batch (0: sft_batch)
  std::string sft_task_repeat;      // the sft stage (every task) sees these tasks this many times,
                                    // "qa=3" (repeat_tasks): the curriculum's lookup is kept
  double sft_projector_lr = -1;     // peak lr of the projector (< 0: sft_lr)
  double sft_vision_lr = -1;        // with the tower trained (!sft_freeze_vision): its peak lr (< 0: sft_lr)
  bool sft_freeze_vision = true;    // LLaVA-1.5: the vision tower stays as CLIP trained it
  int64_t checkpoint_every = 200;
  // evaluation after training (may be empty); returns the quality numbers to report
  std::function<Json(const std::string& model_dir, const std::string& world_dir)> evaluate;
};

// Runs (or resumes) every phase; returns {"phases": {name: seconds}, "quality": evaluate(...)}.
// The recipe's CLIP: `vision` (the VLM's tower) with a 2-layer, 128-wide text tower over the
// tokenizer's `vocab_size` ids, pooled at the first `eos_id`; projection 128.
ClipConfig base_clip_config(const ClipVisionConfig& vision, int64_t vocab_size, int64_t eos_id);

Json run_base_recipe(const BaseRecipeOptions& options, RunDir* run);

}  // namespace mmb
