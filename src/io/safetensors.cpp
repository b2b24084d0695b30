// safetensors reader/writer. The header is validated completely before any tensor is created,
// so every later pointer into the mapping is in bounds.
#include "mmb/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "mmb/atomic_file.h"
#include "mmb/error.h"
#include "mmb/json.h"

namespace mmb {
namespace {

struct DtypeInfo {
  const char* name;
  int64_t size;
  torch::Dtype torch_dtype;
  bool supported;  // libtorch 1.13 has the type
};

const DtypeInfo kDtypes[] = {
    {"F64", 8, torch::kFloat64, true},  {"F32", 4, torch::kFloat32, true},
    {"F16", 2, torch::kFloat16, true},  {"BF16", 2, torch::kBFloat16, true},
    {"I64", 8, torch::kInt64, true},    {"I32", 4, torch::kInt32, true},
    {"I16", 2, torch::kInt16, true},    {"I8", 1, torch::kInt8, true},
    {"U8", 1, torch::kUInt8, true},     {"BOOL", 1, torch::kBool, true},
    // In the format, but not in libtorch 1.13: parsed and validated, refused on load.
    {"U16", 2, torch::kInt16, false},   {"U32", 4, torch::kInt32, false},
    {"U64", 8, torch::kInt64, false},   {"F8_E4M3", 1, torch::kUInt8, false},
    {"F8_E5M2", 1, torch::kUInt8, false},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

uint64_t read_le_u64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | uint8_t(p[i]);
  return v;
}

// Parses a JSON integer that must be a non-negative value fitting in uint64.
uint64_t to_u64(const Json& v, const std::string& where) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return uint64_t(v.get<int64_t>());
  fail(where, ": expected a non-negative integer, found ", v.dump());
}

}  // namespace

int64_t safetensors_dtype_size(const std::string& dtype) {
  const DtypeInfo* d = find_dtype(dtype);
  return d ? d->size : 0;
}

torch::Dtype safetensors_to_torch_dtype(const std::string& dtype) {
  const DtypeInfo* d = find_dtype(dtype);
  if (!d) fail("safetensors_to_torch_dtype: unknown dtype '", dtype, "'");
  if (!d->supported) fail("safetensors_to_torch_dtype: dtype ", dtype, " is not supported by this libtorch");
  return d->torch_dtype;
}

std::string torch_to_safetensors_dtype(torch::Dtype dtype) {
  for (const auto& d : kDtypes)
    if (d.supported && d.torch_dtype == dtype) return d.name;
  fail("torch_to_safetensors_dtype: no safetensors dtype for torch type ", c10::toString(dtype));
}

SafetensorsHeader parse_safetensors_header(std::string_view bytes, const std::string& name) {
  const std::string ctx = "safetensors: " + name;
  if (bytes.size() < 8)
    fail(ctx, ": file is ", bytes.size(), " bytes, shorter than the 8-byte header length");
  uint64_t n = read_le_u64(bytes.data());
  if (n > kMaxSafetensorsHeaderBytes)
    fail(ctx, ": header length ", n, " exceeds the limit of ", kMaxSafetensorsHeaderBytes, " bytes");
  if (n > bytes.size() - 8)
    fail(ctx, ": header length ", n, " runs past the end of the file (", bytes.size(), " bytes)");
  if (n < 2) fail(ctx, ": header length ", n, " is too small for a JSON object");
  std::string_view text = bytes.substr(8, n);
  if (text.front() != '{') fail(ctx, ": header does not start with '{'");

  // Repeated tensor names are refused here (parse_json rejects a repeated key).
  const Json header = parse_json(text, ctx + ": header");
  if (!header.is_object()) fail(ctx, ": header is not a JSON object");

  SafetensorsHeader out;
  out.data_start = 8 + n;
  const uint64_t data_size = bytes.size() - out.data_start;
  for (auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) fail(ctx, ": __metadata__ must be an object of strings");
      for (auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) fail(ctx, ": __metadata__['", mk, "'] is not a string");
        out.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    const std::string where = ctx + ": tensor '" + key + "'";
    if (key.empty()) fail(ctx, ": empty tensor name");
    if (!value.is_object()) fail(where, ": entry is not an object");
    for (auto& [field, unused] : value.items()) {
      (void)unused;
      if (field != "dtype" && field != "shape" && field != "data_offsets")
        fail(where, ": unexpected field '", field, "'");
    }
    SafetensorsEntry e;
    e.name = key;
    if (!value.contains("dtype") || !value["dtype"].is_string()) fail(where, ": missing string 'dtype'");
    e.dtype = value["dtype"].get<std::string>();
    int64_t esize = safetensors_dtype_size(e.dtype);
    if (esize == 0) fail(where, ": unknown dtype '", e.dtype, "'");
    if (!value.contains("shape") || !value["shape"].is_array()) fail(where, ": missing array 'shape'");
    uint64_t numel = 1;
    for (const Json& d : value["shape"]) {
      uint64_t dim = to_u64(d, where + " shape");
      if (dim > uint64_t(INT64_MAX)) fail(where, ": shape dimension too large");
      if (dim != 0 && numel > UINT64_MAX / dim) fail(where, ": shape overflows");
      numel *= dim;
      e.shape.push_back(int64_t(dim));
    }
    const Json& offs = value.contains("data_offsets") ? value["data_offsets"] : Json();
    if (!offs.is_array() || offs.size() != 2) fail(where, ": 'data_offsets' must be [begin, end]");
    e.begin = to_u64(offs[0], where + " data_offsets");
    e.end = to_u64(offs[1], where + " data_offsets");
    if (e.begin > e.end) fail(where, ": data_offsets begin ", e.begin, " > end ", e.end);
    if (e.end > data_size)
      fail(where, ": data_offsets end ", e.end, " is past the data buffer (", data_size, " bytes)");
    if (numel > UINT64_MAX / uint64_t(esize)) fail(where, ": byte size overflows");
    if (e.end - e.begin != numel * uint64_t(esize))
      fail(where, ": holds ", e.end - e.begin, " bytes but shape × ", e.dtype, " needs ",
           numel * uint64_t(esize));
    out.entries.push_back(std::move(e));
  }
  std::sort(out.entries.begin(), out.entries.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  uint64_t cursor = 0;
  for (const auto& e : out.entries) {
    if (e.begin < cursor)
      fail(ctx, ": tensor '", e.name, "' [", e.begin, ", ", e.end, ") overlaps the previous tensor");
    if (e.begin > cursor)
      fail(ctx, ": data buffer has a hole at [", cursor, ", ", e.begin, ") before tensor '", e.name, "'");
    cursor = e.end;
  }
  if (cursor != data_size)
    fail(ctx, ": data buffer has ", data_size - cursor, " trailing bytes not covered by any tensor");
  return out;
}

struct SafetensorsFile::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr && size) ::munmap(addr, size);
  }
};

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path), map_(std::make_shared<Mapping>()) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("safetensors: cannot open ", path, ": ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail("safetensors: cannot stat ", path, ": ", std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("safetensors: ", path, " is not a regular file");
  }
  map_->size = size_t(st.st_size);
  if (map_->size > 0) {
    // Private, copy-on-write: tensors may be written to without touching the file.
    void* a = ::mmap(nullptr, map_->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (a == MAP_FAILED) {
      ::close(fd);
      fail("safetensors: cannot map ", path, ": ", std::strerror(errno));
    }
    map_->addr = a;
  }
  ::close(fd);
  header_ = parse_safetensors_header(
      std::string_view(static_cast<const char*>(map_->addr), map_->size), path);
  for (size_t i = 0; i < header_.entries.size(); ++i) index_[header_.entries[i].name] = i;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& kv : index_) out.push_back(kv.first);
  return out;
}

torch::Tensor SafetensorsFile::tensor(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) fail("safetensors: ", path_, ": no tensor named '", name, "'");
  const SafetensorsEntry& e = header_.entries[it->second];
  torch::Dtype dt = safetensors_to_torch_dtype(e.dtype);
  auto opts = torch::TensorOptions().dtype(dt);
  if (e.end == e.begin) return torch::empty(e.shape, opts);
  char* p = static_cast<char*>(map_->addr) + header_.data_start + e.begin;
  int64_t esize = safetensors_dtype_size(e.dtype);
  std::shared_ptr<Mapping> keep = map_;
  torch::Tensor t = torch::from_blob(p, e.shape, [keep](void*) {}, opts);
  // Misaligned data (header length not padded to the element size): copy to aligned memory.
  if (reinterpret_cast<uintptr_t>(p) % uintptr_t(esize) != 0) return t.clone();
  return t;
}

std::map<std::string, torch::Tensor> SafetensorsFile::tensors() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& e : header_.entries) out.emplace(e.name, tensor(e.name));
  return out;
}

std::map<std::string, torch::Tensor> load_safetensors(const std::string& path) {
  return SafetensorsFile(path).tensors();
}

std::string serialize_safetensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> contig;
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name.empty() || name == "__metadata__")
      fail("serialize_safetensors: invalid tensor name '", name, "'");
    if (!seen.insert(name).second) fail("serialize_safetensors: duplicate tensor name '", name, "'");
    if (!t.defined()) fail("serialize_safetensors: tensor '", name, "' is undefined");
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    uint64_t nbytes = uint64_t(c.numel()) * uint64_t(c.element_size());
    header[name] = {{"dtype", torch_to_safetensors_dtype(c.scalar_type())},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    contig.push_back(c);
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');  // align the data buffer to 8 bytes
  std::string out;
  out.reserve(8 + text.size() + offset);
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(char((n >> (8 * i)) & 0xff));
  out += text;
  for (const auto& c : contig)
    out.append(static_cast<const char*>(c.data_ptr()), size_t(c.numel()) * c.element_size());
  return out;
}

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, serialize_safetensors(tensors, metadata));
}

}  // namespace mmb
