// Thread policy for libtorch and OpenBLAS. With OpenBLAS's OpenMP build (what mmb links when it is
// installed) both run on libtorch's one OpenMP pool; with the pthreads build they run two pools,
// and giving both all cores oversubscribes them. docs/performance.md has the benchmarks behind the
// default. Call these from the main thread before any tensor work; they set process-wide state.
#pragma once
#include <string>

#include "mmb/json.h"

namespace mmb {

struct ThreadPolicy {
  int torch_intra_op = 1;  // at::set_num_threads
  int blas = 1;            // openblas_set_num_threads
};

// The policy mmb uses for `--threads n` (n = 0: every core this process may use, so two runs of a
// command thread alike; n < 0: the cores not already busy now, at least 1, sampled at start-up):
// OpenBLAS n threads; libtorch n with OpenBLAS's OpenMP build (one shared pool), else 1. Chosen
// from bench/threads_bench and bench/train_bench (see docs/performance.md).
ThreadPolicy default_thread_policy(int n);

// True when the loaded OpenBLAS is its OpenMP build (it then shares libtorch's intra-op pool).
bool blas_uses_openmp();

// Applies a policy to libtorch and OpenBLAS, and the allocator policy below. Call once, early,
// before any tensor work.
void apply_thread_policy(const ThreadPolicy& policy);

// glibc malloc thresholds that keep freed activation memory for reuse instead of returning it to
// the kernel after every op (no-op on other C libraries). Process-wide.
void apply_allocator_policy();

// OpenBLAS's build string, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64".
std::string blas_config();
// {"libtorch": "1.13.1", "blas": blas_config(), "threads": describe_threads()}: the libraries a
// run's numbers depend on, for manifests.
Json library_versions();

// Current thread counts as text, e.g. "torch=2 blas=1".
std::string describe_threads();

// Number of cores available to this process (its CPU affinity; in mmb_core, src/common/cores.cpp).
int available_cores();

// Seeds every RNG mmb uses (libtorch's CPU/CUDA generators); returns the seed for printing.
// World generation and samplers take their own seeded engines derived from it.
unsigned long long seed_everything(unsigned long long seed);

}  // namespace mmb
