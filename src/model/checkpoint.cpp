// Model directories: weight-name table, validation of every tensor, sharded safetensors.
#include "mmb/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <vector>

#include "mmb/atomic_file.h"
#include "mmb/error.h"
#include "mmb/safetensors.h"

namespace mmb {
namespace {

// Weight-name table: checkpoint layout of transformers >= 4.52 -> mmb's (classic HF) names.
const std::pair<const char*, const char*> kNameTable[] = {
    {"model.language_model.", "language_model.model."},
    {"model.vision_tower.", "vision_tower."},
    {"model.multi_modal_projector.", "multi_modal_projector."},
    {"lm_head.", "language_model.lm_head."},
};

std::string canonical_name(const std::string& name) {
  for (const auto& [from, to] : kNameTable) {
    std::string f(from);
    if (name.rfind(f, 0) == 0) return std::string(to) + name.substr(f.size());
  }
  return name;
}

// Every tensor of a model directory or file, by canonical name, with the file it came from.
struct TensorSource {
  std::vector<std::shared_ptr<SafetensorsFile>> files;
  std::map<std::string, std::pair<SafetensorsFile*, std::string>> by_name;  // canonical -> (file, name)
};

TensorSource open_tensors(const std::string& path) {
  TensorSource src;
  std::vector<std::string> paths;
  if (!std::filesystem::is_directory(path)) {
    paths.push_back(path);
  } else if (std::filesystem::exists(path + "/model.safetensors")) {
    paths.push_back(path + "/model.safetensors");
  } else if (std::filesystem::exists(path + "/model.safetensors.index.json")) {
    Json idx = read_json_file(path + "/model.safetensors.index.json");
    const Json& map = idx.contains("weight_map") ? idx["weight_map"] : Json();
    if (!map.is_object()) fail("load_weights: ", path, "/model.safetensors.index.json has no weight_map object");
    std::set<std::string> shards;
    for (auto& [k, v] : map.items()) {
      (void)k;
      if (!v.is_string()) fail("load_weights: weight_map value for '", k, "' is not a file name");
      // A shard is a plain file name in the model directory: no path, nothing outside it.
      const std::string name = v.get<std::string>();
      if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
          name.find('\\') != std::string::npos || name.find('\0') != std::string::npos)
        fail("load_weights: ", path, "/model.safetensors.index.json: shard '", name, "' of '", k,
             "' is not a file name in the model directory");
      shards.insert(name);
    }
    for (const auto& s : shards) paths.push_back(path + "/" + s);
  } else {
    fail("load_weights: ", path, " has neither model.safetensors nor model.safetensors.index.json");
  }
  for (const auto& p : paths) {
    auto f = std::make_shared<SafetensorsFile>(p);
    for (const auto& e : f->entries()) {
      std::string c = canonical_name(e.name);
      if (src.by_name.count(c)) fail("load_weights: tensor '", e.name, "' appears twice (", p, ")");
      src.by_name[c] = {f.get(), e.name};
    }
    src.files.push_back(std::move(f));
  }
  return src;
}

std::string shape_str(c10::IntArrayRef s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

}  // namespace

void load_weights(torch::nn::Module& module, const std::string& path) {
  TensorSource src = open_tensors(path);
  std::vector<std::string> missing, bad_shape, unexpected;
  auto params = module.named_parameters(/*recurse=*/true);
  std::set<std::string> wanted;
  for (const auto& p : params) {
    wanted.insert(p.key());
    auto it = src.by_name.find(p.key());
    if (it == src.by_name.end()) {
      missing.push_back(p.key());
      continue;
    }
    const auto* entry = &*std::find_if(it->second.first->entries().begin(), it->second.first->entries().end(),
                                       [&](const SafetensorsEntry& e) { return e.name == it->second.second; });
    if (c10::IntArrayRef(entry->shape) != p.value().sizes())
      bad_shape.push_back(p.key() + " (file " + shape_str(entry->shape) + ", model " + shape_str(p.value().sizes()) +
                          ")");
  }
  for (const auto& [name, src_entry] : src.by_name) {
    (void)src_entry;
    // A tied model ignores a stored lm_head, as Hugging Face does.
    if (!wanted.count(name) && name != "language_model.lm_head.weight") unexpected.push_back(name);
  }
  if (!missing.empty() || !bad_shape.empty() || !unexpected.empty()) {
    std::ostringstream os;
    os << "load_weights: " << path << " does not match the model:";
    auto list = [&](const char* what, const std::vector<std::string>& v) {
      if (v.empty()) return;
      os << "\n  " << what << " (" << v.size() << "):";
      for (size_t i = 0; i < v.size() && i < 50; ++i) os << "\n    " << v[i];
      if (v.size() > 50) os << "\n    ... and " << v.size() - 50 << " more";
    };
    list("missing tensors", missing);
    list("wrong shapes", bad_shape);
    list("unexpected tensors", unexpected);
    throw Error(os.str());
  }
  torch::NoGradGuard ng;
  for (auto& p : params) {
    const auto& [file, name] = src.by_name.at(p.key());
    p.value().copy_(file->tensor(name).to(p.value().dtype()));
  }
}

void save_model_dir(const std::string& dir, const Json& config, torch::nn::Module& module) {
  make_dirs(dir);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& p : module.named_parameters(true)) tensors.emplace_back(p.key(), p.value());
  save_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}, {"writer", "mmb"}});
  write_json_file(dir + "/config.json", config);
}

LlavaForConditionalGeneration load_llava(const std::string& dir, torch::Device device, bool strict_config) {
  const std::string cfg_path = dir + "/config.json";
  LlavaConfig cfg = llava_config_from_json(read_json_file(cfg_path), cfg_path, strict_config);
  LlavaForConditionalGeneration model(cfg);
  load_weights(*model, dir);
  model->to(device);
  model->eval();
  return model;
}

ClipModel load_clip(const std::string& dir, torch::Device device, bool strict_config) {
  const std::string cfg_path = dir + "/config.json";
  ClipConfig cfg = clip_config_from_json(read_json_file(cfg_path), cfg_path, strict_config);
  ClipModel model(cfg);
  load_weights(*model, dir);
  model->to(device);
  model->eval();
  return model;
}

int64_t count_parameters(const torch::nn::Module& module, const std::string& prefix) {
  int64_t n = 0;
  for (const auto& p : module.named_parameters(true))
    if (p.key().rfind(prefix, 0) == 0) n += p.value().numel();
  return n;
}

std::string inspect_model_dir(const std::string& dir) {
  const std::string cfg_path = dir + "/config.json";
  Json j = read_json_file(cfg_path);
  std::string type = model_type_of(j, cfg_path);
  std::ostringstream os;
  auto fmt = [](int64_t n) {
    std::ostringstream s;
    s.precision(3);
    if (n >= 1000000) s << double(n) / 1e6 << "M"; else if (n >= 1000) s << double(n) / 1e3 << "k"; else s << n;
    return s.str();
  };
  if (type == "llava") {
    LlavaConfig c = llava_config_from_json(j, cfg_path);
    LlavaForConditionalGeneration m(c);
    load_weights(*m, dir);
    os << "model_type: llava (LlavaForConditionalGeneration)\n"
       << "vision: CLIP ViT " << c.vision.image_size << "px / patch " << c.vision.patch_size << ", "
       << c.vision.num_hidden_layers << " layers, hidden " << c.vision.hidden_size << ", heads "
       << c.vision.num_attention_heads << ", feature layer " << c.vision_feature_layer << " ("
       << c.vision_feature_select_strategy << "), " << c.image_seq_length() << " image tokens\n"
       << "projector: linear " << c.vision.hidden_size << "->" << c.text.hidden_size << ", GELU, linear\n"
       << "decoder: Llama " << c.text.num_hidden_layers << " layers, hidden " << c.text.hidden_size
       << ", heads " << c.text.num_attention_heads << " (kv " << c.text.num_key_value_heads << "), mlp "
       << c.text.intermediate_size << ", vocab " << c.text.vocab_size << ", context "
       << c.text.max_position_embeddings << (c.text.tie_word_embeddings ? ", tied embeddings" : "") << "\n"
       << "image_token_index: " << c.image_token_index << "\n"
       << "parameters: " << fmt(count_parameters(*m)) << " (vision " << fmt(count_parameters(*m, "vision_tower."))
       << ", projector " << fmt(count_parameters(*m, "multi_modal_projector.")) << ", decoder "
       << fmt(count_parameters(*m, "language_model.")) << ")\n";
  } else {
    ClipConfig c = clip_config_from_json(j, cfg_path);
    ClipModel m(c);
    load_weights(*m, dir);
    os << "model_type: clip (CLIPModel)\n"
       << "vision: ViT " << c.vision.image_size << "px / patch " << c.vision.patch_size << ", "
       << c.vision.num_hidden_layers << " layers, hidden " << c.vision.hidden_size << "\n"
       << "text: " << c.text.num_hidden_layers << " layers, hidden " << c.text.hidden_size << ", vocab "
       << c.text.vocab_size << ", context " << c.text.max_position_embeddings << "\n"
       << "projection_dim: " << c.projection_dim << "\n"
       << "parameters: " << fmt(count_parameters(*m)) << " (vision " << fmt(count_parameters(*m, "vision_model."))
       << ", text " << fmt(count_parameters(*m, "text_model.")) << ")\n";
  }
  os << "tokenizer: " << (std::filesystem::exists(dir + "/tokenizer.model") ? "tokenizer.model" : "(none)") << "\n";
  return os.str();
}

}  // namespace mmb
