// Faults survived by the real commands: `mmb train clip | sft | dpo | rl` (DPO offline and online) killed
// with SIGKILL at random moments resume to the bit-identical model and per-step losses of an
// uninterrupted run; a file-size limit (a full disk) during a checkpoint is a clear error that
// leaves the previous checkpoint intact, and the run resumes from it once there is room.
// Every run is a child process of the mmb binary on a tiny world, one thread (bit-exact).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>

#include "mmb/atomic_file.h"
#include "mmb/json.h"
#include "mmb/jsonl.h"
#include "mmb/safetensors.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using mmb::Json;

const std::string kMmb = std::string(MMB_BINARY_DIR) + "/mmb";
const std::string kBase = std::string(MMB_SOURCE_DIR) + "/models/base";

// Starts `cmd` (a shell command line) as a child; output to `log`. With `fsize` > 0 the child may
// write no file larger than that many bytes, and a write past it fails with EFBIG (SIGXFSZ is
// ignored), as on a full disk.
pid_t start(const std::string& cmd, const std::string& log, rlim_t fsize = 0) {
  const std::string line = "MMB_THREADS=1 exec " + cmd + " > " + log + " 2>&1";
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (fsize > 0) {
      ::signal(SIGXFSZ, SIG_IGN);
      rlimit lim{fsize, fsize};
      ::setrlimit(RLIMIT_FSIZE, &lim);
    }
    ::execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

int wait_for(pid_t pid, double timeout_s = 300) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      ADD_FAILURE() << "child timed out";
      return status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return status;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

int run(const std::string& cmd, const std::string& log) {
  const int status = wait_for(start(cmd, log));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << cmd << "\n" << slurp(log);
  return status;
}

// Per-step losses of a run (the last record of each step: a resumed run repeats none).
std::map<int64_t, double> losses(const std::string& out) {
  std::map<int64_t, double> l;
  mmb::JsonlReader r(out + "/metrics.jsonl");
  for (Json v; r.next(v);)
    if (v.contains("step") && v.contains("loss") && v["loss"].is_number()) l[v["step"].get<int64_t>()] = v["loss"].get<double>();
  return l;
}

void expect_same_model(const std::string& a, const std::string& b) {
  const auto ta = mmb::load_safetensors(a + "/model/model.safetensors");
  const auto tb = mmb::load_safetensors(b + "/model/model.safetensors");
  ASSERT_EQ(ta.size(), tb.size());
  for (const auto& [name, t] : ta) {
    ASSERT_TRUE(tb.count(name)) << name;
    EXPECT_TRUE(torch::equal(t, tb.at(name))) << name << " differs after the resume";
  }
}

// A tiny world (the shipped model's settings, few scenes), generated once per test process.
const std::string& world() {
  static mmb::testing::TempDir dir;
  static const std::string w = [] {
    const std::string out = dir.file("world");
    run(kMmb + " world generate --config " + kBase + "/world.toml --out " + out +
            " --train 48 --val 4 --test 4 --shifted 0 --qa-turns 2",
        dir.file("world.log"));
    return out;
  }();
  return w;
}

// The last step logged in OUT/metrics.jsonl (complete lines only; -1 before the first).
int64_t last_logged_step(const std::string& out) {
  std::istringstream in(slurp(out + "/metrics.jsonl"));
  int64_t last = -1;
  for (std::string line; std::getline(in, line);) {
    if (in.eof()) break;  // a line still being written
    try {
      const Json v = mmb::parse_json(line, "metrics.jsonl");
      if (v.contains("step") && v["step"].is_number_integer()) last = std::max(last, v["step"].get<int64_t>());
    } catch (const mmb::Error&) {
    }
  }
  return last;
}

// Runs `cmd --out OUT` uninterrupted into ref, and into killed with two SIGKILLs (the first while
// it trains after its first checkpoint, the second at any moment of the resumed run), each
// followed by a rerun of the same command; the models and losses must match. The first kill
// waits for a random step after the checkpoint to be logged, then a random part of a step, so it
// lands before the end however fast the steps run next to the start-up and to other jobs.
void kill_and_resume(const std::string& name, const std::string& cmd, uint64_t seed) {
  mmb::testing::TempDir tmp;
  const std::string ref = tmp.file("ref"), killed = tmp.file("killed");
  const auto t0 = std::chrono::steady_clock::now();
  run(cmd + " --out " + ref, tmp.file("ref.log"));
  const double full = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t steps = last_logged_step(ref);
  ASSERT_GE(steps, 3) << "the run logged too few steps to be killed between them";
  std::mt19937_64 rng(seed);
  int kills = 0;
  for (int round = 0; round < 2; ++round) {
    const std::string log = tmp.file("killed" + std::to_string(round) + ".log");
    const pid_t pid = start(cmd + " --out " + killed, log);
    int delay_ms = 0;
    if (round == 0) {  // after the first checkpoint, a random step before the last, then part of a step
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
      while (!fs::exists(killed + "/checkpoints/latest") && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      const int64_t from = std::max<int64_t>(last_logged_step(killed), 1);
      const int64_t target = std::uniform_int_distribution<int64_t>(std::min(from, steps - 2), steps - 2)(rng);
      while (last_logged_step(killed) < target && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      delay_ms = int(std::uniform_real_distribution<double>(0.0, 0.5)(rng) * full * 1000.0 / double(steps + 10));
    } else {  // any moment of the resumed run
      delay_ms = int(std::uniform_real_distribution<double>(0.05, 0.6)(rng) * full * 1000.0 / 2.0);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ::kill(pid, SIGKILL);
    const int status = wait_for(pid);
    kills += WIFSIGNALED(status) ? 1 : 0;
    std::printf("[          ] %s: kill %d after %d ms: %s\n", name.c_str(), round + 1, delay_ms,
                WIFSIGNALED(status) ? "killed" : "had already finished");
  }
  EXPECT_GE(kills, 1) << "the runs finished before any kill: make them longer";
  run(cmd + " --out " + killed, tmp.file("resumed.log"));
  expect_same_model(ref, killed);
  const auto lr = losses(ref), lk = losses(killed);
  ASSERT_FALSE(lr.empty());
  EXPECT_EQ(lr.size(), lk.size());
  for (const auto& [step, l] : lr) {
    ASSERT_TRUE(lk.count(step)) << "step " << step << " missing after the resume";
    EXPECT_EQ(l, lk.at(step)) << "step " << step;
  }
}

std::string sft_command(int steps) {
  return kMmb + " train sft --model " + kBase + "/vlm --data " + world() + "/train/llava.json --image-root " +
         world() + " --steps " + std::to_string(steps) + " --batch 4 --checkpoint-every 3 --lr 1e-4";
}

}  // namespace

TEST(Faults, KilledClipResumesExactly) {
  kill_and_resume("clip",
                  kMmb + " train clip --model " + kBase + "/clip --captions " + world() +
                      "/train/captions.jsonl --image-root " + world() + " --steps 16 --batch 8 --checkpoint-every 3",
                  101);
}

TEST(Faults, KilledSftResumesExactly) { kill_and_resume("sft", sft_command(16), 102); }

TEST(Faults, KilledDpoResumesExactly) {
  // Pairs from the world's captions: the truth against a caption of another scene.
  mmb::testing::TempDir tmp;
  std::vector<Json> caps;
  mmb::JsonlReader r(world() + "/train/captions.jsonl");
  for (Json v; r.next(v);) caps.push_back(v);
  {
    mmb::JsonlWriter w(tmp.file("pairs.jsonl"));
    for (size_t i = 0; i < caps.size(); ++i)
      w.write({{"prompt", "Describe the image."}, {"chosen", caps[i]["caption"]},
               {"rejected", caps[(i + 1) % caps.size()]["caption"]}, {"images", {caps[i]["image"]}}});
    w.close();
  }
  kill_and_resume("dpo",
                  kMmb + " train dpo --model " + kBase + "/vlm --data " + tmp.file("pairs.jsonl") +
                      " --image-root " + world() + " --steps 14 --batch 4 --checkpoint-every 3",
                  103);
}

TEST(Faults, KilledOnlineDpoResumesExactly) {
  // Online DPO samples its pairs each step: the resume must restore the sampler's state too.
  kill_and_resume("online dpo",
                  kMmb + " train dpo --online --model " + kBase + "/vlm --world " + world() +
                      " --steps 10 --batch 2 --samples-per-prompt 2 --max-new-tokens 24 --checkpoint-every 3",
                  104);
}

TEST(Faults, KilledRlResumesExactly) {
  // GRPO samples G answers a prompt and rewards them with the confidence estimator's levels: the
  // resume restores the sampler and the data order with the weights.
  mmb::testing::TempDir tmp;
  run(kMmb + " boundary signals --model " + kBase + "/vlm --clip " + kBase + "/clip --world " + world() +
          " --split val --limit 4 --quiet --steps " + tmp.file("steps.jsonl"),
      tmp.file("signals.log"));
  run(kMmb + " boundary fit --steps " + tmp.file("steps.jsonl") + " --out " + tmp.file("confidence.json"),
      tmp.file("fit.log"));
  kill_and_resume("rl",
                  kMmb + " train rl --model " + kBase + "/vlm --clip " + kBase + "/clip --confidence " +
                      tmp.file("confidence.json") + " --world " + world() +
                      " --steps 8 --batch 2 --group-size 2 --max-new-tokens 16 --checkpoint-every 2",
                  105);
}

TEST(Faults, FullDiskDuringACheckpointKeepsThePreviousOne) {
  mmb::testing::TempDir tmp;
  const std::string ref = tmp.file("ref"), out = tmp.file("run");
  run(sft_command(9) + " --out " + ref, tmp.file("ref.log"));
  // A run killed after its first checkpoint (step 3) ...
  const pid_t pid = start(sft_command(9) + " --out " + out, tmp.file("first.log"));
  while (!fs::exists(out + "/checkpoints/latest")) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ::kill(pid, SIGKILL);
  wait_for(pid);
  const std::string latest = mmb::read_file(out + "/checkpoints/latest");
  // ... resumed where files may not exceed half a checkpoint's weights: the next checkpoint fails.
  const auto weights = fs::file_size(out + "/checkpoints/" + latest.substr(0, latest.find('\n')) + "/model.safetensors");
  const int status = wait_for(start(sft_command(9) + " --out " + out, tmp.file("full.log"), rlim_t(weights / 2)));
  const std::string log = slurp(tmp.file("full.log"));
  ASSERT_TRUE(WIFEXITED(status)) << "died of signal " << WTERMSIG(status) << "\n" << log;
  EXPECT_EQ(WEXITSTATUS(status), 1) << log;
  EXPECT_NE(log.find("error: "), std::string::npos) << log;
  EXPECT_NE(log.find("File too large"), std::string::npos) << "the error names the cause\n" << log;
  // The previous checkpoint is still the latest, complete and loadable.
  EXPECT_EQ(mmb::read_file(out + "/checkpoints/latest"), latest);
  const std::string dir = out + "/checkpoints/" + latest.substr(0, latest.find('\n'));
  EXPECT_NO_THROW(mmb::load_safetensors(dir + "/model.safetensors"));
  for (const auto& e : fs::directory_iterator(out + "/checkpoints"))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << "left behind: " << e.path();
  // With room again the run resumes from it and ends where the uninterrupted run ended.
  run(sft_command(9) + " --out " + out, tmp.file("resumed.log"));
  EXPECT_NE(slurp(tmp.file("resumed.log")).find("resumed at step"), std::string::npos);
  expect_same_model(ref, out);
}
