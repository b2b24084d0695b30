// The default recipe: world -> tokenizer -> CLIP -> VLM SFT, resumable phase by phase.
#include "mmb/recipe.h"

#include <chrono>
#include <filesystem>

#include "mmb/atomic_file.h"
#include "mmb/chat_template.h"
#include "mmb/checkpoint.h"
#include "mmb/data.h"
#include "mmb/error.h"
#include "mmb/fingerprint.h"
#include "mmb/json.h"
#include "mmb/phase.h"
#include "mmb/progress.h"
#include "mmb/run_dir.h"
#include "mmb/sft.h"
#include "mmb/tokenizer.h"
#include "mmb/vlm.h"
#include "mmb/world_tasks.h"

namespace mmb {
namespace {

// Vicuna v1's format with a short system message: the world model pays fewer tokens per sample.
ChatTemplate world_template() {
  ChatTemplate t = ChatTemplate::vicuna_v1();
  t.system = "A chat about a picture.";
  return t;
}

}  // namespace

ClipConfig base_clip_config(const ClipVisionConfig& vision, int64_t vocab_size, int64_t eos_id) {
  ClipConfig cc;
  cc.vision = vision;
  cc.text.vocab_size = vocab_size;
  cc.text.eos_token_id = eos_id;
  cc.text.pooling = "first_eos";
  cc.text.hidden_size = 128;
  cc.text.intermediate_size = 512;
  cc.text.num_hidden_layers = 2;
  cc.text.max_position_embeddings = 96;
  cc.projection_dim = 128;
  return cc;
}

Json run_base_recipe(const BaseRecipeOptions& o, RunDir* run) {
  if (o.out.empty()) fail("run_base_recipe: no output directory");
  const world::QaWeights qa_weights = world::parse_qa_weights(o.sft_qa_weights);  // fail early
  check_loss_norm(o.sft_loss_norm, "run_base_recipe: sft");
  parse_task_repeat(o.sft_task_repeat, "run_base_recipe: sft-task-repeat");  // fail early
  make_dirs(o.out);
  const std::string world = o.out + "/world", tokdir = o.out + "/tokenizer", clip = o.out + "/clip",
                    curriculum = o.out + "/sft_curriculum", sft = o.out + "/sft";
  if (o.sft_curriculum_steps < 0) fail("run_base_recipe: sft curriculum steps must be >= 0");
  Json times = Json::object();

  world::WorldConfig wc;
  {
    wc.train_scenes = o.train_scenes;
    wc.val_scenes = o.val_scenes;
    wc.test_scenes = o.test_scenes;
    wc.shifted_scenes = o.shifted_scenes;
    wc.sft_idk_fraction = o.sft_idk_fraction;
    wc.sft_qa_weights = qa_weights;
    wc.sft_balanced_negatives = o.sft_balanced_negatives;
    wc.sft_balanced_positives = o.sft_balanced_positives;
    wc.qa_turns_per_scene = o.qa_turns;
    wc.sft_hint_fraction = o.sft_hint_fraction;
    wc.sft_hint_idk_fraction = o.sft_hint_idk_fraction;
    wc.mc_per_scene = o.mc_per_scene;
    wc.reasoning_per_scene = o.reasoning_per_scene;
  }
  // Each phase's fingerprint: its settings and the phase before it.
  const auto after = chained_fingerprint;
  Fingerprint world_fp;
  world_fp.add("world", Json{{"seed", o.seed}, {"config", world::config_to_json(wc)}});
  run_phase("world", world, world + "/world.json", world_fp, run, times,
        [&] { world::generate_world(wc, o.seed, world, true); });

  const Fingerprint tok_fp = after(world_fp, "tokenizer", Json{{"vocab_size", o.vocab_size}});
  run_phase("tokenizer", tokdir, tokdir + "/tokenizer.model", tok_fp, run, times, [&] {
    TokenizerTrainOptions t;
    t.corpus_files = {world + "/train/llava.json"};
    // The template's role markers are one piece each: at 600 pieces (256 of them bytes) BPE has
    // merges for the world's words only, and "ASSISTANT:" would cost 10 tokens every turn.
    const ChatTemplate tmpl = world_template();
    t.symbols = {tmpl.user_role + ":", tmpl.assistant_role + ":"};
    // The template line 2000 times: too few against the world's text to merge the system prompt's
    // words (it stays 14 pieces); kept because the recipe's measured numbers come from this corpus
    // (docs/results/base-model.md).
    t.lines = {render_chat(tmpl, {{"question", "answer"}}, false)};
    for (int i = 0; i < 2000; ++i) t.lines.push_back(t.lines.front());
    t.vocab_size = int32_t(o.vocab_size);
    t.output_prefix = tokdir + "/tokenizer";
    make_dirs(tokdir);
    train_tokenizer(t);
  });
  TokenizerOptions topts;
  Tokenizer tok = Tokenizer::load(tokdir + "/tokenizer.model", topts);

  auto init_dir = [&](const std::string& dir, const Json& config, torch::nn::Module& m, double std) {
    init_weights(m, o.seed, std);
    save_model_dir(dir, config, m);
    write_file_atomic(dir + "/tokenizer.model", read_file(tokdir + "/tokenizer.model"));
    write_chat_template(dir, world_template());
  };

  const ClipConfig clip_config = base_clip_config(o.vlm.vision, tok.num_ids(), tok.eos_id());
  const Fingerprint clip_fp = after(tok_fp, "clip",
                                    Json{{"model", to_json(clip_config)},
                                         {"steps", o.clip_steps},
                                         {"batch", o.clip_batch},
                                         {"lr", o.clip_lr},
                                         {"hard_negatives", o.clip_hard_negatives},
                                         {"tag_loss", o.clip_tag_loss},
                                         {"tag_layer", o.vlm.vision_feature_layer},
                                         {"tag_pool", o.clip_tag_pool},
                                         {"seed", o.seed}});
  run_phase("clip", clip, clip + "/model/model.safetensors", clip_fp, run, times, [&] {
    const ClipConfig& cc = clip_config;
    if (!std::filesystem::exists(clip + "/init/config.json")) {
      ClipModel m(cc);
      init_dir(clip + "/init", to_json(cc), *m, 0.02);
    }
    ClipRunOptions c;
    c.model_dir = clip + "/init";
    c.captions = world + "/train/captions.jsonl";
    c.image_root = world;
    c.out = clip;
    c.steps = o.clip_steps;
    c.batch_size = o.clip_batch;
    c.lr = o.clip_lr;
    c.hard_negatives = o.clip_hard_negatives;
    c.tag_loss = o.clip_tag_loss;
    c.tag_layer = o.vlm.vision_feature_layer;
    c.tag_pool = o.clip_tag_pool;
    c.max_tokens = cc.text.max_position_embeddings;
    c.checkpoint_every = o.checkpoint_every;
    c.seed = o.seed;
    RunInfo info;
    info.argv = {"mmb train base: clip phase"};
    info.seed = o.seed;
    RunDir sub(clip, info);  // the phase's own manifest.json and metrics.jsonl
    run_clip(c, &sub);
    sub.finish();
  });

  // The VLM starts at sft/init (its tower from CLIP); with a curriculum, the first stage trains it
  // on the curriculum's tasks only and the second (every task) starts from that stage's model.
  auto sft_options = [&](const std::string& model_dir, const std::string& init_vision_from,
                         const std::string& out, int64_t steps) {
    SftRunOptions s;
    s.model_dir = model_dir;
    s.init_vision_from = init_vision_from;
    s.data = {world + "/train/llava.json"};
    s.image_root = world;
    s.out = out;
    s.steps = steps;
    s.batch_size = o.sft_batch;
    s.lr = o.sft_lr;
    s.freeze_vision = o.sft_freeze_vision;
    s.loss_norm = o.sft_loss_norm;
    s.group_by_length = o.sft_group_by_length;
    s.projector_lr = o.sft_projector_lr;
    s.vision_lr = o.sft_vision_lr;
    s.checkpoint_every = o.checkpoint_every;
    s.seed = o.seed;
    return s;
  };
  auto run_sft_phase = [&](const SftRunOptions& s, const std::string& name) {
    RunInfo info;
    info.argv = {"mmb train base: " + name + " phase"};
    info.seed = o.seed;
    RunDir sub(s.out, info);  // the phase's own manifest.json and metrics.jsonl
    run_sft(s, &sub);
    sub.finish();
  };
  // The VLM's initial weights live in the first VLM phase's directory (<dir>/init), so they are
  // made again whenever that phase is re-run.
  const LlavaConfig vlm_config = with_token_ids(o.vlm, tok);
  auto make_init = [&](const std::string& dir) {
    if (std::filesystem::exists(dir + "/init/config.json")) return;
    LlavaForConditionalGeneration m(vlm_config);
    init_dir(dir + "/init", to_json(vlm_config), *m, vlm_config.text.initializer_range);
  };
  auto sft_settings = [&](const SftRunOptions& s) {
    return Json{{"model", to_json(vlm_config)},
                {"tasks", s.tasks},
                {"task_repeat", s.task_repeat},
                {"steps", s.steps},
                {"batch", s.batch_size},
                {"lr", s.lr},
                {"projector_lr", s.projector_lr},
                {"vision_lr", s.vision_lr},
                {"freeze_vision", s.freeze_vision},
                {"loss_norm", s.loss_norm},
                {"group_by_length", s.group_by_length},
                {"seed", s.seed}};
  };
  const bool staged = o.sft_curriculum_steps > 0;
  Fingerprint vlm_fp = clip_fp;
  if (staged) {
    SftRunOptions s = sft_options(curriculum + "/init", clip + "/model", curriculum, o.sft_curriculum_steps);
    s.tasks = o.sft_curriculum_tasks;
    if (o.sft_curriculum_batch > 0) s.batch_size = o.sft_curriculum_batch;
    vlm_fp = after(clip_fp, "sft-curriculum", sft_settings(s));
    run_phase("sft-curriculum", curriculum, curriculum + "/model/model.safetensors", vlm_fp, run, times, [&] {
      make_init(curriculum);
      run_sft_phase(s, "sft-curriculum");
    });
  }
  SftRunOptions s = staged ? sft_options(curriculum + "/model", "", sft, o.sft_steps)
                           : sft_options(sft + "/init", clip + "/model", sft, o.sft_steps);
  s.task_repeat = o.sft_task_repeat;
  run_phase("sft", sft, sft + "/model/model.safetensors", after(vlm_fp, "sft", sft_settings(s)), run, times, [&] {
    if (!staged) make_init(sft);
    run_sft_phase(s, "sft");
  });

  Json result = {{"phases", times}, {"model", sft + "/model"}, {"world", world}};
  if (o.evaluate) {
    auto t0 = std::chrono::steady_clock::now();
    result["quality"] = o.evaluate(sft + "/model", world);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    result["phases"]["eval"] = s;
    if (run) run->log_metrics({{"phase", "eval"}, {"seconds", s}});
  }
  return result;
}

}  // namespace mmb
