// The hostile-file catalogue (tests/hostile/catalogue.json, written by make_catalogue.py): every
// file goes to the reader it attacks in a child process with a bounded address space, and must
// come back as an mmb::Error that names the file and the reason — no crash, no other exception,
// no allocation past the bound, no hang.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <torch/torch.h>

#include "mmb/chat_template.h"
#include "mmb/checkpoint.h"
#include "mmb/image.h"
#include "mmb/json.h"
#include "mmb/jsonl.h"
#include "mmb/model_config.h"
#include "mmb/prefs.h"
#include "mmb/safetensors.h"
#include "mmb/tokenizer.h"
#include "mmb/world.h"

namespace {

namespace fs = std::filesystem;
using mmb::Json;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
#else
constexpr bool kAsan = false;
#endif

// How far beyond its size at the fork the child may grow its address space.
constexpr size_t kHeadroomBytes = size_t(1) << 30;

void read_with(const std::string& reader, const std::string& path) {
  if (reader == "safetensors") {
    mmb::SafetensorsFile f(path);
    for (const auto& n : f.names()) (void)f.tensor(n);
  } else if (reader == "image") {
    (void)mmb::read_image(path);
  } else if (reader == "json") {
    (void)mmb::read_json_file(path);
  } else if (reader == "llava_config") {
    (void)mmb::llava_config_from_json(mmb::read_json_file(path), path);
  } else if (reader == "jsonl") {
    (void)mmb::read_jsonl_file(path);
  } else if (reader == "scenes") {
    (void)mmb::world::read_scenes(path);
  } else if (reader == "prefs") {
    (void)mmb::read_preference_pairs(path);
  } else if (reader == "prefs_images") {
    for (const auto& p : mmb::read_preference_pairs(path)) mmb::check_under_root(p.image, p.where, "hostile");
  } else if (reader == "index") {
    torch::nn::Linear lin(2, 2);
    mmb::load_weights(*lin, path);
  } else if (reader == "chat_template") {
    (void)mmb::chat_template_for(path);
  } else if (reader == "tokenizer") {
    (void)mmb::Tokenizer::load(path);
  } else {
    throw std::logic_error("unknown reader " + reader);
  }
}

size_t address_space_bytes() {
  std::ifstream in("/proc/self/statm");
  size_t pages = 0;
  in >> pages;
  return pages * size_t(::sysconf(_SC_PAGESIZE));
}

struct Outcome {
  std::string kind;  // "error" (mmb::Error), "exception" (anything else), "accepted", "crash", "hang"
  std::string message;
};

Outcome run_in_child(const std::string& reader, const std::string& path) {
  int fds[2];
  if (::pipe(fds) != 0) return {"crash", "pipe failed"};
  const size_t limit = address_space_bytes() + kHeadroomBytes;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    if (!kAsan) {  // ASan reserves terabytes of shadow memory: no address-space limit under it
      rlimit lim{limit, limit};
      ::setrlimit(RLIMIT_AS, &lim);
    }
    std::string out;
    try {
      read_with(reader, path);
      out = "accepted\n";
    } catch (const mmb::Error& e) {
      out = std::string("error\n") + e.what();
    } catch (const std::exception& e) {
      out = std::string("exception\n") + e.what();
    }
    (void)!::write(fds[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      ::close(fds[0]);
      return {"hang", "no answer in 60 s"};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::string got;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) got.append(buf, size_t(n));
  ::close(fds[0]);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return {"crash", "status " + std::to_string(status) + (WIFSIGNALED(status) ? " signal " + std::to_string(WTERMSIG(status)) : "")};
  const auto nl = got.find('\n');
  return {got.substr(0, nl), nl == std::string::npos ? "" : got.substr(nl + 1)};
}

}  // namespace

TEST(Hostile, EveryFileIsRejectedWithAClearError) {
  const std::string dir = std::string(MMB_SOURCE_DIR) + "/tests/hostile";
  const Json catalogue = mmb::read_json_file(dir + "/catalogue.json");
  ASSERT_GE(catalogue.size(), 25u);
  int checked = 0;
  for (const Json& e : catalogue) {
    const std::string file = e["file"], reader = e["reader"], expect = e["expect"];
    const std::string path = dir + "/files/" + file;
    ASSERT_TRUE(fs::exists(path)) << path << " is missing: run tests/hostile/make_catalogue.py";
    const Outcome o = run_in_child(reader, path);
    SCOPED_TRACE(file + " (" + reader + "): " + o.kind + ": " + o.message);
    EXPECT_EQ(o.kind, "error");
    // The error names the file (its path, or for a directory the file inside it) and the reason.
    EXPECT_NE(o.message.find(file), std::string::npos);
    EXPECT_NE(o.message.find(expect), std::string::npos) << "expected the reason to mention '" << expect << "'";
    std::printf("  %-34s %s\n", file.c_str(), o.message.substr(o.message.find(file) == std::string::npos ? 0 : o.message.find(file) + file.size()).substr(0, 110).c_str());
    ++checked;
  }
  EXPECT_EQ(checked, int(catalogue.size()));
}
