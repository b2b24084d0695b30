#include "mmb/threads.h"

#include <sched.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cstdlib>
#include <thread>

#include <torch/torch.h>

extern "C" {
// OpenBLAS's own pool; declared here so mmb does not need OpenBLAS's cblas.h.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char* openblas_get_config(void);
}

namespace mmb {

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

// Cores not already busy: available cores minus the rounded 1-minute load average (at least 1).
// OpenBLAS's threads spin while they wait; on cores other processes keep busy they fight the
// scheduler: a training step measured 17x slower with 2 BLAS threads than with 1 while two
// compilers ran (docs/performance.md).
int idle_cores() {
  const int cores = available_cores();
  double load[1] = {0.0};
  if (getloadavg(load, 1) != 1) return cores;
  return std::max(1, std::min(cores, cores - int(load[0] + 0.5)));
}

ThreadPolicy default_thread_policy(int n) {
  if (n <= 0) n = idle_cores();
  // Measured in bench/threads_bench (docs/performance.md): GEMMs dominate the models mmb runs,
  // so OpenBLAS gets the cores and libtorch's intra-op pool stays at 1. Both pools at n
  // oversubscribe the cores (forward 2.3x, backward 2x slower); torch=n with BLAS=1 halves GEMM.
  ThreadPolicy p;
  p.torch_intra_op = 1;
  p.blas = n;
  return p;
}

void apply_thread_policy(const ThreadPolicy& policy) {
  at::set_num_threads(std::max(1, policy.torch_intra_op));
  openblas_set_num_threads(std::max(1, policy.blas));
  apply_allocator_policy();
}

void apply_allocator_policy() {
#if defined(__GLIBC__)
  // libtorch's CPU tensors come from glibc malloc. With its defaults, the MB-sized activations of
  // a forward were mmapped / trimmed back to the kernel and faulted in again on every op: 10x the
  // page faults of the same forward in Python, ~10% of scoring time (docs/performance.md).
  // Fixed thresholds: blocks < 32 MiB from the heap, and up to 256 MiB of freed heap kept.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

std::string blas_config() {
  const char* c = openblas_get_config();
  return c ? std::string("OpenBLAS ") + c : std::string("OpenBLAS (no config string)");
}

Json library_versions() {
  return {{"libtorch", TORCH_VERSION}, {"blas", blas_config()}, {"threads", describe_threads()}};
}

std::string describe_threads() {
  return "torch=" + std::to_string(at::get_num_threads()) +
         " blas=" + std::to_string(openblas_get_num_threads());
}

unsigned long long seed_everything(unsigned long long seed) {
  torch::manual_seed(seed);
  return seed;
}

}  // namespace mmb
