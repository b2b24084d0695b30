// safetensors: the Hugging Face tensor file format, read (memory-mapped) and written.
//
// Layout: 8-byte little-endian header length N, N bytes of JSON header, then the data buffer.
// Header: {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [..],
// "data_offsets": [begin, end]}, ...}; offsets are relative to the data buffer.
//
// Validation (every reader path): N within the file and ≤ kMaxHeaderBytes; the header is a JSON
// object; each entry has exactly dtype/shape/data_offsets of the right types; dtype known;
// shape dims ≥ 0 with no overflow; begin ≤ end ≤ data size; end − begin = numel × dtype size;
// entries do not overlap and cover the buffer without holes (as the reference implementation
// requires). A hostile file gives mmb::Error naming the file and the entry, never a crash.
// Byte order: little-endian hosts only (x86-64, aarch64).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace mmb {

constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;  // as the reference implementation

struct SafetensorsEntry {
  std::string name;
  std::string dtype;           // "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0; // byte offsets into the data buffer
};

struct SafetensorsHeader {
  std::map<std::string, std::string> metadata;  // "__metadata__"
  std::vector<SafetensorsEntry> entries;        // in data-offset order
  uint64_t data_start = 0;                      // 8 + N: file offset of the data buffer
};

// Parses and validates the header of a complete file image. `name` is used in errors.
SafetensorsHeader parse_safetensors_header(std::string_view file_bytes, const std::string& name);

// Size in bytes of one element of a safetensors dtype, or 0 if unknown.
int64_t safetensors_dtype_size(const std::string& dtype);
// torch dtype ↔ safetensors dtype string; throws mmb::Error for types libtorch 1.13 lacks.
torch::Dtype safetensors_to_torch_dtype(const std::string& dtype);
std::string torch_to_safetensors_dtype(torch::Dtype dtype);

// A memory-mapped safetensors file. Tensors returned by tensor() are zero-copy CPU views of the
// mapping (copy-on-write: writing to them never touches the file) and keep the mapping alive.
class SafetensorsFile {
 public:
  // Maps and validates `path`. Throws mmb::Error.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const std::vector<SafetensorsEntry>& entries() const { return header_.entries; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  std::vector<std::string> names() const;

  // The named tensor. Throws mmb::Error naming the file if absent.
  torch::Tensor tensor(const std::string& name) const;
  // All tensors, by name.
  std::map<std::string, torch::Tensor> tensors() const;

 private:
  struct Mapping;
  std::string path_;
  std::shared_ptr<Mapping> map_;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;
};

// Loads every tensor of a file (views of a mapping kept alive by the tensors).
std::map<std::string, torch::Tensor> load_safetensors(const std::string& path);

// Serialises tensors (any device; non-contiguous ones are made contiguous) with optional
// metadata. Names must be unique and non-empty, and not "__metadata__".
std::string serialize_safetensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

// Writes atomically (temp file, fsync, rename).
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace mmb
