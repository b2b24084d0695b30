#include "mmb/fingerprint.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <vector>

#include "mmb/error.h"

namespace mmb {
namespace {

constexpr uint64_t kFnvOffset = 14695981039346656037ULL;
constexpr uint64_t kFnvPrime = 1099511628211ULL;

uint64_t fnv1a(uint64_t h, const char* data, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    h ^= uint64_t(static_cast<unsigned char>(data[i]));
    h *= kFnvPrime;
  }
  return h;
}

std::string hex(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace

std::string fnv1a_hex(const std::string& bytes) { return hex(fnv1a(kFnvOffset, bytes.data(), bytes.size())); }

std::string file_digest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("file_digest: cannot open ", path);
  uint64_t h = kFnvOffset;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), std::streamsize(buf.size()));
    h = fnv1a(h, buf.data(), size_t(in.gcount()));
  }
  if (in.bad()) fail("file_digest: read error in ", path);
  return hex(h);
}

Fingerprint& Fingerprint::add(const std::string& name, const Json& settings) {
  parts_[name] = fnv1a_hex(settings.dump());  // nlohmann's objects are std::map: keys sorted
  return *this;
}

Fingerprint& Fingerprint::add_file(const std::string& name, const std::string& path) {
  parts_[name] = file_digest(path);
  return *this;
}

std::string Fingerprint::id() const {
  std::string all;
  for (const auto& [name, digest] : parts_) all += name + '\0' + digest + '\0';
  return fnv1a_hex(all);
}

Json Fingerprint::to_json() const { return {{"id", id()}, {"parts", parts_}}; }

Fingerprint Fingerprint::from_json(const Json& j, const std::string& where) {
  Fingerprint f;
  const Json parts = json_get<Json>(j, "parts", where);
  if (!parts.is_object()) fail("Fingerprint::from_json: ", where, ": 'parts' must be an object");
  for (auto it = parts.begin(); it != parts.end(); ++it) {
    if (!it->is_string()) fail("Fingerprint::from_json: ", where, ": part '", it.key(), "' is not a string");
    f.parts_[it.key()] = it->get<std::string>();
  }
  const std::string stored = json_get<std::string>(j, "id", where);
  if (stored != f.id()) fail("Fingerprint::from_json: ", where, ": id ", stored, " does not match its parts");
  return f;
}

std::vector<std::string> Fingerprint::differences(const Fingerprint& other) const {
  std::vector<std::string> out;
  for (const auto& [name, digest] : parts_) {
    auto it = other.parts_.find(name);
    if (it == other.parts_.end() || it->second != digest) out.push_back(name);
  }
  for (const auto& [name, digest] : other.parts_)
    if (!parts_.count(name)) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

void Fingerprint::require_same(const Fingerprint& stored, const std::string& what, const std::string& where) const {
  const auto diff = differences(stored);
  if (diff.empty()) return;
  std::string names;
  for (const auto& d : diff) names += (names.empty() ? "" : ", ") + d;
  fail(what, ": ", where, " was computed from other inputs: ", names, " changed");
}

}  // namespace mmb
