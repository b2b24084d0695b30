// Atomic file writes: every file mmb writes goes through here.
//
// A write goes to "<path>.tmp.<pid>.<n>" in the same directory, is fsync'ed, then renamed over
// <path> and the directory is fsync'ed. A reader therefore sees the old file or the new file,
// never a torn one; a process killed mid-write leaves the old file intact (and at most a stray
// temp file, which the next write of the same path ignores).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace mmb {

// Writes `bytes` to `path` atomically. Creates missing parent directories. Throws mmb::Error.
void write_file_atomic(const std::string& path, std::string_view bytes);

// Reads a whole file. Throws mmb::Error naming the path if it cannot be opened or read.
std::string read_file(const std::string& path);

// Streaming atomic writer for large outputs: write() any number of times, then commit().
// Destroying it without commit() removes the temp file and leaves `path` untouched.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(std::string_view bytes);
  // fsync, rename over the target, fsync the directory. Idempotent after success.
  void commit();
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }

 private:
  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

// Appends one line (a '\n' is added) with a single write() and fsync: a crash leaves every
// earlier line intact. Used for metrics.jsonl. Throws mmb::Error.
void append_line_durable(const std::string& path, std::string_view line);

// Creates a directory and its parents (like mkdir -p). Throws mmb::Error.
void make_dirs(const std::string& path);

}  // namespace mmb
