// mmb train: sft | clip | dpo | base (the default recipe). Runs under the torchrun convention
// (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) for data-parallel training over c10d.
#include <iostream>

#include "commands.h"
#include "common.h"
#include "mmb/dpo.h"
#include "mmb/eval.h"
#include "mmb/jsonl.h"
#include "mmb/recipe.h"
#include "mmb/sft.h"

namespace mmb::app {
namespace {

struct SftCmd {
  CommonOptions common;
  SftRunOptions o;
};
struct ClipCmd {
  CommonOptions common;
  ClipRunOptions o;
};
struct DpoCmd {
  CommonOptions common;
  DpoRunOptions o;
};
struct BaseCmd {
  CommonOptions common;
  BaseRecipeOptions o;
  bool no_eval = false;  // skip the evaluation after training
};

void setup_train_sft(CLI::App& cmd) {
  auto c = std::make_shared<SftCmd>();
  auto& o = c->o;
  add_common_options(cmd, c->common, true);
  add_examples(cmd, "mmb train sft --model DIR --data world/train/llava.json --image-root world --out runs/sft\n");
  cmd.add_option("--model", o.model_dir, "Starting model directory")->required();
  cmd.add_option("--data", o.data, "LLaVA JSON / JSONL files")->required();
  cmd.add_option("--image-root", o.image_root, "Image paths are relative to this directory");
  cmd.add_option("--stage", o.stage, "align (projector only) | full")->group("Training");
  cmd.add_flag("--freeze-vision", o.freeze_vision, "Keep the vision tower fixed")->group("Training");
  cmd.add_option("--steps", o.steps, "Optimiser steps")->group("Training");
  cmd.add_option("--batch", o.batch_size, "Global batch size")->group("Training");
  cmd.add_option("--lr", o.lr, "Peak learning rate")->group("Training");
  cmd.add_option("--projector-lr", o.projector_lr, "Projector lr (<0: --lr)")->group("Training");
  cmd.add_option("--vision-lr", o.vision_lr, "Vision tower lr (<0: --lr)")->group("Training");
  cmd.add_option("--weight-decay", o.weight_decay, "Decoupled weight decay")->group("Training");
  cmd.add_option("--warmup-ratio", o.warmup_ratio, "Warmup steps / steps")->group("Training");
  cmd.add_option("--grad-clip", o.grad_clip, "Global gradient-norm clip")->group("Training");
  cmd.add_option("--grad-accum", o.grad_accum, "Micro-batches per step")->group("Training");
  cmd.add_option("--checkpoint-every", o.checkpoint_every, "Steps between checkpoints")->group("Training");
  cmd.add_option("--max-length", o.max_length, "Longest sample (tokens); longer ones are rejected")->group("Data");
  cmd.add_option("--group-by-length", o.group_by_length,
                 "Draw each batch from N batches' samples sorted by length: less padding (0: random batches)")
      ->check(CLI::NonNegativeNumber)
      ->group("Data");
  cmd.add_option("--loss-norm", o.loss_norm, "Average the loss over target tokens (token) or answers (turn)")
      ->group("Training")
      ->capture_default_str();
  cmd.add_option("--init-vision-from", o.init_vision_from, "CLIP model dir for the vision tower")->group("Data");
  cmd.add_option("--tasks", o.tasks, "Train on the samples whose \"task\" is one of these, e.g. qa,mc (default: all)")
      ->delimiter(',')
      ->group("Data");
  cmd.add_option("--task-repeat", o.task_repeat,
                 "Each sample of these tasks this many times per epoch, e.g. qa=3 (after --tasks)")
      ->group("Data");
  cmd.callback([&cmd, c] {
    apply_common_options(c->common);
    if (c->common.out.empty()) fail("mmb train sft: --out DIR is required");
    c->o.out = c->common.out;
    c->o.seed = c->common.seed;
    auto run = open_run_dir(cmd, c->common);
    print_step_stats(run_sft(c->o, run.get()));
    std::cout << "model: " << c->o.out << "/model\n";
    if (run) run->finish();
  });
}

void setup_train_dpo(CLI::App& cmd) {
  auto c = std::make_shared<DpoCmd>();
  auto& o = c->o;
  add_common_options(cmd, c->common, true);
  add_examples(cmd,
               "mmb train dpo --model runs/demo/sft/model --data pairs.jsonl --image-root runs/demo/world \\\n"
               "    --loss sigmoid --beta 0.1 --out runs/dpo\n");
  cmd.add_option("--model", o.model_dir, "Policy's starting model directory")->required();
  cmd.add_option("--ref-model", o.ref_model_dir, "Reference model directory (default: --model)");
  cmd.add_option("--data", o.data, "Preference pairs, TRL's JSONL (docs/dpo.md); not with --online")->group("Data");
  cmd.add_option("--image-root", o.image_root, "Image paths are relative to this directory")->group("Data");
  cmd.add_flag("--skip-bad", o.skip_bad, "Skip malformed lines (counted) instead of failing")->group("Data");
  cmd.add_option("--max-length", o.max_length, "Longest prompt + response (tokens); longer pairs are rejected")
      ->group("Data")
      ->capture_default_str();
  cmd.add_flag("--truncate-response", o.truncate_response, "Cut response ends to fit --max-length instead")
      ->group("Data");
  cmd.add_option("--ref-cache", o.ref_cache, "Reference log-probs file (default: OUT/ref_logps.json)")->group("Data");
  cmd.add_option("--eval-data", o.eval_data, "Held-out preference pairs, evaluated during training (eval/* metrics)")
      ->group("Data");
  cmd.add_option("--eval-every", o.eval_every, "Steps between held-out evaluations (0: at the end only)")
      ->group("Data")
      ->capture_default_str();
  add_dpo_options(cmd, o);
  cmd.add_option("--clip", o.clip_dir, "CLIP model directory of the clip and mix judges (e.g. models/base/clip)")
      ->group("Online DPO");
  cmd.add_option("--world", o.world_dir, "World directory: its description prompts and their truth")
      ->group("Online DPO");
  cmd.callback([&cmd, c] {
    apply_common_options(c->common);
    if (c->common.out.empty()) fail("mmb train dpo: --out DIR is required");
    c->o.out = c->common.out;
    c->o.seed = c->common.seed;
    auto run = open_run_dir(cmd, c->common);
    DpoReferenceInfo ref;
    print_step_stats(run_dpo(c->o, run.get(), &ref));
    if (!c->o.online) std::cout << "reference: " << (ref.cached ? "cached " : "computed ") << ref.path << "\n";
    std::cout << "model: " << c->o.out << "/model\n";
    if (run) run->finish();
  });
}

void setup_train_clip(CLI::App& cmd) {
  auto c = std::make_shared<ClipCmd>();
  auto& o = c->o;
  add_common_options(cmd, c->common, true);
  add_examples(cmd,
               "mmb train clip --model DIR --captions world/train/captions.jsonl --image-root world --out runs/clip\n");
  cmd.add_option("--model", o.model_dir, "Starting CLIP directory (mmb model init --kind clip)")->required();
  cmd.add_option("--captions", o.captions, "captions.jsonl ({image, caption})")->required();
  cmd.add_option("--image-root", o.image_root, "Image paths are relative to this directory");
  cmd.add_option("--steps", o.steps, "Optimiser steps")->group("Training");
  cmd.add_option("--batch", o.batch_size, "Batch size (negatives per image = batch - 1)")->group("Training");
  cmd.add_option("--lr", o.lr, "Peak learning rate")->group("Training");
  cmd.add_option("--hard-negatives", o.hard_negatives,
                 "Per image, its caption with a shape or colour swapped (NegCLIP)")
      ->group("Training")
      ->capture_default_str();
  cmd.add_option("--tag-loss", o.tag_loss,
                 "Weight of the auxiliary tag loss: the tower names the caption's shapes and colours (0 = off)")
      ->group("Training")
      ->capture_default_str();
  cmd.add_option("--tag-layer", o.tag_layer, "Tower layer the tag head reads (the VLM's vision_feature_layer)")
      ->group("Training")->capture_default_str();
  cmd.add_option("--tag-pool", o.tag_pool, "How per-patch tag logits pool into the image's: max | mean")
      ->group("Training")->capture_default_str();
  cmd.add_option("--checkpoint-every", o.checkpoint_every, "Steps between checkpoints")->group("Training");
  cmd.callback([&cmd, c] {
    apply_common_options(c->common);
    if (c->common.out.empty()) fail("mmb train clip: --out DIR is required");
    c->o.out = c->common.out;
    c->o.seed = c->common.seed;
    auto run = open_run_dir(cmd, c->common);
    print_step_stats(run_clip(c->o, run.get()));
    if (run) run->finish();
  });
}

void setup_train_base(CLI::App& cmd) {
  auto c = std::make_shared<BaseCmd>();
  auto& o = c->o;
  add_common_options(cmd, c->common, true);
  add_examples(cmd, "mmb train base --config configs/base.toml --out runs/base\n");
  cmd.add_option("--train-scenes", o.train_scenes, "World: training scenes")->group("World");
  cmd.add_option("--val-scenes", o.val_scenes, "World: validation scenes")->group("World");
  cmd.add_option("--test-scenes", o.test_scenes, "World: test scenes")->group("World");
  cmd.add_option("--shifted-scenes", o.shifted_scenes, "World: shifted (OOD) scenes")->group("World");
  cmd.add_option("--sft-idk-fraction", o.sft_idk_fraction, "Share of 'I don't know' answers in SFT data")
      ->group("World");
  cmd.add_option("--qa-turns", o.qa_turns, "Question-answer turns per SFT conversation")->group("World");
  cmd.add_option("--sft-hint-fraction", o.sft_hint_fraction,
                 "Share of SFT turns asked with the hint \"If you are not sure, say I don't know.\"")
      ->group("World");
  cmd.add_option("--sft-hint-idk-fraction", o.sft_hint_idk_fraction,
                 "Share of the hinted SFT turns that are unanswerable")
      ->group("World")
      ->capture_default_str();
  cmd.add_option("--mc-per-scene", o.mc_per_scene, "Multiple-choice questions per scene")
      ->group("World")
      ->capture_default_str();
  cmd.add_option("--reasoning-per-scene", o.reasoning_per_scene, "Reasoning chains per scene")
      ->group("World")
      ->capture_default_str();
  cmd.add_option("--sft-qa-weights", o.sft_qa_weights,
                 "Mix of the answerable SFT turns, e.g. existence=9 (mmb world generate --help)")
      ->group("World");
  cmd.add_option("--sft-balanced-negatives", o.sft_balanced_negatives,
                 "Share of SFT presence questions whose absent shape is drawn so that every shape is answered yes as "
                 "often as no (0: uniformly)")
      ->group("World");
  cmd.add_option("--sft-balanced-positives", o.sft_balanced_positives,
                 "Share of SFT \"yes\" presence questions whose present object is drawn with weight 1/f, f its shape's "
                 "frequency (0: uniformly)")
      ->group("World");
  cmd.add_option("--vocab-size", o.vocab_size, "Tokenizer pieces")->group("Tokenizer");
  cmd.add_option("--clip-steps", o.clip_steps, "CLIP steps")->group("CLIP");
  cmd.add_option("--clip-batch", o.clip_batch, "CLIP batch")->group("CLIP");
  cmd.add_option("--clip-lr", o.clip_lr, "CLIP lr")->group("CLIP");
  cmd.add_option("--clip-hard-negatives", o.clip_hard_negatives, "CLIP hard-negative captions per image")
      ->group("CLIP");
  cmd.add_option("--clip-tag-loss", o.clip_tag_loss, "CLIP tag-loss weight (the tower names shapes and colours)")
      ->group("CLIP");
  cmd.add_option("--clip-tag-pool", o.clip_tag_pool, "CLIP tag pooling over patches: max | mean")->group("CLIP");
  cmd.add_flag("--sft-freeze-vision,!--sft-train-vision", o.sft_freeze_vision,
               "Keep the CLIP vision tower fixed in SFT (LLaVA-1.5)")
      ->group("VLM");
  cmd.add_option("--sft-projector-lr", o.sft_projector_lr, "VLM SFT lr of the projector (<0: --sft-lr)")->group("VLM");
  cmd.add_option("--sft-vision-lr", o.sft_vision_lr,
                 "VLM SFT lr of the vision tower with --sft-train-vision (<0: --sft-lr)")
      ->group("VLM");
  cmd.add_option("--sft-steps", o.sft_steps, "VLM SFT steps")->group("VLM");
  cmd.add_option("--sft-batch", o.sft_batch, "VLM SFT batch")->group("VLM");
  cmd.add_option("--sft-lr", o.sft_lr, "VLM SFT lr")->group("VLM");
  cmd.add_option("--sft-loss-norm", o.sft_loss_norm, "VLM SFT loss averaged per token or per turn (answer)")
      ->group("VLM");
  cmd.add_option("--sft-group-by-length", o.sft_group_by_length,
                 "VLM SFT (both stages): each batch from N batches' samples sorted by length (0: random batches)")
      ->check(CLI::NonNegativeNumber)
      ->group("VLM");
  cmd.add_option("--sft-curriculum-steps", o.sft_curriculum_steps,
                 "VLM SFT steps on --sft-curriculum-tasks only before --sft-steps on every task (0: one stage)")
      ->check(CLI::NonNegativeNumber)
      ->group("VLM");
  cmd.add_option("--sft-curriculum-batch", o.sft_curriculum_batch,
                 "VLM SFT batch of the curriculum stage (0: --sft-batch)")
      ->check(CLI::NonNegativeNumber)
      ->group("VLM");
  cmd.add_option("--sft-curriculum-tasks", o.sft_curriculum_tasks,
                 "Tasks of the curriculum stage (the world's qa, mc, ...)")
      ->delimiter(',')
      ->capture_default_str()
      ->group("VLM");
  cmd.add_option("--sft-task-repeat", o.sft_task_repeat,
                 "In the sft stage (every task), each sample of these tasks this many times, e.g. qa=3")
      ->group("VLM");
  cmd.add_option("--hidden", o.vlm.text.hidden_size, "Decoder hidden size")->group("VLM");
  cmd.add_option("--layers", o.vlm.text.num_hidden_layers, "Decoder layers")->group("VLM");
  cmd.add_option("--heads", o.vlm.text.num_attention_heads, "Decoder heads")->group("VLM");
  cmd.add_option("--kv-heads", o.vlm.text.num_key_value_heads, "Decoder key/value heads")->group("VLM");
  cmd.add_option("--mlp", o.vlm.text.intermediate_size, "Decoder MLP size")->group("VLM");
  cmd.add_option("--initializer-range", o.vlm.text.initializer_range,
                 "Std of the normal init of the decoder, its embeddings and the projector (HF: 0.02)")
      ->check(CLI::PositiveNumber)
      ->group("VLM");
  cmd.add_flag("--tie-word-embeddings,!--untie-word-embeddings", o.vlm.text.tie_word_embeddings,
               "Decoder: the LM head shares the input embeddings")
      ->group("VLM");
  cmd.add_option("--vision-hidden", o.vlm.vision.hidden_size, "Vision hidden size")->group("VLM");
  cmd.add_option("--vision-layers", o.vlm.vision.num_hidden_layers, "Vision layers")->group("VLM");
  cmd.add_option("--vision-mlp", o.vlm.vision.intermediate_size, "Vision MLP size")->group("VLM");
  cmd.add_option("--patch-size", o.vlm.vision.patch_size, "Vision patch side (px): (64/patch)^2 image tokens")
      ->group("VLM");
  cmd.add_option("--vision-stem", o.vlm.vision.stem_channels,
                 "Convolutional stem channels before the patch embedding, e.g. 32,64 (none: HF CLIP)")
      ->delimiter(',')
      ->group("VLM");
  cmd.add_option("--checkpoint-every", o.checkpoint_every, "Steps between checkpoints")->group("VLM");
  cmd.add_flag("--no-eval", c->no_eval, "Skip the evaluation (mmb eval) after training");
  cmd.callback([&cmd, c] {
    apply_common_options(c->common);
    if (c->common.out.empty()) fail("mmb train base: --out DIR is required");
    c->o.out = c->common.out;
    c->o.seed = c->common.seed;
    auto run = open_run_dir(cmd, c->common);
    if (!c->no_eval)
      c->o.evaluate = [out = c->o.out](const std::string& model_dir, const std::string& world_dir) {
        // The base model as trained: temperatures 1 (not the model's calibration.json, which a
        // later `mmb calibrate` may write; `mmb eval` uses that).
        Vlm vlm = Vlm::load(model_dir);
        EvalOptions eo;
        eo.keep_samples = true;
        Json r = run_eval(vlm, world_dir, eo);
        JsonlWriter samples(out + "/samples.jsonl");  // every question, answer and verdict (for mmb report)
        for (const auto& s : r["samples"]) samples.write(s);
        samples.close();
        r.erase("samples");
        write_json_file(out + "/results.json", r);
        std::cout << format_eval_headline(r) << std::flush;
        return r;
      };
    Json r = run_base_recipe(c->o, run.get());
    if (run) {
      run->set_result("recipe", r);
      run->finish();
    }
    Json summary = r;
    summary.erase("quality");  // the headline table above says it; results.json has all of it
    std::cout << summary.dump(2) << "\n";
  });
}

}  // namespace

void setup_train(CLI::App& cmd) {
  cmd.require_subcommand(1);
  setup_train_sft(*cmd.add_subcommand("sft", "Supervised fine-tuning of the VLM on LLaVA-format conversations"));
  setup_train_clip(*cmd.add_subcommand("clip", "Contrastive CLIP training on image-caption pairs"));
  setup_train_dpo(*cmd.add_subcommand("dpo", "Preference optimisation (DPO, cDPO, robust, hinge, IPO) on TRL pairs"));
  setup_train_rl(*cmd.add_subcommand("rl", "RL for step confidence (GRPO with MMBoundary's rewards)"));
  setup_train_base(*cmd.add_subcommand("base", "The default recipe: world -> tokenizer -> CLIP -> VLM"));
}

}  // namespace mmb::app
