// Shared by train_test.cpp and distributed_test.cpp: a tiny classifier and its toy data set.
#pragma once
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "mmb/safetensors.h"
#include "mmb/train.h"

namespace mmb::testing {

// 8 -> 32 -> 32 -> 4 MLP with optional dropout (exercises the RNG in checkpoints) and a buffer.
struct TinyNetImpl : torch::nn::Module {
  explicit TinyNetImpl(double dropout = 0.0) {
    fc1 = register_module("fc1", torch::nn::Linear(8, 32));
    fc2 = register_module("fc2", torch::nn::Linear(32, 32));
    head = register_module("head", torch::nn::Linear(32, 4));
    drop = register_module("drop", torch::nn::Dropout(dropout));
    register_buffer("marker", torch::arange(3, torch::kFloat32));
  }
  torch::Tensor forward(const torch::Tensor& x) {  // (B, 8) -> (B, 4)
    return head(drop(torch::tanh(fc2(torch::tanh(fc1(x))))));
  }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, head{nullptr};
  torch::nn::Dropout drop{nullptr};
};
TORCH_MODULE(TinyNet);

inline TinyNet make_tiny_net(uint64_t seed, double dropout = 0.0) {
  torch::manual_seed(seed);
  return TinyNet(dropout);
}

struct ToyData {
  torch::Tensor x;  // (N, 8)
  torch::Tensor y;  // (N,) classes 0..3 of a random linear map
};

inline ToyData make_toy_data(int64_t n, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  ToyData d;
  d.x = at::randn({n, 8}, gen);
  d.y = d.x.mm(at::randn({8, 4}, gen)).argmax(1);
  return d;
}

inline LossOutput toy_loss(TinyNet& net, const ToyData& d, const std::vector<int64_t>& idx) {
  auto index = torch::tensor(idx, torch::kLong);
  auto logits = net->forward(d.x.index_select(0, index));  // (b, 4)
  auto y = d.y.index_select(0, index);
  LossOutput out;
  out.loss = torch::nn::functional::cross_entropy(logits, y);
  out.tokens = int64_t(idx.size());
  out.samples = int64_t(idx.size());
  out.metrics = {{"acc", logits.argmax(1).eq(y).to(torch::kFloat64).mean().item<double>()}};
  return out;
}

inline std::map<std::string, torch::Tensor> module_tensors(torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : m.named_parameters(true)) out[item.key()] = item.value().detach().clone();
  return out;
}

inline double max_abs_diff(const std::map<std::string, torch::Tensor>& a,
                           const std::map<std::string, torch::Tensor>& b) {
  double worst = 0;
  for (const auto& [k, t] : a) {
    auto it = b.find(k);
    if (it == b.end()) return INFINITY;
    worst = std::max(worst, (t - it->second).abs().max().item<double>());
  }
  return a.size() == b.size() ? worst : INFINITY;
}

}  // namespace mmb::testing
