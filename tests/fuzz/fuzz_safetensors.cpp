// safetensors files: the header (length, JSON, dtypes, shapes, offsets) and the mapped tensors.
#include <torch/torch.h>

#include "fuzz_util.h"
#include "mmb/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmb;
  const std::string_view bytes = fuzz::bytes_of(data, size);
  bool header_ok = false;
  fuzz::expect_clear_error([&] {
    const SafetensorsHeader h = parse_safetensors_header(bytes, "fuzz.safetensors");
    header_ok = true;
    // What the validation promises: entries within the data buffer, in order, without overlap.
    uint64_t at = 0;
    for (const auto& e : h.entries) {
      if (e.begin < at || e.end < e.begin || h.data_start + e.end > bytes.size()) std::abort();
      at = e.end;
    }
  });
  if (!header_ok) return 0;
  // The same bytes as a file: every tensor maps and reads.
  const std::string path = fuzz::write_scratch("fuzz.safetensors", bytes);
  fuzz::expect_clear_error([&] {
    SafetensorsFile file(path);
    for (const auto& name : file.names()) {
      torch::Tensor t = file.tensor(name);
      if (t.numel() > 0 && t.is_floating_point()) (void)t.to(torch::kFloat).sum().item<float>();
    }
  });
  return 0;
}
