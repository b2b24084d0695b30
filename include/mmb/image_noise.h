// Corrupted images for preference methods: the forward diffusion noise of DDPM that CSR, the
// alignment study (BDHS_noise) and BPO put on the image to make a model answer from its language
// prior, and mDPO's random crop. Functions of their inputs and the generator only: thread-safe
// when each thread passes its own generator.
//
// Schedule (the papers' released code): K = 1000 steps,
//   β_k = sigmoid(linspace(−6, 6, K))_k · (5e-3 − 1e-5) + 1e-5,   ᾱ_t = Π_{j ≤ t} (1 − β_j),
//   x_t = sqrt(ᾱ_t) · x_0 + sqrt(1 − ᾱ_t) · ε,   ε ~ N(0, I),
// applied to the normalised pixel tensor (what the vision tower reads). t = 500 (the alignment
// study) or 900 (BPO's default). t is 0-based: t = 0 is one step of noise.
#pragma once
#include <cstdint>

#include <torch/torch.h>

namespace mmb {

constexpr int64_t kDiffusionSteps = 1000;

// ᾱ_t for t = 0 .. K−1: (K,) float64.
torch::Tensor diffusion_alphas_cumprod(int64_t steps = kDiffusionSteps);

// x_t of `pixels` (any shape, float) at step t, with ε drawn from `generator` (the default CPU
// generator when undefined). Throws mmb::Error unless 0 <= t < steps and pixels is floating.
torch::Tensor diffusion_noise(const torch::Tensor& pixels, int64_t t, at::Generator generator = {},
                              int64_t steps = kDiffusionSteps);

// mDPO's corrupted image: a random crop keeping at most `max_keep` of the area (side ratio drawn
// uniformly in [sqrt(max_keep)/2, sqrt(max_keep)]), resized back to the input size (bilinear).
// pixels (n, 3, H, W) float. Throws mmb::Error on another shape or max_keep outside (0, 1].
torch::Tensor random_crop_image(const torch::Tensor& pixels, double max_keep, at::Generator generator = {});

}  // namespace mmb
