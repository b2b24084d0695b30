// Thread-policy benchmark: libtorch's intra-op pool and OpenBLAS's own pool, in combination.
//
// Workloads: a 512x512 GEMM, the forward of a small pre-norm transformer block stack
// (B=8, T=64, C=256, 4 layers) and its forward+backward. Each runs under every policy
// "t<torch threads>_b<blas threads>". Run:
//   build/bench/threads_bench --benchmark_min_time=0.5
// and the Python side by side: /usr/bin/python3 bench/threads_ref.py
#include <benchmark/benchmark.h>

#include <torch/torch.h>

#include "mmb/threads.h"

namespace {

struct Block : torch::nn::Module {
  torch::nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  torch::nn::Linear qkv{nullptr}, proj{nullptr}, fc1{nullptr}, fc2{nullptr};
  int64_t heads;
  Block(int64_t c, int64_t h) : heads(h) {
    ln1 = register_module("ln1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c})));
    ln2 = register_module("ln2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c})));
    qkv = register_module("qkv", torch::nn::Linear(c, 3 * c));
    proj = register_module("proj", torch::nn::Linear(c, c));
    fc1 = register_module("fc1", torch::nn::Linear(c, 4 * c));
    fc2 = register_module("fc2", torch::nn::Linear(4 * c, c));
  }
  torch::Tensor forward(torch::Tensor x) {  // (B, T, C)
    auto B = x.size(0), T = x.size(1), C = x.size(2);
    auto q_k_v = qkv(ln1(x)).view({B, T, 3, heads, C / heads}).permute({2, 0, 3, 1, 4});  // (3, B, H, T, D)
    auto att = torch::matmul(q_k_v[0], q_k_v[1].transpose(-2, -1)) / std::sqrt(double(C / heads));
    auto mask = torch::ones({T, T}, torch::kBool).triu(1);
    att = att.masked_fill(mask, -1e9).softmax(-1);                      // (B, H, T, T)
    auto y = torch::matmul(att, q_k_v[2]).transpose(1, 2).reshape({B, T, C});
    x = x + proj(y);
    return x + fc2(torch::gelu(fc1(ln2(x))));
  }
};

struct Net : torch::nn::Module {
  std::vector<std::shared_ptr<Block>> blocks;
  Net(int64_t c, int64_t h, int layers) {
    for (int i = 0; i < layers; ++i)
      blocks.push_back(register_module("b" + std::to_string(i), std::make_shared<Block>(c, h)));
  }
  torch::Tensor forward(torch::Tensor x) {
    for (auto& b : blocks) x = b->forward(x);
    return x;
  }
};

void set_policy(const benchmark::State& state) {
  mmb::apply_thread_policy({int(state.range(0)), int(state.range(1))});
}

void BM_Gemm(benchmark::State& state) {
  set_policy(state);
  torch::manual_seed(0);
  auto a = torch::randn({512, 512}), b = torch::randn({512, 512});
  for (auto _ : state) benchmark::DoNotOptimize(torch::mm(a, b));
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * 512 * 512 * 512, benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}

void BM_TransformerForward(benchmark::State& state) {
  set_policy(state);
  torch::manual_seed(0);
  Net net(256, 4, 4);
  auto x = torch::randn({8, 64, 256});
  torch::NoGradGuard ng;
  for (auto _ : state) benchmark::DoNotOptimize(net.forward(x));
}

void BM_TransformerBackward(benchmark::State& state) {
  set_policy(state);
  torch::manual_seed(0);
  Net net(256, 4, 4);
  auto x = torch::randn({8, 64, 256});
  for (auto _ : state) {
    net.zero_grad();
    net.forward(x).pow(2).mean().backward();
  }
}

void policies(benchmark::internal::Benchmark* b) {
  b->ArgNames({"torch", "blas"});
  for (auto p : std::vector<std::pair<int, int>>{{1, 1}, {2, 1}, {1, 2}, {2, 2}}) b->Args({p.first, p.second});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK(BM_Gemm)->Apply(policies);
BENCHMARK(BM_TransformerForward)->Apply(policies);
BENCHMARK(BM_TransformerBackward)->Apply(policies);
BENCHMARK_MAIN();
