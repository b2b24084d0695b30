// Internal: the CLIP encoder layer shared by the vision and text towers, and activations.
#pragma once
#include <string>

#include <torch/torch.h>

namespace mmb {

// "quick_gelu" (x * sigmoid(1.702 x)) or "gelu" (exact erf).
torch::Tensor act_fn(const torch::Tensor& x, const std::string& act);

// Pre-norm layer: x + attn(ln1(x)); x + mlp(ln2(x)). Names: self_attn.{q,k,v,out}_proj,
// layer_norm1, layer_norm2, mlp.fc1, mlp.fc2.
class ClipEncoderLayerImpl : public torch::nn::Module {
 public:
  ClipEncoderLayerImpl(int64_t hidden, int64_t inter, int64_t heads, double eps, std::string act);
  // x (B, T, C); bias additive attention mask broadcastable to (B, H, T, T) or undefined.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& bias);

 private:
  int64_t heads_;
  std::string act_;
  torch::nn::Linear q_proj_{nullptr}, k_proj_{nullptr}, v_proj_{nullptr}, out_proj_{nullptr};
  torch::nn::LayerNorm layer_norm1_{nullptr}, layer_norm2_{nullptr};
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};

}  // namespace mmb
