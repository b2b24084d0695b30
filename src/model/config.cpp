// config.json parsing for CLIP and LLaVA, strict about missing keys, types and unknown keys.
#include <set>
#include <vector>

#include "mmb/error.h"
#include "mmb/model_config.h"

namespace mmb {
namespace {

// Hugging Face bookkeeping keys that carry no architecture information; accepted and ignored.
const std::set<std::string> kIgnoredKeys = {
    "architectures", "torch_dtype", "transformers_version", "_name_or_path", "model_type",
    "initializer_range", "initializer_factor", "attention_dropout", "dropout", "attention_bias",
    "mlp_bias", "use_cache", "pretraining_tp", "rope_scaling", "ignore_index", "projection_dim",
    "bos_token_id", "pad_token_id", "eos_token_id", "image_seq_length", "multimodal_projector_bias",
    "vocab_size", "id2label", "label2id", "return_dict", "output_hidden_states",
    "output_attentions", "torchscript", "use_bfloat16", "tie_encoder_decoder", "is_decoder",
    "is_encoder_decoder", "add_cross_attention", "prefix", "problem_type", "task_specific_params",
    "text_config_dict", "vision_config_dict", "max_length", "min_length", "do_sample",
    "num_beams", "temperature", "top_k", "top_p", "repetition_penalty", "chunk_size_feed_forward",
    "finetuning_task", "tokenizer_class", "sep_token_id", "decoder_start_token_id",
    "cross_attention_hidden_size", "early_stopping", "bad_words_ids", "begin_suppress_tokens",
    "diversity_penalty", "encoder_no_repeat_ngram_size", "exponential_decay_length_penalty",
    "forced_bos_token_id", "forced_eos_token_id", "length_penalty", "no_repeat_ngram_size",
    "num_beam_groups", "num_return_sequences", "output_scores", "remove_invalid_values",
    "return_dict_in_generate", "suppress_tokens", "tf_legacy_loss", "typical_p", "pruned_heads",
    "head_dim", "quantization_config", "text_model_type", "logit_scale_init_value"};

// Reads keys from one JSON object and remembers which were used, to report the rest.
class KeyReader {
 public:
  KeyReader(const Json& j, std::string context) : j_(j), context_(std::move(context)) {
    if (!j_.is_object()) fail(context_, ": expected a JSON object, found ", j_.type_name());
  }
  template <typename T>
  void required(const std::string& key, T& out) {
    used_.insert(key);
    out = json_get<T>(j_, key, context_);
  }
  template <typename T>
  void optional(const std::string& key, T& out) {
    used_.insert(key);
    if (j_.contains(key) && !j_[key].is_null()) out = json_get<T>(j_, key, context_);
  }
  const Json& sub(const std::string& key) {
    used_.insert(key);
    if (!j_.contains(key)) fail(context_, ": missing key '", key, "'");
    return j_[key];
  }
  void check_unknown(bool strict) const {
    if (!strict) return;
    std::vector<std::string> unknown;
    for (auto& [k, v] : j_.items()) {
      (void)v;
      if (!used_.count(k) && !kIgnoredKeys.count(k)) unknown.push_back(k);
    }
    if (unknown.empty()) return;
    std::string list;
    for (const auto& k : unknown) list += (list.empty() ? "'" : ", '") + k + "'";
    fail(context_, ": unknown key(s) ", list, " (not used by mmb; load with strict=false to ignore)");
  }

 private:
  const Json& j_;
  std::string context_;
  std::set<std::string> used_;
};

void read_vision(const Json& j, const std::string& ctx, bool strict, ClipVisionConfig& c) {
  KeyReader r(j, ctx);
  r.required("hidden_size", c.hidden_size);
  r.required("intermediate_size", c.intermediate_size);
  r.required("num_hidden_layers", c.num_hidden_layers);
  r.required("num_attention_heads", c.num_attention_heads);
  r.required("image_size", c.image_size);
  r.required("patch_size", c.patch_size);
  r.optional("num_channels", c.num_channels);
  r.optional("layer_norm_eps", c.layer_norm_eps);
  r.optional("hidden_act", c.hidden_act);
  r.optional("mmb_stem_channels", c.stem_channels);
  r.check_unknown(strict);
  validate(c, ctx);
}

Json vision_json(const ClipVisionConfig& c) {
  Json j = {{"model_type", "clip_vision_model"},  {"hidden_size", c.hidden_size},
            {"intermediate_size", c.intermediate_size}, {"num_hidden_layers", c.num_hidden_layers},
            {"num_attention_heads", c.num_attention_heads}, {"image_size", c.image_size},
            {"patch_size", c.patch_size},          {"num_channels", c.num_channels},
            {"layer_norm_eps", c.layer_norm_eps},  {"hidden_act", c.hidden_act}};
  if (!c.stem_channels.empty()) j["mmb_stem_channels"] = c.stem_channels;  // plain HF CLIP otherwise
  return j;
}

void check_act(const std::string& act, const std::set<std::string>& known, const std::string& ctx,
               const char* key) {
  if (!known.count(act)) fail(ctx, ": ", key, " '", act, "' is not supported");
}

}  // namespace

void validate(const ClipVisionConfig& c, const std::string& ctx) {
  if (c.hidden_size <= 0 || c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads)
    fail(ctx, ": hidden_size ", c.hidden_size, " must be a positive multiple of num_attention_heads ",
         c.num_attention_heads);
  if (c.patch_size <= 0 || c.image_size <= 0 || c.image_size % c.patch_size)
    fail(ctx, ": image_size ", c.image_size, " must be a positive multiple of patch_size ", c.patch_size);
  if (c.num_hidden_layers <= 0 || c.intermediate_size <= 0 || c.num_channels <= 0)
    fail(ctx, ": num_hidden_layers, intermediate_size and num_channels must be positive");
  check_act(c.hidden_act, {"quick_gelu", "gelu"}, ctx, "hidden_act");
  for (int64_t ch : c.stem_channels)
    if (ch <= 0) fail(ctx, ": mmb_stem_channels must be positive, got ", ch);
  if (c.stem_channels.size() > 1) {
    const int64_t down = int64_t(1) << (c.stem_channels.size() - 1);
    if (c.patch_size % down)
      fail(ctx, ": patch_size ", c.patch_size, " must be a multiple of ", down, " for ", c.stem_channels.size(),
           " mmb_stem_channels (each after the first halves the resolution)");
  }
}

void validate(const ClipTextConfig& c, const std::string& ctx) {
  if (c.hidden_size <= 0 || c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads)
    fail(ctx, ": hidden_size ", c.hidden_size, " must be a positive multiple of num_attention_heads ",
         c.num_attention_heads);
  if (c.vocab_size <= 0 || c.max_position_embeddings <= 0 || c.num_hidden_layers <= 0)
    fail(ctx, ": vocab_size, max_position_embeddings and num_hidden_layers must be positive");
  check_act(c.hidden_act, {"quick_gelu", "gelu"}, ctx, "hidden_act");
  if (c.pooling != "hf" && c.pooling != "first_eos") fail(ctx, ": pooling must be 'hf' or 'first_eos'");
}

void validate(const LlamaConfig& c, const std::string& ctx) {
  if (c.hidden_size <= 0 || c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads)
    fail(ctx, ": hidden_size ", c.hidden_size, " must be a positive multiple of num_attention_heads ",
         c.num_attention_heads);
  if (c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads)
    fail(ctx, ": num_attention_heads ", c.num_attention_heads,
         " must be a multiple of num_key_value_heads ", c.num_key_value_heads);
  if (c.head_dim() % 2) fail(ctx, ": head dimension ", c.head_dim(), " must be even for rotary positions");
  if (c.vocab_size <= 0 || c.num_hidden_layers <= 0 || c.max_position_embeddings <= 0 ||
      c.intermediate_size <= 0)
    fail(ctx, ": vocab_size, num_hidden_layers, max_position_embeddings, intermediate_size must be positive");
  check_act(c.hidden_act, {"silu"}, ctx, "hidden_act");
  if (!(c.initializer_range > 0)) fail(ctx, ": initializer_range ", c.initializer_range, " must be positive");
}

void validate(const LlavaConfig& c) {
  validate(c.vision, "config.json vision_config");
  validate(c.text, "config.json text_config");
  if (c.image_token_index < 0) fail("config.json: image_token_index must be >= 0");
  if (c.vision_feature_layer >= c.vision.num_hidden_layers ||
      c.vision_feature_layer < -c.vision.num_hidden_layers - 1)
    fail("config.json: vision_feature_layer ", c.vision_feature_layer, " outside the ",
         c.vision.num_hidden_layers, "-layer vision tower");
  if (c.vision_feature_select_strategy != "default" && c.vision_feature_select_strategy != "full")
    fail("config.json: vision_feature_select_strategy must be 'default' or 'full'");
  check_act(c.projector_hidden_act, {"gelu"}, "config.json", "projector_hidden_act");
}

void validate(const ClipConfig& c) {
  validate(c.vision, "config.json vision_config");
  validate(c.text, "config.json text_config");
  if (c.projection_dim <= 0) fail("config.json: projection_dim must be positive");
}

std::string model_type_of(const Json& j, const std::string& ctx) {
  std::string t = json_get<std::string>(j, "model_type", ctx);
  if (t != "llava" && t != "clip") fail(ctx, ": model_type '", t, "' is not supported (llava, clip)");
  return t;
}

LlavaConfig llava_config_from_json(const Json& j, const std::string& ctx, bool strict) {
  LlavaConfig c;
  KeyReader r(j, ctx);
  if (model_type_of(j, ctx) != "llava") fail(ctx, ": model_type is not 'llava'");
  read_vision(r.sub("vision_config"), ctx + " vision_config", strict, c.vision);
  {
    const Json& t = r.sub("text_config");
    const std::string tctx = ctx + " text_config";
    KeyReader tr(t, tctx);
    LlamaConfig& l = c.text;
    tr.required("vocab_size", l.vocab_size);
    tr.required("hidden_size", l.hidden_size);
    tr.required("intermediate_size", l.intermediate_size);
    tr.required("num_hidden_layers", l.num_hidden_layers);
    tr.required("num_attention_heads", l.num_attention_heads);
    l.num_key_value_heads = l.num_attention_heads;
    tr.optional("num_key_value_heads", l.num_key_value_heads);
    tr.optional("max_position_embeddings", l.max_position_embeddings);
    tr.optional("rms_norm_eps", l.rms_norm_eps);
    tr.optional("rope_theta", l.rope_theta);
    tr.optional("initializer_range", l.initializer_range);
    tr.optional("tie_word_embeddings", l.tie_word_embeddings);
    tr.optional("bos_token_id", l.bos_token_id);
    tr.optional("eos_token_id", l.eos_token_id);
    tr.optional("pad_token_id", l.pad_token_id);
    tr.optional("hidden_act", l.hidden_act);
    std::string mt = "llama";
    tr.optional("model_type", mt);
    if (mt != "llama") fail(tctx, ": model_type '", mt, "' is not supported (llama)");
    if (t.contains("rope_scaling") && !t["rope_scaling"].is_null())
      fail(tctx, ": rope_scaling is not supported");
    tr.check_unknown(strict);
  }
  r.required("image_token_index", c.image_token_index);
  r.optional("vision_feature_layer", c.vision_feature_layer);
  r.optional("vision_feature_select_strategy", c.vision_feature_select_strategy);
  r.optional("projector_hidden_act", c.projector_hidden_act);
  bool tie = c.text.tie_word_embeddings;
  r.optional("tie_word_embeddings", tie);  // may sit at the top level in HF configs
  c.text.tie_word_embeddings = tie;
  r.check_unknown(strict);
  validate(c);
  return c;
}

Json to_json(const LlavaConfig& c) {
  const LlamaConfig& l = c.text;
  Json text = {{"model_type", "llama"},
               {"vocab_size", l.vocab_size},
               {"hidden_size", l.hidden_size},
               {"intermediate_size", l.intermediate_size},
               {"num_hidden_layers", l.num_hidden_layers},
               {"num_attention_heads", l.num_attention_heads},
               {"num_key_value_heads", l.num_key_value_heads},
               {"max_position_embeddings", l.max_position_embeddings},
               {"rms_norm_eps", l.rms_norm_eps},
               {"rope_theta", l.rope_theta},
               {"initializer_range", l.initializer_range},
               {"tie_word_embeddings", l.tie_word_embeddings},
               {"bos_token_id", l.bos_token_id},
               {"eos_token_id", l.eos_token_id},
               {"pad_token_id", l.pad_token_id},
               {"hidden_act", l.hidden_act}};
  return {{"model_type", "llava"},
          {"architectures", {"LlavaForConditionalGeneration"}},
          {"vision_config", vision_json(c.vision)},
          {"text_config", text},
          {"image_token_index", c.image_token_index},
          {"vision_feature_layer", c.vision_feature_layer},
          {"vision_feature_select_strategy", c.vision_feature_select_strategy},
          {"projector_hidden_act", c.projector_hidden_act},
          {"image_seq_length", c.image_seq_length()},
          {"tie_word_embeddings", l.tie_word_embeddings},
          {"torch_dtype", "float32"}};
}

ClipConfig clip_config_from_json(const Json& j, const std::string& ctx, bool strict) {
  ClipConfig c;
  KeyReader r(j, ctx);
  if (model_type_of(j, ctx) != "clip") fail(ctx, ": model_type is not 'clip'");
  read_vision(r.sub("vision_config"), ctx + " vision_config", strict, c.vision);
  {
    const std::string tctx = ctx + " text_config";
    KeyReader tr(r.sub("text_config"), tctx);
    ClipTextConfig& t = c.text;
    tr.required("vocab_size", t.vocab_size);
    tr.required("hidden_size", t.hidden_size);
    tr.required("intermediate_size", t.intermediate_size);
    tr.required("num_hidden_layers", t.num_hidden_layers);
    tr.required("num_attention_heads", t.num_attention_heads);
    tr.optional("max_position_embeddings", t.max_position_embeddings);
    tr.optional("layer_norm_eps", t.layer_norm_eps);
    tr.optional("hidden_act", t.hidden_act);
    tr.optional("eos_token_id", t.eos_token_id);
    tr.optional("mmb_pooling", t.pooling);
    tr.check_unknown(strict);
  }
  r.optional("projection_dim", c.projection_dim);
  r.optional("logit_scale_init_value", c.logit_scale_init_value);
  r.check_unknown(strict);
  validate(c);
  return c;
}

Json to_json(const ClipConfig& c) {
  const ClipTextConfig& t = c.text;
  Json text = {{"model_type", "clip_text_model"},
               {"vocab_size", t.vocab_size},
               {"hidden_size", t.hidden_size},
               {"intermediate_size", t.intermediate_size},
               {"num_hidden_layers", t.num_hidden_layers},
               {"num_attention_heads", t.num_attention_heads},
               {"max_position_embeddings", t.max_position_embeddings},
               {"layer_norm_eps", t.layer_norm_eps},
               {"hidden_act", t.hidden_act},
               {"eos_token_id", t.eos_token_id},
               {"mmb_pooling", t.pooling}};
  return {{"model_type", "clip"},
          {"architectures", {"CLIPModel"}},
          {"text_config", text},
          {"vision_config", vision_json(c.vision)},
          {"projection_dim", c.projection_dim},
          {"logit_scale_init_value", c.logit_scale_init_value},
          {"torch_dtype", "float32"}};
}

}  // namespace mmb
