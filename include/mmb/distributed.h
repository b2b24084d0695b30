// Data-parallel training over c10d (PyTorch's collective library).
//
// Launch convention (torchrun's): every process gets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
// and optionally LOCAL_RANK in its environment. Rank 0 hosts a c10d TCPStore at
// MASTER_ADDR:MASTER_PORT through which the ranks find each other; the collectives run over a
// ProcessGroupGloo (CPU tensors; built when USE_C10D_GLOO is defined). Builds against a CUDA
// libtorch that define USE_C10D_NCCL use ProcessGroupNCCL instead (CPU tensors are staged through
// cuda:<LOCAL_RANK>); that path is not exercised by CI, which has no CUDA.
//
// When WORLD_SIZE is unset or 1 nothing is created: every collective is a local no-op (gradient
// averaging still divides), so single-process code needs no branches.
//
// What data parallelism here means (as torch DDP): every rank holds the full model; rank 0's
// initial weights are broadcast; each rank computes gradients on its shard of every global batch;
// gradients are summed across ranks in flat buckets and divided, so every rank applies the same
// update and the weights stay identical. Only rank 0 writes checkpoints and metrics.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace mmb {

// The torchrun environment.
struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

// Reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. Unset WORLD_SIZE = 1. Throws
// mmb::Error naming the variable for a malformed value, rank outside [0, world), or a world > 1
// without RANK / MASTER_ADDR / MASTER_PORT.
DistEnv dist_env_from_environment();

struct DistOptions {
  int64_t timeout_s = 300;                   // store and collective timeout
  int64_t bucket_bytes = 25ll * 1024 * 1024; // gradient bucket size (torch DDP's default 25 MB)
  // "auto": NCCL when the build has it (USE_C10D_NCCL) and CUDA is available, else Gloo;
  // "gloo"; "nccl" (an error in builds without it). Gloo is always created (CPU collectives).
  std::string backend = "auto";
};

class Distributed {
 public:
  // world_size 1: no c10d. Otherwise connects to the store and creates the process group (blocks
  // until all ranks have joined or the timeout passes). Throws mmb::Error (also when this build
  // has no Gloo).
  explicit Distributed(const DistEnv& env, DistOptions options = {});
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  bool is_main() const { return env_.rank == 0; }
  bool active() const { return env_.world_size > 1; }
  const DistEnv& env() const { return env_; }

  // Overwrites every parameter and buffer of `module` with rank `root`'s (in place).
  void broadcast_module(torch::nn::Module& module, int root = 0);
  // In-place broadcast of a tensor from `root`.
  void broadcast(torch::Tensor& tensor, int root = 0);
  // In-place sum across ranks.
  void allreduce_sum(torch::Tensor& tensor);
  // For each parameter, grad = (sum over ranks of grad) / divisor. Gradients are flattened into
  // buckets of ~bucket_bytes per dtype, all buckets are all-reduced concurrently, then divided and
  // copied back. A parameter without a gradient contributes zeros (and gets a zero gradient), so
  // every rank sends the same bucket layout. Call after the last micro-batch's backward only.
  void allreduce_gradients(const std::vector<torch::Tensor>& params, double divisor);
  void barrier();

 private:
  struct Impl;
  DistEnv env_;
  DistOptions options_;
  std::unique_ptr<Impl> impl_;
};

// Rows [begin, end) of a global batch of `global` rows that `rank` of `world` reads: contiguous
// blocks, the first (global % world) ranks one row longer.
std::pair<int64_t, int64_t> shard_range(int64_t global, int rank, int world);

}  // namespace mmb
