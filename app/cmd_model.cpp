// mmb model: inspect a model directory; create a freshly initialised one.
#include <iostream>

#include "commands.h"
#include "common.h"
#include "mmb/atomic_file.h"
#include "mmb/checkpoint.h"
#include "mmb/model.h"
#include "mmb/tokenizer.h"
#include "mmb/vlm.h"

namespace mmb::app {
namespace {

struct InitOptions {
  CommonOptions common;
  std::string tokenizer;     // tokenizer.model; sets vocabulary size and special ids
  std::string kind = "llava";  // llava | clip
  LlavaConfig llava;         // sizes (defaults = the world model)
  int64_t clip_text_hidden = 128, clip_text_layers = 4, clip_projection = 128;
};

void add_size_flags(CLI::App& c, InitOptions& o) {
  auto& v = o.llava.vision;
  auto& t = o.llava.text;
  c.add_option("--image-size", v.image_size, "Image side (px)")->group("Vision");
  c.add_option("--patch-size", v.patch_size, "Patch side (px)")->group("Vision");
  c.add_option("--vision-hidden", v.hidden_size, "Vision hidden size")->group("Vision");
  c.add_option("--vision-layers", v.num_hidden_layers, "Vision layers")->group("Vision");
  c.add_option("--vision-heads", v.num_attention_heads, "Vision heads")->group("Vision");
  c.add_option("--vision-mlp", v.intermediate_size, "Vision MLP size")->group("Vision");
  c.add_option("--vision-stem", v.stem_channels, "Convolutional stem channels, e.g. 32,64 (none: HF CLIP)")
      ->delimiter(',')
      ->group("Vision");
  c.add_option("--hidden", t.hidden_size, "Decoder hidden size")->group("Decoder");
  c.add_option("--layers", t.num_hidden_layers, "Decoder layers")->group("Decoder");
  c.add_option("--heads", t.num_attention_heads, "Decoder heads")->group("Decoder");
  c.add_option("--kv-heads", t.num_key_value_heads, "Decoder key/value heads (GQA)")->group("Decoder");
  c.add_option("--mlp", t.intermediate_size, "Decoder MLP size")->group("Decoder");
  c.add_option("--context", t.max_position_embeddings, "Context length (tokens)")->group("Decoder");
  c.add_flag("--tie-word-embeddings", t.tie_word_embeddings, "Tie lm_head to the embeddings")->group("Decoder");
  c.add_option("--initializer-range", t.initializer_range,
               "Std of the normal init of the decoder, its embeddings and the projector (HF: 0.02)")
      ->check(CLI::PositiveNumber)
      ->group("Decoder");
  c.add_option("--clip-text-hidden", o.clip_text_hidden, "CLIP text hidden size")->group("CLIP");
  c.add_option("--clip-text-layers", o.clip_text_layers, "CLIP text layers")->group("CLIP");
  c.add_option("--clip-projection", o.clip_projection, "CLIP projection dim")->group("CLIP");
}

void run_init(const CLI::App& cmd, InitOptions& o) {
  apply_common_options(o.common);
  if (o.common.out.empty()) fail("mmb model init: --out DIR is required");
  Tokenizer tok = Tokenizer::load(o.tokenizer);
  auto run = open_run_dir(cmd, o.common);
  Json config;
  std::shared_ptr<torch::nn::Module> module;
  if (o.kind == "llava") {
    const LlavaConfig c = with_token_ids(o.llava, tok);
    validate(c);
    LlavaForConditionalGeneration m(c);
    init_weights(*m, o.common.seed, c.text.initializer_range);
    module = m.ptr();
    config = to_json(c);
  } else if (o.kind == "clip") {
    ClipConfig c;
    c.vision = o.llava.vision;
    c.text.vocab_size = tok.num_ids();
    c.text.hidden_size = o.clip_text_hidden;
    c.text.intermediate_size = 4 * o.clip_text_hidden;
    c.text.num_hidden_layers = o.clip_text_layers;
    c.text.eos_token_id = tok.eos_id();
    c.text.pooling = "first_eos";
    c.projection_dim = o.clip_projection;
    validate(c);
    ClipModel m(c);
    init_weights(*m, o.common.seed);
    module = m.ptr();
    config = to_json(c);
  } else {
    fail("mmb model init: --kind must be llava or clip, got '", o.kind, "'");
  }
  save_model_dir(o.common.out, config, *module);
  write_file_atomic(o.common.out + "/tokenizer.model", read_file(o.tokenizer));
  std::cout << inspect_model_dir(o.common.out);
  if (run) {
    run->log_metrics({{"phase", "init"}, {"parameters", count_parameters(*module)}});
    run->finish();
  }
}

}  // namespace

void setup_model(CLI::App& cmd) {
  cmd.require_subcommand(1);
  auto* inspect = cmd.add_subcommand("inspect", "Architecture and parameter counts; every problem of a bad directory");
  auto dir = std::make_shared<std::string>();
  inspect->add_option("dir", *dir, "Model directory (config.json + model.safetensors)")->required();
  add_examples(*inspect, "mmb model inspect runs/demo/sft/model\n");
  inspect->callback([dir] { std::cout << inspect_model_dir(*dir); });

  auto* init = cmd.add_subcommand("init", "Create a freshly initialised model directory");
  auto o = std::make_shared<InitOptions>();
  add_common_options(*init, o->common, /*with_out=*/true);
  add_examples(*init, "mmb model init --tokenizer runs/tok/tokenizer.model --out runs/m0 [size flags]\n");
  init->add_option("--tokenizer", o->tokenizer, "tokenizer.model (sets vocabulary and special ids)")->required();
  init->add_option("--kind", o->kind, "llava | clip")->capture_default_str();
  add_size_flags(*init, *o);
  init->callback([init, o] { run_init(*init, *o); });
}

}  // namespace mmb::app
