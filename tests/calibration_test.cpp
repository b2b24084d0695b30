// Temperature scaling: the NLL on hand-computed cases, the fit on data whose true temperature is
// known, the calibration study's grid against our optimiser, a cross-check against an independent PyTorch
// LBFGS fit (tests/reference/temperature_ref.py), bad inputs, and calibration.json.
#include "mmb/calibration.h"

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "mmb/atomic_file.h"
#include "test_util.h"

using mmb::testing::run_capture;

using mmb::testing::expect_throw_with;
using mmb::testing::TempDir;

namespace {

// Logits of N rows over C classes whose labels are drawn from softmax(logits / true_t): the
// model is over-confident by a factor true_t, and the NLL-optimal temperature is near true_t.
struct Synthetic {
  torch::Tensor logits, mask;
};
Synthetic synthetic(int64_t N, int64_t C, double true_t, uint64_t seed) {
  torch::manual_seed(seed);
  auto logits = torch::randn({N, C}, torch::kFloat64) * 4.0;
  auto probs = torch::softmax(logits / true_t, 1);
  auto labels = torch::multinomial(probs, 1).squeeze(1);
  auto mask = torch::zeros({N, C}, torch::kBool);
  mask.scatter_(1, labels.unsqueeze(1), true);
  return {logits.to(torch::kFloat32), mask};
}

}  // namespace

TEST(Temperature, NllMatchesHandComputedValues) {
  // Row 0: logits (2, 0), true column 0: -log(e^2 / (e^2 + 1)).
  // Row 1: logits (0, 1, 1), true columns {1, 2} (two forms of one answer): -log(2e / (1 + 2e)).
  auto logits = torch::tensor({2.0f, 0.0f, -1e9f, 0.0f, 1.0f, 1.0f}).reshape({2, 3});
  auto mask = torch::tensor({1, 0, 0, 0, 1, 1}).reshape({2, 3}).to(torch::kBool);
  const double r0 = -std::log(std::exp(2.0) / (std::exp(2.0) + 1)),
               r1 = -std::log(2 * std::exp(1.0) / (1 + 2 * std::exp(1.0)));
  EXPECT_NEAR(mmb::temperature_nll(logits, mask, 1.0), (r0 + r1) / 2, 1e-12);
  // At T = 2 the logits halve.
  const double s0 = -std::log(std::exp(1.0) / (std::exp(1.0) + 1)),
               s1 = -std::log(2 * std::exp(0.5) / (1 + 2 * std::exp(0.5)));
  EXPECT_NEAR(mmb::temperature_nll(logits, mask, 2.0), (s0 + s1) / 2, 1e-12);
}

TEST(Temperature, FitRecoversTheTemperatureOfOverconfidentLogits) {
  for (double true_t : {0.5, 2.0, 3.0}) {
    auto d = synthetic(4000, 5, true_t, 7);
    auto fit = mmb::fit_temperature(d.logits, d.mask);
    std::printf("  true T %.2f  fitted %.4f  NLL %.4f -> %.4f (%lld evaluations)\n", true_t, fit.temperature,
                fit.nll_before, fit.nll_after, static_cast<long long>(fit.evaluations));
    EXPECT_NEAR(fit.temperature, true_t, 0.12 * true_t);
    EXPECT_LE(fit.nll_after, fit.nll_before);
    EXPECT_EQ(fit.n, 4000);
    // A minimum: nudging T either way costs NLL.
    EXPECT_LE(fit.nll_after, mmb::temperature_nll(d.logits, d.mask, fit.temperature * 1.01));
    EXPECT_LE(fit.nll_after, mmb::temperature_nll(d.logits, d.mask, fit.temperature / 1.01));
  }
}

TEST(Temperature, SeedGridAgreesWithTheOptimiserToItsResolution) {
  auto d = synthetic(2000, 4, 2.5, 3);
  mmb::TemperatureFitOptions grid;
  grid.method = "grid";
  auto g = mmb::fit_temperature(d.logits, d.mask, grid);
  auto o = mmb::fit_temperature(d.logits, d.mask);
  EXPECT_EQ(g.evaluations, 999 + 1);  // 0.01..9.99 plus T = 1
  EXPECT_NEAR(g.temperature, o.temperature, 0.01);
  EXPECT_LE(o.nll_after, g.nll_after + 1e-12);  // the optimiser is never worse than the grid
  // The grid's value is exactly one of its points.
  EXPECT_NEAR(std::round(g.temperature * 100) / 100, g.temperature, 1e-9);
  // Beyond the calibration study's cap: a model under-confident by 20x needs T < 0.05; a 15x over-confident one T
  // > 9.99.
  auto big = synthetic(3000, 3, 15.0, 5);
  auto ob = mmb::fit_temperature(big.logits, big.mask);
  auto gb = mmb::fit_temperature(big.logits, big.mask, grid);
  EXPECT_GT(ob.temperature, 9.99);
  EXPECT_NEAR(gb.temperature, 9.99, 1e-9);
  EXPECT_LT(ob.nll_after, gb.nll_after);
}

TEST(Temperature, MatchesAnIndependentPytorchLbfgsFit) {
  TempDir tmp;
  auto d = synthetic(600, 6, 1.8, 11);
  // Two true columns in some rows (a letter's two SentencePiece forms).
  for (int64_t i = 0; i < 600; i += 7) d.mask[i][(d.mask[i].to(torch::kLong).argmax().item<int64_t>() + 1) % 6] = true;
  mmb::Json logits = mmb::Json::array(), mask = mmb::Json::array();
  auto la = d.logits.accessor<float, 2>();
  auto ma = d.mask.accessor<bool, 2>();
  for (int64_t i = 0; i < 600; ++i) {
    mmb::Json lr = mmb::Json::array(), mr = mmb::Json::array();
    for (int64_t c = 0; c < 6; ++c) lr.push_back(double(la[i][c])), mr.push_back(ma[i][c] ? 1 : 0);
    logits.push_back(lr);
    mask.push_back(mr);
  }
  mmb::write_file_atomic(tmp.file("in.json"), mmb::Json{{"logits", logits}, {"mask", mask}}.dump());
  int status = 0;
  const std::string out = run_capture(std::string(MMB_PYTHON) + " " + MMB_SOURCE_DIR +
                                          "/tests/reference/temperature_ref.py " + tmp.file("in.json"),
                                      &status);
  ASSERT_EQ(status, 0) << out;
  auto ref = mmb::Json::parse(out);
  auto fit = mmb::fit_temperature(d.logits, d.mask);
  std::printf("  mmb T %.8f NLL %.10f | PyTorch LBFGS T %.8f NLL %.10f\n", fit.temperature, fit.nll_after,
              ref["temperature"].get<double>(), ref["nll"].get<double>());
  EXPECT_NEAR(fit.nll_before, ref["nll_at_1"].get<double>(), 1e-9);
  EXPECT_NEAR(fit.temperature, ref["temperature"].get<double>(), 1e-4 * fit.temperature);
  EXPECT_NEAR(fit.nll_after, ref["nll"].get<double>(), 1e-9);
}

TEST(Temperature, ScalingNeverChangesTheArgmax) {
  auto d = synthetic(300, 5, 3.0, 1);
  auto fit = mmb::fit_temperature(d.logits, d.mask);
  EXPECT_TRUE(torch::equal(d.logits.argmax(1), (d.logits / fit.temperature).softmax(1).argmax(1)));
}

TEST(Temperature, BadInputsAreClearErrors) {
  auto l = torch::zeros({3, 4});
  auto m = torch::zeros({3, 4}, torch::kBool);
  m.index_put_({torch::indexing::Slice(), 0}, true);
  expect_throw_with([&] { mmb::temperature_nll(l, m, 0.0); }, "finite and > 0");
  expect_throw_with([&] { mmb::temperature_nll(l, m, std::nan("")); }, "finite and > 0");
  expect_throw_with([&] { mmb::fit_temperature(l, torch::zeros({3, 5}, torch::kBool)); }, "does not match");
  expect_throw_with([&] { mmb::fit_temperature(torch::zeros({4}), torch::zeros({4}, torch::kBool)); }, "(N, C)");
  expect_throw_with([&] { mmb::fit_temperature(torch::zeros({0, 4}), torch::zeros({0, 4}, torch::kBool)); }, "no rows");
  auto m2 = m.clone();
  m2[1][0] = false;
  expect_throw_with([&] { mmb::fit_temperature(l, m2); }, "1 row(s) have no true column");
  mmb::TemperatureFitOptions bad;
  bad.method = "newton";
  expect_throw_with([&] { mmb::fit_temperature(l, m, bad); }, "optimize or grid");
}

TEST(CalibrationFile, RoundTripAndBadFilesNameTheProblem) {
  TempDir tmp;
  const std::string dir = tmp.file("model");
  mmb::make_dirs(dir);
  auto none = mmb::read_confidence_temperatures(dir);  // no file: uncalibrated
  EXPECT_EQ(none.mc, 1.0);
  EXPECT_FALSE(none.calibrated());
  mmb::write_calibration_file(dir, {{"mc", {{"temperature", 1.7}, {"method", "optimize"}}},
                                    {"yes_no", {{"temperature", 0.8}}}, {"fitted", {{"fit_split", "val"}}}});
  auto t = mmb::read_confidence_temperatures(dir);
  EXPECT_EQ(t.mc, 1.7);
  EXPECT_EQ(t.yes_no, 0.8);
  EXPECT_TRUE(t.calibrated());
  expect_throw_with([&] { mmb::write_calibration_file(dir, {{"mc", {{"temperature", -1.0}}}}); }, "finite and > 0");
  expect_throw_with(
      [&] {
        mmb::write_calibration_file(dir, {{"chair", {{"temperature", 1.0}}}});
      },
      "unknown key 'chair'");
  EXPECT_EQ(mmb::read_confidence_temperatures(dir).mc, 1.7);  // the rejected writes left the file alone
  mmb::write_file_atomic(dir + "/calibration.json", R"({"mc": {"temp": 2}})");
  expect_throw_with([&] { mmb::read_confidence_temperatures(dir); }, "temperature");
  mmb::write_file_atomic(dir + "/calibration.json", R"({"mc": )");
  expect_throw_with([&] { mmb::read_confidence_temperatures(dir); }, "calibration.json");
}
