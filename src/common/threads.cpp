#include "mmb/threads.h"

#include <sched.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <torch/torch.h>

extern "C" {
// OpenBLAS's own pool; declared here so mmb does not need OpenBLAS's cblas.h.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char* openblas_get_config(void);
int openblas_get_parallel(void);  // 0 sequential, 1 pthreads, 2 OpenMP
}

namespace mmb {

namespace {

// Busy and total jiffies of all CPUs from /proc/stat's "cpu" line; false if unreadable.
bool cpu_jiffies(unsigned long long& busy, unsigned long long& total) {
  FILE* f = std::fopen("/proc/stat", "r");
  if (!f) return false;
  unsigned long long v[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // user nice system idle iowait irq softirq steal
  const int n = std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                            &v[5], &v[6], &v[7]);
  std::fclose(f);
  if (n < 4) return false;
  total = 0;
  for (auto x : v) total += x;
  busy = total - v[3] - v[4];
  return true;
}

// Cores not already busy: available cores minus the cores other processes keep busy now (at
// least 1). "Now" is /proc/stat sampled over 150 ms: the 1-minute load average lags, so a phase
// started right after a heavy one (the previous step of `make demo`) saw the machine as busy and
// ran on one thread, slower (docs/performance.md). The load average is the fallback without /proc/stat.
// OpenBLAS's threads spin while they wait; on cores other processes keep busy they fight the
// scheduler and a training step slows by an order of magnitude (docs/performance.md).
int idle_cores() {
  const int cores = available_cores();
  unsigned long long b0 = 0, t0 = 0, b1 = 0, t1 = 0;
  if (cpu_jiffies(b0, t0)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    if (cpu_jiffies(b1, t1) && t1 > t0) {
      // /proc/stat counts every CPU of the machine; scale to the cores this process may use.
      const double busy_share = double(b1 - b0) / double(t1 - t0);
      const int machine = std::max(1u, std::thread::hardware_concurrency());
      const double busy = std::min<double>(cores, busy_share * machine);
      return std::max(1, std::min(cores, cores - int(busy + 0.5)));
    }
  }
  double load[1] = {0.0};
  if (getloadavg(load, 1) != 1) return cores;
  return std::max(1, std::min(cores, cores - int(load[0] + 0.5)));
}

}  // namespace

bool blas_uses_openmp() { return openblas_get_parallel() == 2; }

ThreadPolicy default_thread_policy(int n) {
  if (n == 0) n = available_cores();
  if (n < 0) n = idle_cores();
  ThreadPolicy p;
  p.blas = n;
  // OpenBLAS's OpenMP build (what mmb's build links when libopenblas0-openmp is installed) runs on
  // libtorch's own OpenMP pool: both get the n cores, with no second pool to fight, and the
  // non-GEMM ops (convolutions, activations) run on every core too (docs/performance.md).
  // With the pthreads build the two pools are separate. GEMMs dominate the models mmb runs, so
  // OpenBLAS gets the cores and libtorch's pool stays at 1: both at n oversubscribe the cores
  // (bench/threads_bench).
  p.torch_intra_op = blas_uses_openmp() ? n : 1;
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
  // a forward were mmapped / trimmed back to the kernel and faulted in again on every op, many
  // times the page faults of the same forward in Python (docs/performance.md).
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
