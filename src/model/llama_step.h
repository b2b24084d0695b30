// One decoding step of the Llama decoder (one new token per row, with a KV cache) in plain loops
// over contiguous float32 memory and direct BLAS calls: the same math as LlamaModelImpl::forward
// at T = 1 without its ~150 libtorch ops per step. LlamaModelImpl::decode_step gathers the raw
// pointers and checks that the step applies (CPU, float32, contiguous, autograd off).
#pragma once
#include <cstdint>
#include <vector>

namespace mmb {

struct LlamaStepLayer {
  const float *q, *k, *v, *o;       // (H*D, C), (Hkv*D, C), (Hkv*D, C), (C, H*D)
  const float *gate, *up, *down;    // (I, C), (I, C), (C, I)
  const float *input_norm, *post_norm;  // (C)
};

struct LlamaStepModel {
  int64_t hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, intermediate = 0;
  double eps = 1e-6;
  const float* embed = nullptr;     // (V, C)
  const float* norm = nullptr;      // (C)
  const float* rope_cos = nullptr;  // (Pmax, D)
  const float* rope_sin = nullptr;  // (Pmax, D), rotate-half's sign folded in (first half negated)
  std::vector<LlamaStepLayer> layers;
};

// The cache as the step sees it: per layer K and V (B, Hkv, capacity, D); key_keep (B, capacity)
// with the new token's entry at `start` already written. The step writes K/V at `start`.
struct LlamaStepCache {
  std::vector<float*> k, v;
  const bool* key_keep = nullptr;
  int64_t capacity = 0, start = 0;
};

// ids (B) token ids (checked by the caller), positions (B) rotary positions; out (B, C) receives
// the hidden states after the final norm.
void llama_decode_step(const LlamaStepModel& m, int64_t B, const int64_t* ids, const int64_t* positions,
                       const LlamaStepCache& cache, float* out);

}  // namespace mmb
