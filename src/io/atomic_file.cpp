// Atomic writes: temp file in the target's directory, fsync, rename, fsync the directory.
#include "mmb/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "mmb/error.h"

namespace mmb {
namespace {

std::string errno_text() { return std::strerror(errno); }

std::string parent_dir(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// `who` names the calling function in the error ("write_file_atomic", "append_line_durable").
void write_all(int fd, std::string_view bytes, const std::string& path, const char* who) {
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(who, ": cannot write ", path, ": ", errno_text());
    }
    p += n;
    left -= size_t(n);
  }
}

void fsync_dir(const std::string& dir) {
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd < 0) return;  // best effort: some filesystems refuse directory fds
  ::fsync(dfd);
  ::close(dfd);
}

std::atomic<uint64_t> g_temp_counter{0};

}  // namespace

void make_dirs(const std::string& path) {
  if (path.empty()) return;
  std::string cur;
  std::stringstream ss(path);
  std::string part;
  if (path[0] == '/') cur = "/";
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    cur += part;
    if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST)
      fail("make_dirs: cannot create directory ", cur, ": ", errno_text());
    struct stat st {};
    if (::stat(cur.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      fail("make_dirs: ", cur, " exists and is not a directory");
    cur += "/";
  }
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  if (path_.empty()) fail("AtomicFile: empty path");
  make_dirs(parent_dir(path_));
  temp_path_ = path_ + ".tmp." + std::to_string(::getpid()) + "." +
               std::to_string(g_temp_counter.fetch_add(1));
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("AtomicFile: cannot create ", temp_path_, ": ", errno_text());
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

void AtomicFile::write(std::string_view bytes) {
  if (committed_) fail("AtomicFile::write: ", path_, " already committed");
  write_all(fd_, bytes, temp_path_, "AtomicFile::write");
}

void AtomicFile::commit() {
  if (committed_) return;
  if (::fsync(fd_) != 0) fail("AtomicFile::commit: fsync ", temp_path_, ": ", errno_text());
  if (::close(fd_) != 0) {
    fd_ = -1;
    fail("AtomicFile::commit: close ", temp_path_, ": ", errno_text());
  }
  fd_ = -1;
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0)
    fail("AtomicFile::commit: rename ", temp_path_, " -> ", path_, ": ", errno_text());
  committed_ = true;
  fsync_dir(parent_dir(path_));
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFile f(path);
  f.write(bytes);
  f.commit();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("read_file: cannot open ", path, ": ", errno_text());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("read_file: error reading ", path);
  return ss.str();
}

void append_line_durable(const std::string& path, std::string_view line) {
  make_dirs(parent_dir(path));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) fail("append_line_durable: cannot open ", path, ": ", errno_text());
  std::string buf(line);
  buf.push_back('\n');
  try {
    write_all(fd, buf, path, "append_line_durable");  // O_APPEND + one write: the line lands whole or not at all
  } catch (...) {
    ::close(fd);
    throw;
  }
  if (::fsync(fd) != 0) {
    const std::string why = errno_text();
    ::close(fd);
    fail("append_line_durable: cannot fsync ", path, ": ", why);
  }
  if (::close(fd) != 0) fail("append_line_durable: cannot close ", path, ": ", errno_text());
}

}  // namespace mmb
