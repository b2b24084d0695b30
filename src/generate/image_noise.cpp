// The forward diffusion noise and mDPO's random crop (include/mmb/image_noise.h).
#include "mmb/image_noise.h"

#include <cmath>

#include "mmb/error.h"

namespace mmb {

torch::Tensor diffusion_alphas_cumprod(int64_t steps) {
  if (steps < 1) fail("diffusion_alphas_cumprod: steps must be >= 1, got ", steps);
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  auto betas = torch::sigmoid(torch::linspace(-6.0, 6.0, steps, opts)) * (5e-3 - 1e-5) + 1e-5;  // (K,)
  return torch::cumprod(1.0 - betas, 0);                                                        // (K,)
}

torch::Tensor diffusion_noise(const torch::Tensor& pixels, int64_t t, at::Generator generator, int64_t steps) {
  if (!pixels.defined() || !pixels.is_floating_point()) fail("diffusion_noise: expected a floating-point pixel tensor");
  if (t < 0 || t >= steps) fail("diffusion_noise: t must be in [0, ", steps, "), got ", t);
  const double abar = diffusion_alphas_cumprod(steps)[t].item<double>();
  auto eps = generator.defined() ? at::normal(0.0, 1.0, pixels.sizes(), generator, pixels.options())
                                 : torch::randn_like(pixels);
  return std::sqrt(abar) * pixels + std::sqrt(1.0 - abar) * eps;
}

torch::Tensor random_crop_image(const torch::Tensor& pixels, double max_keep, at::Generator generator) {
  if (!pixels.defined() || pixels.dim() != 4) fail("random_crop_image: expected (n, 3, H, W) pixels");
  if (!(max_keep > 0 && max_keep <= 1)) fail("random_crop_image: max_keep must be in (0, 1], got ", max_keep);
  const int64_t n = pixels.size(0), H = pixels.size(2), W = pixels.size(3);
  auto u = generator.defined() ? at::rand({n, 3}, generator, torch::kFloat64) : torch::rand({n, 3}, torch::kFloat64);
  std::vector<torch::Tensor> out;
  const double side_max = std::sqrt(max_keep);
  for (int64_t i = 0; i < n; ++i) {
    const double side = side_max * (0.5 + 0.5 * u[i][0].item<double>());  // of each dimension
    const int64_t h = std::max<int64_t>(1, int64_t(side * double(H))),
                  w = std::max<int64_t>(1, int64_t(side * double(W)));
    const int64_t y = int64_t(u[i][1].item<double>() * double(H - h + 1) * 0.999999);
    const int64_t x = int64_t(u[i][2].item<double>() * double(W - w + 1) * 0.999999);
    auto crop = pixels[i].narrow(1, y, h).narrow(2, x, w).unsqueeze(0);  // (1, 3, h, w)
    out.push_back(torch::nn::functional::interpolate(crop, torch::nn::functional::InterpolateFuncOptions()
                                                               .size(std::vector<int64_t>{H, W})
                                                               .mode(torch::kBilinear)
                                                               .align_corners(false)));
  }
  return torch::cat(out, 0);  // (n, 3, H, W)
}

}  // namespace mmb
