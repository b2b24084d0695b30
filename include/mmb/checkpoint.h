// Model directories: config.json + model.safetensors (or sharded, with
// model.safetensors.index.json) + tokenizer.model.
//
// Loading checks every parameter of the module against the files and reports all problems in
// one error: missing tensors, unexpected tensors, wrong shapes. Weight names follow Hugging Face;
// the layout of transformers >= 4.52 ("model.language_model.*", "lm_head.*") is mapped to the
// classic one ("language_model.model.*", "language_model.lm_head.*") by a name table.
#pragma once
#include <string>

#include <torch/torch.h>

#include "mmb/json.h"
#include "mmb/model.h"

namespace mmb {

// Copies tensors from `dir` (a model directory or a .safetensors file) into `module`'s
// parameters, converting dtype. Throws mmb::Error listing every missing / unexpected /
// wrong-shaped tensor.
void load_weights(torch::nn::Module& module, const std::string& dir);

// Writes config.json and model.safetensors (atomically) into `dir`.
void save_model_dir(const std::string& dir, const Json& config, torch::nn::Module& module);

// Loads a LLaVA / CLIP model directory onto `device`, in eval mode.
LlavaForConditionalGeneration load_llava(const std::string& dir, torch::Device device = torch::kCPU,
                                         bool strict_config = true);
ClipModel load_clip(const std::string& dir, torch::Device device = torch::kCPU, bool strict_config = true);

// Human-readable summary of a model directory: type, architecture, parameter counts per part,
// tensors on disk. Throws (with every problem) if the directory does not load.
std::string inspect_model_dir(const std::string& dir);

// Number of parameters whose name starts with `prefix` ("" = all).
int64_t count_parameters(const torch::nn::Module& module, const std::string& prefix = "");

}  // namespace mmb
