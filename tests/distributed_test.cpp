// Data parallelism: the torchrun environment, shards, and a 2-process Gloo run on loopback that
// must keep both ranks' weights identical and match one process trained on the doubled batch.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include <gtest/gtest.h>

#include "mmb/distributed.h"
#include "mmb/run_dir.h"
#include "mmb/safetensors.h"
#include "mmb/train.h"
#include "subprocess_util.h"
#include "test_util.h"
#include "train_test_util.h"

namespace fs = std::filesystem;
using namespace mmb;
using namespace mmb::testing;

namespace {

// Sets environment variables for one scope, restoring the old values.
class ScopedEnv {
 public:
  ScopedEnv(std::vector<std::pair<std::string, const char*>> vars) {
    for (auto& [k, v] : vars) {
      const char* old = std::getenv(k.c_str());
      saved_.emplace_back(k, old ? std::optional<std::string>(old) : std::nullopt);
      if (v) ::setenv(k.c_str(), v, 1);
      else ::unsetenv(k.c_str());
    }
  }
  ~ScopedEnv() {
    for (auto& [k, v] : saved_) {
      if (v) ::setenv(k.c_str(), v->c_str(), 1);
      else ::unsetenv(k.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

constexpr int kDdpSteps = 5;
constexpr int64_t kGlobalBatch = 8;  // per rank 4 with 2 ranks

// Trains the tiny net on this process's shard; rank r starts from seed 100 + r, so only the
// initial broadcast makes the ranks agree.
std::map<std::string, torch::Tensor> train_ddp(Distributed& dist, const std::string& out, RunDir* run) {
  auto net = make_tiny_net(100 + uint64_t(dist.rank()));
  auto data = make_toy_data(64, 101);
  ParamGroupOptions po;
  po.lr = 1e-2;
  po.weight_decay = 0.01;
  po.groups = {{"head", {"head."}, 3e-2, -1}};
  TrainOptions o;
  o.total_steps = kDdpSteps;
  o.warmup_steps = 1;
  o.grad_accum = 2;
  o.grad_clip = 1.0;
  o.out_dir = out;
  o.progress = false;
  Trainer trainer(*net, make_param_groups(*net, po), o);
  trainer.set_distributed(&dist);
  trainer.set_run_dir(run);
  ShardedIndexBatches batches(64, kGlobalBatch, 102, dist.rank(), dist.world_size());
  trainer.set_data<std::vector<int64_t>>(batches, [&](std::vector<int64_t>& idx) { return toy_loss(net, data, idx); });
  trainer.train();
  return module_tensors(*net);
}

}  // namespace

TEST(DistributedEnv, ReadsTorchrunVariables) {
  {
    ScopedEnv env({{"RANK", nullptr}, {"WORLD_SIZE", nullptr}, {"MASTER_ADDR", nullptr}, {"MASTER_PORT", nullptr},
                   {"LOCAL_RANK", nullptr}});
    DistEnv e = dist_env_from_environment();
    EXPECT_EQ(e.world_size, 1);
    EXPECT_EQ(e.rank, 0);
  }
  {
    ScopedEnv env({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "29501"},
                   {"LOCAL_RANK", "0"}});
    DistEnv e = dist_env_from_environment();
    EXPECT_EQ(e.rank, 1);
    EXPECT_EQ(e.world_size, 2);
    EXPECT_EQ(e.local_rank, 0);
    EXPECT_EQ(e.master_addr, "10.0.0.1");
    EXPECT_EQ(e.master_port, 29501);
  }
  {
    ScopedEnv env({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "x"}, {"MASTER_PORT", "1"}});
    expect_throw_with([] { dist_env_from_environment(); }, "RANK=2 is not below WORLD_SIZE=2");
  }
  {
    ScopedEnv env({{"RANK", "0"}, {"WORLD_SIZE", "two"}});
    expect_throw_with([] { dist_env_from_environment(); }, "WORLD_SIZE='two' is not an integer");
  }
  {
    ScopedEnv env({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", nullptr}, {"MASTER_PORT", "1"}});
    expect_throw_with([] { dist_env_from_environment(); }, "MASTER_ADDR is not set");
  }
}

TEST(DistributedEnv, ShardRanges) {
  EXPECT_EQ(shard_range(8, 0, 2), (std::pair<int64_t, int64_t>{0, 4}));
  EXPECT_EQ(shard_range(8, 1, 2), (std::pair<int64_t, int64_t>{4, 8}));
  EXPECT_EQ(shard_range(7, 0, 3), (std::pair<int64_t, int64_t>{0, 3}));
  EXPECT_EQ(shard_range(7, 1, 3), (std::pair<int64_t, int64_t>{3, 5}));
  EXPECT_EQ(shard_range(7, 2, 3), (std::pair<int64_t, int64_t>{5, 7}));
  expect_throw_with([] { shard_range(4, 2, 2); }, "rank 2 of world 2");
}

TEST(DistributedEnv, SingleProcessIsLocal) {
  Distributed dist(DistEnv{});
  EXPECT_FALSE(dist.active());
  EXPECT_TRUE(dist.is_main());
  auto p = torch::ones({3}, torch::requires_grad());
  p.mutable_grad() = torch::full({3}, 4.0);
  dist.allreduce_gradients({p}, 2.0);
  EXPECT_TRUE(torch::equal(p.grad(), torch::full({3}, 2.0)));
  auto t = torch::arange(3);
  dist.allreduce_sum(t);
  dist.broadcast(t);
  dist.barrier();
  EXPECT_TRUE(torch::equal(t, torch::arange(3)));
}

// One rank of the 2-process test (started by DistributedGloo.TwoRanksMatchDoubledBatch).
TEST(DistributedChild, Rank) {
  const char* out = std::getenv("MMB_DDP_CHILD_OUT");
  if (!out) GTEST_SKIP() << "child process of DistributedGloo tests only";
  torch::set_num_threads(1);
  DistOptions opts;
  opts.timeout_s = 60;
  opts.bucket_bytes = 2048;  // several buckets for this tiny model
  Distributed dist(dist_env_from_environment(), opts);
  ASSERT_TRUE(dist.active());
  std::unique_ptr<RunDir> run;
  if (dist.is_main()) run = std::make_unique<RunDir>(std::string(out) + "/run", RunInfo{});
  auto weights = train_ddp(dist, std::string(out) + "/run", run.get());
  std::vector<std::pair<std::string, torch::Tensor>> list(weights.begin(), weights.end());
  save_safetensors(std::string(out) + "/rank" + std::to_string(dist.rank()) + ".safetensors", list);
  if (run) run->finish();
}

TEST(DistributedGloo, TwoRanksMatchDoubledBatch) {
#ifndef USE_C10D_GLOO
  // Gloo is a required part of the build on Debian (libgloo-dev): a build without it must fail
  // here, not skip silently.
  FAIL() << "built without c10d Gloo (USE_C10D_GLOO): install libgloo-dev and reconfigure";
#endif
  TempDir tmp;
  const std::string port = std::to_string(free_port());
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r)
    pids.push_back(spawn_self("DistributedChild.Rank",
                              {{"MMB_DDP_CHILD_OUT", tmp.path()},
                               {"RANK", std::to_string(r)},
                               {"LOCAL_RANK", std::to_string(r)},
                               {"WORLD_SIZE", "2"},
                               {"MASTER_ADDR", "127.0.0.1"},
                               {"MASTER_PORT", port}},
                              tmp.file("rank" + std::to_string(r) + ".log")));
  for (int r = 0; r < 2; ++r) {
    int st = wait_child(pids[size_t(r)], 90);
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
        << "rank " << r << " failed:\n" << slurp(tmp.file("rank" + std::to_string(r) + ".log"));
  }
  auto w0 = load_safetensors(tmp.file("rank0.safetensors"));
  auto w1 = load_safetensors(tmp.file("rank1.safetensors"));
  // (a) the ranks agree exactly.
  EXPECT_EQ(max_abs_diff(w0, w1), 0.0);
  // (b) one process with the doubled (= global) batch, from rank 0's initial weights.
  TempDir single_out;
  Distributed single(DistEnv{});
  auto ws = train_ddp(single, single_out.path(), nullptr);
  double diff = max_abs_diff(w0, ws);
  EXPECT_LE(diff, 1e-5);
  std::printf("2-rank Gloo vs single process (doubled batch): max |w| diff = %.3g\n", diff);
  // Only rank 0 wrote metrics and checkpoints.
  std::ifstream metrics(tmp.file("run/metrics.jsonl"));
  int lines = 0;
  for (std::string l; std::getline(metrics, l);) lines += !l.empty();
  EXPECT_EQ(lines, kDdpSteps);
  EXPECT_TRUE(fs::exists(tmp.file("run/checkpoints/step-5/trainer_state.json")));
}
