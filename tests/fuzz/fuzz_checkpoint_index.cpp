// model.safetensors.index.json of a sharded model directory: the weight map and its shard names
// (nothing may be read outside the directory), loaded into a small module.
#include <filesystem>

#include <torch/torch.h>

#include "fuzz_util.h"
#include "mmb/checkpoint.h"
#include "mmb/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmb;
  static const std::string dir = [] {
    const std::string d = fuzz::scratch_dir() + "/sharded";
    std::filesystem::create_directories(d);
    torch::nn::Linear lin(2, 2);
    save_safetensors(d + "/model-00001-of-00001.safetensors",
                     {{"weight", lin->weight.detach()}, {"bias", lin->bias.detach()}});
    // A file beside the directory that an escaping shard name could reach.
    save_safetensors(fuzz::scratch_dir() + "/outside.safetensors", {{"weight", torch::ones({2, 2})}});
    return d;
  }();
  fuzz::write_scratch("sharded/model.safetensors.index.json", fuzz::bytes_of(data, size));
  torch::nn::Linear module(2, 2);
  fuzz::expect_clear_error([&] { load_weights(*module, dir); });
  return 0;
}
