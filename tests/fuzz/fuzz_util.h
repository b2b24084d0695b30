// Shared by the libFuzzer targets (docs/reliability.md). A target feeds the bytes to one reader
// of outside bytes. A rejection is an mmb::Error (a clear message); anything else that escapes —
// another exception, a crash, a sanitizer report, a leak — is a finding.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "mmb/error.h"

namespace mmb::fuzz {

inline std::string_view bytes_of(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// A directory of this process under $TMPDIR (default /tmp), removed at exit. The name lives in
// a static that is never destroyed: the exit handler runs after static destructors would have.
inline const std::string& scratch_dir() {
  static const std::string* dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    auto* d = new std::string(std::string(tmp && *tmp ? tmp : "/tmp") + "/mmb_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(*d);
    std::atexit([] { std::error_code ec; std::filesystem::remove_all(scratch_dir(), ec); });
    return d;
  }();
  return *dir;
}

// Writes `bytes` to scratch_dir()/name and returns the path.
inline std::string write_scratch(const std::string& name, std::string_view bytes) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  out.close();
  if (!out) std::abort();  // the harness itself failed: not a finding in the code under test
  return path;
}

// Runs `f`; an mmb::Error is the expected rejection of bad bytes, and its message must say
// something (a reason).
template <typename F>
void expect_clear_error(F&& f) {
  try {
    f();
  } catch (const mmb::Error& e) {
    if (std::string_view(e.what()).empty()) std::abort();
  }
}

}  // namespace mmb::fuzz
