#include "mmb/atomic_file.h"

#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>

#include "test_util.h"

using mmb::testing::TempDir;

TEST(AtomicFile, WritesAndReadsBack) {
  TempDir d;
  mmb::write_file_atomic(d.file("a/b/c.txt"), "hello");
  EXPECT_EQ(mmb::read_file(d.file("a/b/c.txt")), "hello");
  mmb::write_file_atomic(d.file("a/b/c.txt"), "second");
  EXPECT_EQ(mmb::read_file(d.file("a/b/c.txt")), "second");
}

TEST(AtomicFile, UncommittedWriteLeavesOldFileAndNoTemp) {
  TempDir d;
  mmb::write_file_atomic(d.file("x"), "old contents");
  {
    mmb::AtomicFile f(d.file("x"));
    f.write("new contents that never land");
    // destroyed without commit(): as if an exception unwound the writer
  }
  EXPECT_EQ(mmb::read_file(d.file("x")), "old contents");
  DIR* dir = ::opendir(d.path().c_str());
  int n = 0;
  while (dirent* e = ::readdir(dir)) n += e->d_name[0] != '.';
  ::closedir(dir);
  EXPECT_EQ(n, 1) << "temp file left behind";
}

TEST(AtomicFile, KilledWriterLeavesOldFileIntact) {
  TempDir d;
  const std::string target = d.file("model.bin");
  mmb::write_file_atomic(target, "old contents");
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    mmb::AtomicFile f(target);
    std::string chunk(1 << 16, 'n');
    for (int i = 0; i < 64; ++i) f.write(chunk);
    ::_exit(0);  // killed before commit: no destructor, no rename
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_EQ(mmb::read_file(target), "old contents");
}

TEST(AtomicFile, AppendLineKeepsEarlierLines) {
  TempDir d;
  mmb::append_line_durable(d.file("m.jsonl"), "{\"step\":1}");
  mmb::append_line_durable(d.file("m.jsonl"), "{\"step\":2}");
  EXPECT_EQ(mmb::read_file(d.file("m.jsonl")), "{\"step\":1}\n{\"step\":2}\n");
}

TEST(AtomicFile, ErrorsNameThePath) {
  mmb::testing::expect_throw_with([] { mmb::read_file("/nonexistent/dir/f"); }, "/nonexistent/dir/f");
  TempDir d;
  mmb::write_file_atomic(d.file("plain"), "x");
  mmb::testing::expect_throw_with([&] { mmb::write_file_atomic(d.file("plain/sub"), "y"); },
                                  "not a directory");
}

TEST(AtomicFile, AppendLineReportsAFullDiskUnderItsOwnName) {
  // /dev/full accepts the open and fails every write with ENOSPC, as a full disk does.
  if (::access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no writable /dev/full";
  mmb::testing::expect_throw_with([] { mmb::append_line_durable("/dev/full", "{\"step\":1}"); },
                                  "append_line_durable: cannot write /dev/full");
}
