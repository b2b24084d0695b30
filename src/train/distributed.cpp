// c10d process group (TCPStore + ProcessGroupGloo) and bucketed gradient all-reduce.
#include "mmb/distributed.h"

#include <chrono>
#include <cstdlib>
#include <map>

#include "mmb/error.h"

#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
// NCCL: only in builds against a CUDA libtorch that define USE_C10D_NCCL (not CI's; untested here).
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace mmb {
namespace {

const char* env_or_null(const char* name) {
  const char* v = std::getenv(name);
  return (v && *v) ? v : nullptr;
}

int parse_env_int(const char* name, const char* value, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(value, &end, 10);
  if (errno != 0 || end == value || *end != '\0' || v < lo || v > hi)
    fail("dist_env_from_environment: ", name, "='", value, "' is not an integer in [", lo, ", ", hi, "]");
  return int(v);
}

}  // namespace

DistEnv dist_env_from_environment() {
  DistEnv env;
  const char* world = env_or_null("WORLD_SIZE");
  if (world) env.world_size = parse_env_int("WORLD_SIZE", world, 1, 1 << 20);
  const char* rank = env_or_null("RANK");
  if (rank) env.rank = parse_env_int("RANK", rank, 0, 1 << 20);
  if (env.rank >= env.world_size)
    fail("dist_env_from_environment: RANK=", env.rank, " is not below WORLD_SIZE=", env.world_size);
  const char* local = env_or_null("LOCAL_RANK");
  env.local_rank = local ? parse_env_int("LOCAL_RANK", local, 0, 1 << 20) : env.rank;
  const char* addr = env_or_null("MASTER_ADDR");
  const char* port = env_or_null("MASTER_PORT");
  if (env.world_size > 1) {
    if (!rank) fail("dist_env_from_environment: WORLD_SIZE=", env.world_size, " but RANK is not set");
    if (!addr) fail("dist_env_from_environment: WORLD_SIZE=", env.world_size, " but MASTER_ADDR is not set");
    if (!port) fail("dist_env_from_environment: WORLD_SIZE=", env.world_size, " but MASTER_PORT is not set");
  }
  if (addr) env.master_addr = addr;
  if (port) env.master_port = parse_env_int("MASTER_PORT", port, 1, 65535);
  return env;
}

std::pair<int64_t, int64_t> shard_range(int64_t global, int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world)
    fail("shard_range: rank ", rank, " of world ", world, " is not valid");
  if (global < 0) fail("shard_range: global batch must be >= 0, got ", global);
  const int64_t base = global / world, extra = global % world;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

struct Distributed::Impl {
#ifdef USE_C10D_GLOO
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
#endif
#ifdef USE_C10D_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;  // when set, used instead of pg
  torch::Device device{torch::kCPU};               // cuda:<local_rank>
#endif
  // Runs fn(process group) on NCCL when present, else Gloo; fn returns the Work to wait for.
  template <typename Fn>
  void run(Fn&& fn) {
#ifdef USE_C10D_NCCL
    if (nccl) {
      fn(*nccl)->wait();
      return;
    }
#endif
#ifdef USE_C10D_GLOO
    fn(*pg)->wait();
#endif
  }
  // The tensor the collective works on: NCCL needs it on this rank's GPU.
  torch::Tensor staged(const torch::Tensor& t) {
#ifdef USE_C10D_NCCL
    if (nccl && !t.is_cuda()) return t.to(device);
#endif
    return t.is_contiguous() ? t : t.contiguous();
  }
};

Distributed::Distributed(const DistEnv& env, DistOptions options)
    : env_(env), options_(options), impl_(std::make_unique<Impl>()) {
  if (env.world_size < 1 || env.rank < 0 || env.rank >= env.world_size)
    fail("Distributed: rank ", env.rank, " of world ", env.world_size, " is not valid");
  if (options.bucket_bytes <= 0) fail("Distributed: bucket_bytes must be > 0");
  if (options.backend != "auto" && options.backend != "gloo" && options.backend != "nccl")
    fail("Distributed: backend must be auto, gloo or nccl, got '", options.backend, "'");
#ifndef USE_C10D_NCCL
  if (options.backend == "nccl" && env.world_size > 1)
    fail("Distributed: backend nccl needs a libtorch with CUDA and a build defining USE_C10D_NCCL");
#endif
  if (env.world_size == 1) return;
#ifdef USE_C10D_GLOO
  const auto timeout = std::chrono::milliseconds(options.timeout_s * 1000);
  try {
    c10d::TCPStoreOptions store_opts;
    store_opts.port = static_cast<std::uint16_t>(env.master_port);
    store_opts.isServer = env.rank == 0;
    store_opts.numWorkers = static_cast<std::size_t>(env.world_size);
    store_opts.waitWorkers = true;
    store_opts.timeout = timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_opts);

    auto pg_opts = c10d::ProcessGroupGloo::Options::create(timeout);
    // Interface choice as torch.distributed: GLOO_SOCKET_IFNAME if set; loopback when the master
    // is local (single-machine runs, tests); else the address this host's name resolves to.
    if (const char* ifname = env_or_null("GLOO_SOCKET_IFNAME")) {
      pg_opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost") {
      pg_opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      pg_opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    pg_opts->threads = 2;
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env.rank, env.world_size, pg_opts);
#ifdef USE_C10D_NCCL
    if (options.backend == "nccl" || (options.backend == "auto" && torch::cuda::is_available())) {
      impl_->device = torch::Device(torch::kCUDA, env.local_rank);
      auto nccl_opts = c10d::ProcessGroupNCCL::Options::create();
      impl_->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, env.rank, env.world_size, nccl_opts);
    }
#endif
  } catch (const std::exception& e) {
    fail("Distributed: cannot join the process group as rank ", env.rank, " of ", env.world_size, " at ",
         env.master_addr, ":", env.master_port, ": ", e.what());
  }
#else
  fail("Distributed: WORLD_SIZE=", env.world_size,
       " needs c10d Gloo, but this build has none (install libgloo-dev and reconfigure)");
#endif
}

Distributed::~Distributed() = default;

void Distributed::broadcast(torch::Tensor& tensor, int root) {
  if (!active()) return;
#ifdef USE_C10D_GLOO
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> ts{impl_->staged(tensor)};
  c10d::BroadcastOptions opts;
  opts.rootRank = root;
  impl_->run([&](auto& pg) { return pg.broadcast(ts, opts); });
  if (!ts[0].is_same(tensor)) tensor.copy_(ts[0]);
#endif
}

void Distributed::allreduce_sum(torch::Tensor& tensor) {
  if (!active()) return;
#ifdef USE_C10D_GLOO
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> ts{impl_->staged(tensor)};
  impl_->run([&](auto& pg) { return pg.allreduce(ts); });
  if (!ts[0].is_same(tensor)) tensor.copy_(ts[0]);
#endif
}

void Distributed::broadcast_module(torch::nn::Module& module, int root) {
  if (!active()) return;
  torch::NoGradGuard no_grad;
  for (auto& item : module.named_parameters(true)) {
    torch::Tensor t = item.value().detach();
    broadcast(t, root);
  }
  for (auto& item : module.named_buffers(true)) {
    torch::Tensor t = item.value();
    broadcast(t, root);
  }
}

void Distributed::barrier() {
  if (!active()) return;
#ifdef USE_C10D_GLOO
  impl_->run([&](auto& pg) { return pg.barrier(); });
#endif
}

void Distributed::allreduce_gradients(const std::vector<torch::Tensor>& params, double divisor) {
  if (divisor <= 0) fail("Distributed::allreduce_gradients: divisor must be > 0, got ", divisor);
  torch::NoGradGuard no_grad;
  if (!active()) {
    if (divisor != 1.0)
      for (const auto& p : params)
        if (p.grad().defined()) p.grad().div_(divisor);
    return;
  }
#ifdef USE_C10D_GLOO
  // Bucket layout: parameters in order, grouped by dtype, a bucket closed when it passes
  // bucket_bytes. The layout depends only on the parameter list, so it is the same on all ranks.
  struct Bucket {
    std::vector<torch::Tensor> grads;
    torch::Tensor flat;
    c10::intrusive_ptr<c10d::Work> work;
  };
  std::map<c10::ScalarType, std::vector<Bucket>> by_dtype;
  std::map<c10::ScalarType, int64_t> open_bytes;
  for (const auto& p : params) {
    if (!p.grad().defined()) {
      const_cast<torch::Tensor&>(p).mutable_grad() = torch::zeros_like(p);
    }
    torch::Tensor g = p.grad();
    auto dt = g.scalar_type();
    auto& buckets = by_dtype[dt];
    if (buckets.empty() || open_bytes[dt] >= options_.bucket_bytes) {
      buckets.emplace_back();
      open_bytes[dt] = 0;
    }
    buckets.back().grads.push_back(g);
    open_bytes[dt] += g.numel() * int64_t(g.element_size());
  }
  std::vector<Bucket*> all;
  for (auto& [dt, buckets] : by_dtype)
    for (auto& b : buckets) all.push_back(&b);
  for (Bucket* b : all) {  // launch every bucket, then wait: Gloo works on them concurrently
    std::vector<torch::Tensor> flat_views;
    for (const auto& g : b->grads) flat_views.push_back(g.reshape({-1}));
    b->flat = torch::cat(flat_views);
    std::vector<torch::Tensor> ts{b->flat};
#ifdef USE_C10D_NCCL
    if (impl_->nccl) {
      ts[0] = b->flat = impl_->staged(b->flat);
      b->work = impl_->nccl->allreduce(ts);
      continue;
    }
#endif
    b->work = impl_->pg->allreduce(ts);
  }
  for (Bucket* b : all) {
    b->work->wait();
    if (divisor != 1.0) b->flat.div_(divisor);
    int64_t offset = 0;
    for (auto& g : b->grads) {
      g.copy_(b->flat.narrow(0, offset, g.numel()).view_as(g));
      offset += g.numel();
    }
  }
#endif
}

}  // namespace mmb
