// One Llama decoding step in plain loops and BLAS calls (see llama_step.h). Per layer and row:
//   h = RMSNorm(x); q, k, v = h Wq^T, h Wk^T, h Wv^T; rotary on q and k; k, v appended to the cache;
//   y = softmax(q K^T / sqrt(D) over kept keys) V per query head (head j*G+g reads KV head j);
//   x += y Wo^T; m = RMSNorm(x); x += (silu(m Wg^T) * m Wu^T) Wd^T.
// The projections are BLAS calls on the weights in place (GEMV at one row, GEMM above); the small
// per-row work (norms, rotary, attention over the cache, SwiGLU) runs in loops, split over rows by
// libtorch's pool when there are enough of them.
#include "llama_step.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

extern "C" {
// OpenBLAS's CBLAS (linked by mmb_lib); declared here so no CBLAS header flavour is needed.
void cblas_sgemv(int order, int trans, int m, int n, float alpha, const float* a, int lda, const float* x, int incx,
                 float beta, float* y, int incy);
void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                 const float* b, int ldb, float beta, float* c, int ldc);
}

namespace mmb {
namespace {

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

// y (B, out) = beta * y + x (B, in) W^T for W (out, in) row-major (torch::nn::Linear's layout).
void linear(const float* x, int64_t B, int64_t in, const float* W, int64_t out, float* y, float beta = 0.f) {
  if (B == 1)
    cblas_sgemv(kRowMajor, kNoTrans, int(out), int(in), 1.f, W, int(in), x, 1, beta, y, 1);
  else
    cblas_sgemm(kRowMajor, kNoTrans, kTrans, int(B), int(out), int(in), 1.f, x, int(in), W, int(in), beta, y,
                int(out));
}

// Runs fn(b) for every row, split over libtorch's pool when the rows are worth it.
template <typename Fn>
void for_rows(int64_t B, int64_t grain, Fn&& fn) {
  if (B < 2 * grain) {
    for (int64_t b = 0; b < B; ++b) fn(b);
    return;
  }
  at::parallel_for(0, B, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) fn(b);
  });
}

// y = w * (x / sqrt(mean(x^2) + eps)) for one row of C, as rms_norm in llava.cpp.
void rms_norm_row(const float* x, const float* w, int64_t C, double eps, float* y) {
  float ss = 0.f;
#pragma omp simd reduction(+ : ss)
  for (int64_t c = 0; c < C; ++c) ss += x[c] * x[c];
  const float r = 1.f / std::sqrt(ss / float(C) + float(eps));
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) y[c] = w[c] * (x[c] * r);
}

// x * cos + roll(x, D/2) * sin_signed for `heads` heads of D, in place (apply_rotary in llava.cpp).
void rotary_row(float* x, int64_t heads, int64_t D, const float* cos, const float* sin) {
  const int64_t half = D / 2;
  float tmp[512];
  for (int64_t h = 0; h < heads; ++h, x += D) {
    std::copy(x, x + D, tmp);
#pragma omp simd
    for (int64_t d = 0; d < half; ++d) x[d] = tmp[d] * cos[d] + tmp[d + half] * sin[d];
#pragma omp simd
    for (int64_t d = half; d < D; ++d) x[d] = tmp[d] * cos[d] + tmp[d - half] * sin[d];
  }
}

// One query head against S cached keys: y (D) = softmax(q K^T * scale over kept keys) V. keys and
// values (S, D) rows; scores is scratch of S. No kept key at all: the additive mask of the libtorch
// path leaves every score equal, i.e. a uniform average over the S positions.
void attend_head(const float* q, const float* keys, const float* values, const bool* keep, int64_t S, int64_t D,
                 float scale, float* scores, float* y) {
  float mx = -INFINITY;
  for (int64_t s = 0; s < S; ++s) {
    if (!keep[s]) continue;
    const float* k = keys + s * D;
    float dot = 0.f;
#pragma omp simd reduction(+ : dot)
    for (int64_t d = 0; d < D; ++d) dot += q[d] * k[d];
    scores[s] = dot * scale;
    mx = std::max(mx, scores[s]);
  }
  std::fill(y, y + D, 0.f);
  if (mx == -INFINITY) {  // nothing may be attended
    for (int64_t s = 0; s < S; ++s)
      for (int64_t d = 0; d < D; ++d) y[d] += values[s * D + d] / float(S);
    return;
  }
  float sum = 0.f;
  for (int64_t s = 0; s < S; ++s) {
    if (!keep[s]) continue;
    const float p = std::exp(scores[s] - mx);
    sum += p;
    const float* v = values + s * D;
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) y[d] += p * v[d];
  }
  const float inv = 1.f / sum;
  for (int64_t d = 0; d < D; ++d) y[d] *= inv;
}

}  // namespace

void llama_decode_step(const LlamaStepModel& m, int64_t B, const int64_t* ids, const int64_t* positions,
                       const LlamaStepCache& cache, float* out) {
  const int64_t C = m.hidden, H = m.heads, Hkv = m.kv_heads, G = H / Hkv, D = m.head_dim, I = m.intermediate;
  const int64_t S = cache.start + 1, cap = cache.capacity;
  const float scale = float(1.0 / std::sqrt(double(D)));
  std::vector<float> x(size_t(B * C)), h(size_t(B * C)), q(size_t(B * H * D)), k(size_t(B * Hkv * D)),
      v(size_t(B * Hkv * D)), y(size_t(B * H * D)), gate(size_t(B * I)), up(size_t(B * I)), scores(size_t(B * S));
  for (int64_t b = 0; b < B; ++b) std::copy_n(m.embed + ids[b] * C, C, x.data() + b * C);
  const int64_t grain = 4;  // rows per task: below 8 rows the per-row work is not worth a fork
  for (size_t l = 0; l < m.layers.size(); ++l) {
    const LlamaStepLayer& w = m.layers[l];
    for_rows(B, grain, [&](int64_t b) { rms_norm_row(&x[b * C], w.input_norm, C, m.eps, &h[b * C]); });
    linear(h.data(), B, C, w.q, H * D, q.data());
    linear(h.data(), B, C, w.k, Hkv * D, k.data());
    linear(h.data(), B, C, w.v, Hkv * D, v.data());
    float* kc = cache.k[l];
    float* vc = cache.v[l];
    for_rows(B, grain, [&](int64_t b) {
      const float* cos = m.rope_cos + positions[b] * D;
      const float* sin = m.rope_sin + positions[b] * D;
      rotary_row(&q[b * H * D], H, D, cos, sin);
      rotary_row(&k[b * Hkv * D], Hkv, D, cos, sin);
      for (int64_t j = 0; j < Hkv; ++j) {
        const int64_t at = ((b * Hkv + j) * cap + cache.start) * D;  // (b, j, start, :)
        std::copy_n(&k[(b * Hkv + j) * D], D, kc + at);
        std::copy_n(&v[(b * Hkv + j) * D], D, vc + at);
      }
      const bool* keep = cache.key_keep + b * cap;
      for (int64_t j = 0; j < Hkv; ++j) {
        const float* keys = kc + (b * Hkv + j) * cap * D;
        const float* values = vc + (b * Hkv + j) * cap * D;
        for (int64_t g = 0; g < G; ++g) {
          const int64_t head = j * G + g;
          attend_head(&q[(b * H + head) * D], keys, values, keep, S, D, scale, &scores[b * S], &y[(b * H + head) * D]);
        }
      }
    });
    linear(y.data(), B, H * D, w.o, C, x.data(), 1.f);  // x += y Wo^T
    for_rows(B, grain, [&](int64_t b) { rms_norm_row(&x[b * C], w.post_norm, C, m.eps, &h[b * C]); });
    linear(h.data(), B, C, w.gate, I, gate.data());
    linear(h.data(), B, C, w.up, I, up.data());
    for_rows(B, grain, [&](int64_t b) {
      float* g = &gate[b * I];
      const float* u = &up[b * I];
      for (int64_t i = 0; i < I; ++i) g[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];  // silu(g) * u
    });
    linear(gate.data(), B, I, w.down, C, x.data(), 1.f);  // x += (silu(g) * u) Wd^T
  }
  for_rows(B, grain, [&](int64_t b) { rms_norm_row(&x[b * C], m.norm, C, m.eps, out + b * C); });
}

}  // namespace mmb
