// The trainer loop: schedule, overfit, accumulation, clipping, groups, checkpoints and resume.
#include <signal.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include <gtest/gtest.h>

#include "mmb/atomic_file.h"
#include "mmb/jsonl.h"
#include "mmb/model.h"
#include "mmb/run_dir.h"
#include "mmb/threads.h"
#include "mmb/train.h"
#include "subprocess_util.h"
#include "test_util.h"
#include "train_test_util.h"

namespace fs = std::filesystem;
using namespace mmb;
using namespace mmb::testing;

namespace {

TrainOptions quiet_options(const std::string& out, int64_t steps) {
  TrainOptions o;
  o.total_steps = steps;
  o.min_lr_ratio = 1.0;
  o.grad_clip = 0;
  o.out_dir = out;
  o.progress = false;
  return o;
}

std::vector<Json> read_metrics(const std::string& path) {
  std::vector<Json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(Json::parse(line));
  return out;
}

}  // namespace

TEST(TrainSchedule, WarmupCosineHandChecked) {
  // warmup 4, total 12, min ratio 0.1: warmup (s+1)/4, then 0.1 + 0.45 (1 + cos(pi (s-4)/8)).
  EXPECT_DOUBLE_EQ(cosine_lr_factor(0, 4, 12, 0.1), 0.25);
  EXPECT_DOUBLE_EQ(cosine_lr_factor(2, 4, 12, 0.1), 0.75);
  EXPECT_DOUBLE_EQ(cosine_lr_factor(3, 4, 12, 0.1), 1.0);
  EXPECT_DOUBLE_EQ(cosine_lr_factor(4, 4, 12, 0.1), 1.0);
  EXPECT_NEAR(cosine_lr_factor(6, 4, 12, 0.1), 0.1 + 0.45 * (1 + std::sqrt(0.5)), 1e-15);
  EXPECT_NEAR(cosine_lr_factor(8, 4, 12, 0.1), 0.55, 1e-15);
  EXPECT_NEAR(cosine_lr_factor(12, 4, 12, 0.1), 0.1, 1e-15);
  EXPECT_NEAR(cosine_lr_factor(99, 4, 12, 0.1), 0.1, 1e-15);
  EXPECT_DOUBLE_EQ(cosine_lr_factor(0, 0, 10, 0.0), 1.0);  // no warmup starts at the peak
  EXPECT_NEAR(cosine_lr_factor(5, 0, 10, 0.0), 0.5, 1e-15);
}

TEST(TrainSchedule, TrainerAppliesScheduleToEveryGroup) {
  TempDir tmp;
  auto net = make_tiny_net(1);
  auto data = make_toy_data(32, 2);
  ParamGroupOptions po;
  po.lr = 1e-2;
  po.groups = {{"head", {"head."}, 1e-1, -1}};
  auto groups = make_param_groups(*net, po);
  TrainOptions o = quiet_options(tmp.path(), 6);
  o.warmup_steps = 2;
  o.min_lr_ratio = 0.0;
  Trainer trainer(*net, groups, o);
  ShardedIndexBatches batches(32, 8, 3);
  trainer.set_data<std::vector<int64_t>>(batches, [&](std::vector<int64_t>& idx) { return toy_loss(net, data, idx); });
  std::vector<double> lrs;
  trainer.set_step_callback([&](const StepStats& s) { lrs.push_back(s.lr); });
  for (int i = 0; i < 6; ++i) {
    trainer.step();
    const double factor = cosine_lr_factor(i, 2, 6, 0.0);
    for (size_t g = 0; g < groups.size(); ++g) {
      auto& opts = static_cast<torch::optim::AdamWOptions&>(trainer.optimizer().param_groups()[g].options());
      EXPECT_DOUBLE_EQ(opts.lr(), groups[g].lr * factor) << "group " << groups[g].name << " step " << i;
    }
  }
  ASSERT_EQ(lrs.size(), 6u);
  EXPECT_DOUBLE_EQ(lrs[0], 0.5e-2);
  EXPECT_DOUBLE_EQ(lrs[1], 1e-2);
  EXPECT_NEAR(lrs[3], 1e-2 * 0.5 * (1 + std::sqrt(0.5)), 1e-15);  // p = (3 - 2) / 4
}

TEST(TrainLoop, OverfitsOneBatch) {
  TempDir tmp;
  auto net = make_tiny_net(3);
  auto data = make_toy_data(8, 4);
  ParamGroupOptions po;
  po.lr = 1e-2;
  Trainer trainer(*net, make_param_groups(*net, po), quiet_options(tmp.path(), 200));
  ShardedIndexBatches batches(8, 8, 0, 0, 1, /*shuffle=*/false);
  trainer.set_data<std::vector<int64_t>>(batches, [&](std::vector<int64_t>& idx) { return toy_loss(net, data, idx); });
  double first = trainer.step().loss;
  StepStats last = trainer.train();
  EXPECT_EQ(last.step, 200);
  EXPECT_GT(first, 0.5);
  EXPECT_LT(last.loss, 0.01) << "first loss " << first;
  EXPECT_DOUBLE_EQ(last.extra.value("acc", 0.0), 1.0);
  EXPECT_TRUE(fs::exists(tmp.file("checkpoints/step-200/trainer_state.json")));
  EXPECT_EQ(read_file(tmp.file("checkpoints/latest")), "step-200\n");
}

TEST(TrainLoop, GradAccumulationEqualsOneBigBatch) {
  auto data = make_toy_data(64, 5);
  for (bool by_tokens : {false, true}) {
    TempDir tmp_a, tmp_b;
    auto a = make_tiny_net(7), b = make_tiny_net(7);
    ParamGroupOptions po;
    po.lr = 1e-2;
    po.weight_decay = 0.1;
    TrainOptions oa = quiet_options(tmp_a.path(), 3), ob = quiet_options(tmp_b.path(), 3);
    oa.grad_accum = 4;
    oa.weight_by_tokens = ob.weight_by_tokens = by_tokens;
    Trainer ta(*a, make_param_groups(*a, po), oa), tb(*b, make_param_groups(*b, po), ob);
    ShardedIndexBatches small(64, 4, 0, 0, 1, false), big(64, 16, 0, 0, 1, false);
    ta.set_data<std::vector<int64_t>>(small, [&](std::vector<int64_t>& idx) { return toy_loss(a, data, idx); });
    tb.set_data<std::vector<int64_t>>(big, [&](std::vector<int64_t>& idx) { return toy_loss(b, data, idx); });
    for (int i = 0; i < 3; ++i) {
      StepStats sa = ta.step(), sb = tb.step();
      EXPECT_NEAR(sa.loss, sb.loss, 1e-6);
      EXPECT_NEAR(sa.grad_norm, sb.grad_norm, 1e-5);
      EXPECT_EQ(sa.tokens, 16);
    }
    double diff = max_abs_diff(module_tensors(*a), module_tensors(*b));
    EXPECT_LE(diff, 1e-5) << "weight_by_tokens=" << by_tokens;
    std::printf("grad accumulation (weight_by_tokens=%d): max |w_accum - w_big| = %.3g\n", int(by_tokens), diff);
  }
}

// weight_by_tokens: micro-batches of 2 and 6 rows weigh 2:6, so the step equals one batch of 8.
TEST(TrainLoop, TokenWeightedAccumulationWithUnequalMicroBatches) {
  auto data = make_toy_data(64, 6);
  struct Uneven : BatchSource<std::vector<int64_t>> {
    int64_t pos = 0;
    std::vector<int64_t> next() override {
      const int64_t n = (pos % 8 == 0) ? 2 : 6;
      std::vector<int64_t> idx;
      for (int64_t i = 0; i < n; ++i) idx.push_back(pos++ % 64);
      return idx;
    }
    Json state() const override { return {{"pos", pos}}; }
    void load_state(const Json& s) override { pos = s.at("pos").get<int64_t>(); }
  } uneven;
  TempDir tmp_a, tmp_b;
  auto a = make_tiny_net(12), b = make_tiny_net(12);
  ParamGroupOptions po;
  po.lr = 1e-2;
  TrainOptions oa = quiet_options(tmp_a.path(), 3), ob = quiet_options(tmp_b.path(), 3);
  oa.grad_accum = 2;
  oa.weight_by_tokens = true;
  Trainer ta(*a, make_param_groups(*a, po), oa), tb(*b, make_param_groups(*b, po), ob);
  ShardedIndexBatches big(64, 8, 0, 0, 1, false);
  ta.set_data<std::vector<int64_t>>(uneven, [&](std::vector<int64_t>& idx) { return toy_loss(a, data, idx); });
  tb.set_data<std::vector<int64_t>>(big, [&](std::vector<int64_t>& idx) { return toy_loss(b, data, idx); });
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(ta.step().loss, tb.step().loss, 1e-6);
  EXPECT_LE(max_abs_diff(module_tensors(*a), module_tensors(*b)), 1e-5);
}

TEST(TrainLoop, ClipsGlobalNormAndReportsPreClipNorm) {
  TempDir tmp;
  auto net = make_tiny_net(8);
  auto data = make_toy_data(16, 9);
  std::vector<int64_t> all(16);
  for (int i = 0; i < 16; ++i) all[size_t(i)] = i;
  // The unclipped gradient norm, by hand.
  auto ref = make_tiny_net(8);
  toy_loss(ref, data, all).loss.backward();
  double sq = 0;
  for (auto& p : ref->parameters()) sq += p.grad().pow(2).sum().item<double>();
  const double norm = std::sqrt(sq);

  ParamGroupOptions po;
  po.lr = 1e-3;
  TrainOptions o = quiet_options(tmp.path(), 1);
  o.grad_clip = norm / 10;
  Trainer trainer(*net, make_param_groups(*net, po), o);
  ShardedIndexBatches batches(16, 16, 0, 0, 1, false);
  trainer.set_data<std::vector<int64_t>>(batches, [&](std::vector<int64_t>& idx) { return toy_loss(net, data, idx); });
  StepStats s = trainer.step();
  EXPECT_NEAR(s.grad_norm, norm, 1e-5 * norm);
  double clipped_sq = 0;
  for (auto& p : net->parameters()) clipped_sq += p.grad().pow(2).sum().item<double>();
  EXPECT_NEAR(std::sqrt(clipped_sq), norm / 10, 1e-4 * norm);
}

TEST(TrainLoop, ParamGroupsFrozenModuleAndNoDecay) {
  TempDir tmp;
  auto net = make_tiny_net(10);
  auto data = make_toy_data(32, 11);
  ParamGroupOptions po;
  po.lr = 1e-3;
  po.weight_decay = 0.05;
  po.groups = {{"head", {"head."}, 1e-2, -1}};
  po.frozen_prefixes = {"fc1."};
  auto groups = make_param_groups(*net, po);
  // head (weight), head/no_decay (bias), default (fc2.weight), default/no_decay (fc2.bias).
  ASSERT_EQ(groups.size(), 4u);
  EXPECT_EQ(groups[0].name, "head");
  EXPECT_EQ(groups[0].params[0].name, "head.weight");
  EXPECT_EQ(groups[1].name, "head/no_decay");
  EXPECT_EQ(groups[1].weight_decay, 0.0);
  EXPECT_EQ(groups[1].lr, 1e-2);
  EXPECT_EQ(groups[2].name, "default");
  EXPECT_EQ(groups[2].weight_decay, 0.05);
  EXPECT_FALSE(net->fc1->weight.requires_grad());

  auto before = module_tensors(*net);
  RunDir run(tmp.path(), RunInfo{});
  Trainer trainer(*net, groups, quiet_options(tmp.path(), 3));
  trainer.set_run_dir(&run);
  ShardedIndexBatches batches(32, 8, 1);
  trainer.set_data<std::vector<int64_t>>(batches, [&](std::vector<int64_t>& idx) { return toy_loss(net, data, idx); });
  trainer.train();
  auto after = module_tensors(*net);
  EXPECT_TRUE(torch::equal(before["fc1.weight"], after["fc1.weight"]));
  EXPECT_TRUE(torch::equal(before["fc1.bias"], after["fc1.bias"]));
  EXPECT_FALSE(torch::equal(before["fc2.weight"], after["fc2.weight"]));
  EXPECT_FALSE(torch::equal(before["head.weight"], after["head.weight"]));
  // The head moved roughly 10x as far (Adam's first steps move ~lr per element).
  double d_head = (after["head.weight"] - before["head.weight"]).abs().mean().item<double>();
  double d_fc2 = (after["fc2.weight"] - before["fc2.weight"]).abs().mean().item<double>();
  EXPECT_GT(d_head / d_fc2, 5.0);

  auto metrics = read_metrics(run.path("metrics.jsonl"));
  ASSERT_EQ(metrics.size(), 3u);
  for (const char* key : {"loss", "lr", "grad_norm", "tokens_per_s", "step_time_s", "acc", "lr/head", "lr/default"})
    EXPECT_TRUE(metrics[0].contains(key)) << key;
  EXPECT_DOUBLE_EQ(metrics[0]["lr/head"].get<double>(), 1e-2);
  EXPECT_DOUBLE_EQ(metrics[0]["lr/default"].get<double>(), 1e-3);
  EXPECT_EQ(metrics[2]["step"], 3);
}

TEST(TrainLoop, ParamGroupErrors) {
  auto net = make_tiny_net(1);
  ParamGroupOptions po;
  po.frozen_prefixes = {"fc9."};
  expect_throw_with([&] { make_param_groups(*net, po); }, "frozen prefix 'fc9.' matches no parameter");
  po.frozen_prefixes = {""};
  expect_throw_with([&] { make_param_groups(*net, po); }, "no trainable parameters");
  po.frozen_prefixes = {};
  po.groups = {{"a", {"head."}, -1, -1}, {"a", {"fc1."}, -1, -1}};
  expect_throw_with([&] { make_param_groups(*net, po); }, "group name 'a' repeats");
}

// A tiny LLaVA: the vision tower frozen, the projector with its own lr (the LLaVA recipe shape).
TEST(TrainLoop, TinyLlavaProjectorGroupAndFrozenVisionTower) {
  TempDir tmp;
  LlavaConfig c;
  c.vision.hidden_size = 32;
  c.vision.intermediate_size = 64;
  c.vision.num_hidden_layers = 2;
  c.vision.num_attention_heads = 2;
  c.vision.image_size = 16;
  c.vision.patch_size = 8;
  c.text.vocab_size = 64;
  c.text.hidden_size = 32;
  c.text.intermediate_size = 64;
  c.text.num_hidden_layers = 2;
  c.text.num_attention_heads = 4;
  c.text.num_key_value_heads = 2;
  c.text.max_position_embeddings = 64;
  LlavaForConditionalGeneration model(c);
  init_weights(*model, 1);
  const int64_t n_img = c.image_seq_length();  // 4
  // (2, 1 + 4 + 8): bos, image slots, text.
  auto text = torch::randint(5, 64, {2, 8}, torch::kLong);
  auto ids = torch::cat(
      {torch::ones({2, 1}, torch::kLong), torch::full({2, n_img}, c.image_token_index, torch::kLong), text}, 1);
  auto pixels = torch::randn({2, 3, 16, 16});
  struct OneBatch : BatchSource<int> {
    int next() override { return 0; }
    Json state() const override { return Json::object(); }
    void load_state(const Json&) override {}
  } source;
  ParamGroupOptions po;
  po.lr = 5e-3;
  po.groups = {{"projector", {"multi_modal_projector."}, 2e-2, -1}};
  po.frozen_prefixes = {"vision_tower."};
  auto before = module_tensors(*model);
  Trainer trainer(*model, make_param_groups(*model, po), quiet_options(tmp.path(), 40));
  trainer.set_data<int>(source, [&](int&) {
    VlmInput in;
    in.input_ids = ids;
    in.pixel_values = pixels;
    auto logits = model->forward(in);                         // (2, T, V)
    auto pred = logits.narrow(1, n_img, 8).reshape({-1, 64});  // positions predicting the text
    LossOutput out;
    out.loss = torch::nn::functional::cross_entropy(pred, text.reshape({-1}));
    out.tokens = 16;
    return out;
  });
  double first = trainer.step().loss;
  double last = trainer.train().loss;
  EXPECT_LT(last, first * 0.5) << first << " -> " << last;
  auto after = module_tensors(*model);
  for (const auto& [name, t] : before) {
    if (name.rfind("vision_tower.", 0) == 0) {
      EXPECT_TRUE(torch::equal(t, after[name])) << name;
    }
    if (name.rfind("multi_modal_projector.", 0) == 0) {
      EXPECT_FALSE(torch::equal(t, after[name])) << name;
    }
  }
}

TEST(TrainData, ShuffledIndicesEpochsAndState) {
  ShuffledIndices a(10, 42);
  auto e0 = a.next(10), e1 = a.next(10);
  EXPECT_EQ(a.epoch(), 1);
  auto sorted = [](std::vector<int64_t> v) { std::sort(v.begin(), v.end()); return v; };
  std::vector<int64_t> iota(10);
  for (int i = 0; i < 10; ++i) iota[size_t(i)] = i;
  EXPECT_EQ(sorted(e0), iota);
  EXPECT_EQ(sorted(e1), iota);
  EXPECT_NE(e0, e1);
  ShuffledIndices b(10, 42);
  b.next(13);
  Json st = b.state();
  auto tail = b.next(9);
  ShuffledIndices c(10, 42);
  c.load_state(st);
  EXPECT_EQ(c.next(9), tail);
  EXPECT_EQ(std::vector<int64_t>(e1.begin() + 3, e1.end()), std::vector<int64_t>(tail.begin(), tail.begin() + 7));
  ShuffledIndices other(10, 43);
  expect_throw_with([&] { other.load_state(st); }, "is not this one");
  // Shards of one global batch partition it.
  ShardedIndexBatches r0(10, 5, 1, 0, 2), r1(10, 5, 1, 1, 2), whole(10, 5, 1);
  auto s0 = r0.next(), s1 = r1.next(), w = whole.next();
  EXPECT_EQ(s0.size(), 3u);
  EXPECT_EQ(s1.size(), 2u);
  s0.insert(s0.end(), s1.begin(), s1.end());
  EXPECT_EQ(s0, w);
}

TEST(TrainData, LengthGroupedBatchesPadLessAndResume) {
  // 96 items of lengths 100..195 in a random order; global batch 4, megabatches of 6 batches.
  const int64_t n = 96, B = 4, group = 6;
  std::vector<int64_t> lengths(static_cast<size_t>(n));
  ShuffledIndices perm(n, 7);
  auto p = perm.next(n);
  for (int64_t i = 0; i < n; ++i) lengths[size_t(p[size_t(i)])] = 100 + i;
  auto padded = [&](ShardedIndexBatches& s, int64_t batches) {
    int64_t pad = 0;
    for (int64_t b = 0; b < batches; ++b) {
      auto idx = s.next();
      int64_t longest = 0;
      for (auto i : idx) longest = std::max(longest, lengths[size_t(i)]);
      for (auto i : idx) pad += longest - lengths[size_t(i)];
    }
    return pad;
  };
  ShardedIndexBatches grouped(lengths, group, B, 3), plain(n, B, 3);
  const int64_t pad_grouped = padded(grouped, n / B), pad_plain = padded(plain, n / B);
  EXPECT_LT(pad_grouped * 4, pad_plain) << pad_grouped << " vs " << pad_plain;
  // Still a permutation per epoch; each batch is B neighbours in its megabatch's length order.
  ShardedIndexBatches g2(lengths, group, B, 3);
  std::vector<int64_t> seen;
  for (int64_t b = 0; b < n / B; ++b) {
    auto idx = g2.next();
    for (size_t k = 1; k < idx.size(); ++k) EXPECT_GE(lengths[size_t(idx[k - 1])], lengths[size_t(idx[k])]);
    seen.insert(seen.end(), idx.begin(), idx.end());
  }
  std::sort(seen.begin(), seen.end());
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(seen[size_t(i)], i);
  // The batches of a megabatch do not come longest first: their order is shuffled.
  ShardedIndexBatches g3(lengths, group, B, 3);
  bool descending = true;
  for (int m = 0; m < n / (B * group) && descending; ++m) {
    int64_t prev = INT64_MAX;
    for (int64_t b = 0; b < group; ++b) {
      auto idx = g3.next();
      if (lengths[size_t(idx[0])] > prev) descending = false;
      prev = lengths[size_t(idx[0])];
    }
  }
  EXPECT_FALSE(descending);
  // Resume: the state continues the same stream; an ungrouped stream refuses it.
  ShardedIndexBatches a(lengths, group, B, 3);
  for (int i = 0; i < 7; ++i) a.next();
  const Json st = a.state();
  ShardedIndexBatches b(lengths, group, B, 3);
  b.load_state(st);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(a.next(), b.next());
  ShardedIndexBatches ungrouped(n, B, 3);
  expect_throw_with([&] { ungrouped.load_state(st); }, "megabatch 24");
  expect_throw_with(
      [&] {
        ShuffledIndices(n, 3, true, LengthGrouping{lengths, 10, 4});
      },
      "not a multiple of the batch 4");
  expect_throw_with(
      [&] {
        ShuffledIndices(n, 3, true, LengthGrouping{{1, 2}, 8, 4});
      },
      "2 lengths for a dataset of 96");
}

// The process holds one OpenBLAS (libtorch's libblas.so.3 and mmb's libopenblas.so.0 are the
// same library), and the policy gives libtorch the cores exactly when that OpenBLAS is the OpenMP
// build, which shares libtorch's pool (cmake/Dependencies.cmake, docs/performance.md).
TEST(ThreadPolicy, OneOpenBlasAndThePolicyFollowsItsBuild) {
  std::ifstream maps("/proc/self/maps");
  std::set<std::string> cores;  // the OpenBLAS implementation files mapped (not the thin wrappers)
  std::set<std::string> blas_dirs;
  for (std::string line; std::getline(maps, line);) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const std::string file = fs::path(path).filename().string();
    if (file.rfind("libopenblas", 0) == 0) cores.insert(fs::canonical(path).string());
    if (file == "libblas.so.3" || file == "liblapack.so.3")
      blas_dirs.insert(fs::canonical(path).parent_path().string());
  }
  ASSERT_EQ(cores.size(), 1u) << "OpenBLAS loaded more than once (or not at all)";
  const std::string dir = fs::path(*cores.begin()).parent_path().string();
  for (const auto& d : blas_dirs) EXPECT_EQ(d, dir) << "libblas / liblapack from another OpenBLAS build";
  const bool openmp = dir.find("openblas-openmp") != std::string::npos;
  EXPECT_EQ(blas_uses_openmp(), openmp) << dir;
  const ThreadPolicy p = default_thread_policy(2);
  EXPECT_EQ(p.blas, 2);
  EXPECT_EQ(p.torch_intra_op, openmp ? 2 : 1);
  apply_thread_policy(p);
  EXPECT_EQ(describe_threads(), openmp ? "torch=2 blas=2" : "torch=1 blas=2");
}

// ---- exact resume after a kill: every run happens in a child process (same binary, same threads)

namespace {

constexpr int kResumeSteps = 12;

// The run the resume test repeats: dropout (torch RNG), shuffled data (cursor), accumulation,
// warmup + cosine, clipping, checkpoints every 3 steps.
void run_resume_child(const std::string& out, int kill_at, const std::string& kill_where) {
  torch::set_num_threads(1);
  auto net = make_tiny_net(21, /*dropout=*/0.2);
  auto data = make_toy_data(40, 22);
  ParamGroupOptions po;
  po.lr = 3e-3;
  po.weight_decay = 0.01;
  po.groups = {{"head", {"head."}, 1e-2, -1}};
  TrainOptions o;
  o.total_steps = kResumeSteps;
  o.warmup_steps = 2;
  o.grad_accum = 2;
  o.grad_clip = 0.5;
  o.checkpoint_every = 3;
  o.keep_last_checkpoints = 2;
  o.seed = 23;
  o.out_dir = out;
  o.progress = false;
  RunDir run(out, RunInfo{});
  Trainer trainer(*net, make_param_groups(*net, po), o);
  trainer.set_run_dir(&run);
  ShardedIndexBatches batches(40, 6, 24);
  trainer.set_data<std::vector<int64_t>>(batches, [&](std::vector<int64_t>& idx) { return toy_loss(net, data, idx); });
  trainer.set_step_callback([&](const StepStats& s) {
    if (kill_where == "step" && s.step == kill_at) ::raise(SIGKILL);
  });
  trainer.set_checkpoint_hook([&](const std::string& dir) {
    write_file_atomic(dir + "/note.txt", "extra file from the hook\n");
    if (kill_where == "checkpoint" && trainer.step_count() == kill_at) ::raise(SIGKILL);
  });
  trainer.resume();
  write_file_atomic(out + "/resumed_at.txt", std::to_string(trainer.step_count()));
  trainer.train();
  run.finish();
}

int run_child(const std::string& out, int kill_at, const std::string& where) {
  fs::create_directories(out);
  pid_t pid = spawn_self("TrainResumeChild.Run",
                         {{"MMB_RESUME_CHILD_OUT", out}, {"MMB_RESUME_KILL_AT", std::to_string(kill_at)},
                          {"MMB_RESUME_KILL_WHERE", where}},
                         out + "/child_" + where + std::to_string(kill_at) + ".log");
  return wait_child(pid, 60);
}

std::vector<double> losses_of(const std::string& out) {
  std::vector<double> losses;
  for (const auto& m : read_metrics(out + "/metrics.jsonl")) losses.push_back(m["loss"].get<double>());
  return losses;
}

}  // namespace

TEST(TrainResumeChild, Run) {
  const char* out = std::getenv("MMB_RESUME_CHILD_OUT");
  if (!out) GTEST_SKIP() << "child process of TrainResume tests only";
  run_resume_child(out, std::atoi(std::getenv("MMB_RESUME_KILL_AT")), std::getenv("MMB_RESUME_KILL_WHERE"));
}

TEST(TrainResume, KilledRunsResumeExactly) {
  TempDir tmp;
  const std::string ref = tmp.file("ref"), a = tmp.file("killed_between_steps"), b = tmp.file("killed_in_checkpoint");
  int st = run_child(ref, -1, "none");
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << slurp(ref + "/child_none-1.log");

  // (a) killed after step 7 (last checkpoint: step 6), (b) killed while writing step 9's checkpoint.
  st = run_child(a, 7, "step");
  ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << slurp(a + "/child_step7.log");
  EXPECT_EQ(losses_of(a).size(), 7u);
  st = run_child(b, 9, "checkpoint");
  ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << slurp(b + "/child_checkpoint9.log");
  EXPECT_EQ(read_file(b + "/checkpoints/latest"), "step-6\n");
  bool temp_left = false;  // the killed writer's partial directory
  for (const auto& e : fs::directory_iterator(b + "/checkpoints"))
    temp_left = temp_left || e.path().filename().string().rfind(".step-9.tmp-", 0) == 0;
  EXPECT_TRUE(temp_left);
  for (const auto& dir : {a, b}) {
    st = run_child(dir, -1, "none");
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << slurp(dir + "/child_none-1.log");
    EXPECT_EQ(read_file(dir + "/resumed_at.txt"), "6");
  }
  auto l_ref = losses_of(ref), l_a = losses_of(a), l_b = losses_of(b);
  ASSERT_EQ(l_ref.size(), size_t(kResumeSteps));
  ASSERT_EQ(l_a.size(), size_t(kResumeSteps));
  ASSERT_EQ(l_b.size(), size_t(kResumeSteps));
  double worst = 0;
  for (int i = 0; i < kResumeSteps; ++i) {
    EXPECT_EQ(l_a[size_t(i)], l_ref[size_t(i)]) << "step " << i + 1;  // bitwise
    EXPECT_EQ(l_b[size_t(i)], l_ref[size_t(i)]) << "step " << i + 1;
    worst = std::max({worst, std::abs(l_a[size_t(i)] - l_ref[size_t(i)]), std::abs(l_b[size_t(i)] - l_ref[size_t(i)])});
  }
  std::printf("resume after kill: %d steps, max |loss - uninterrupted| = %.3g\n", kResumeSteps, worst);
  // Final weights identical too.
  auto w_ref = load_safetensors(ref + "/checkpoints/step-12/model.safetensors");
  for (const auto& dir : {a, b}) {
    auto w = load_safetensors(dir + "/checkpoints/step-12/model.safetensors");
    ASSERT_EQ(w.size(), w_ref.size());
    for (const auto& [k, t] : w_ref) EXPECT_TRUE(torch::equal(t, w.at(k))) << dir << " " << k;
    // keep_last_checkpoints = 2, temp dirs of the killed writer cleaned up.
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir + "/checkpoints")) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, (std::vector<std::string>{"latest", "step-12", "step-9"}));
  }
  EXPECT_TRUE(fs::exists(ref + "/checkpoints/step-12/note.txt"));
}

TEST(TrainResume, CorruptOrPartialCheckpointsAreRejected) {
  TempDir tmp;
  auto data = make_toy_data(32, 31);
  auto make = [&](TinyNet& net, ShardedIndexBatches& batches) {
    ParamGroupOptions po;
    po.lr = 1e-3;
    TrainOptions o = quiet_options(tmp.path(), 6);
    o.checkpoint_every = 3;
    o.keep_last_checkpoints = 0;
    auto t = std::make_unique<Trainer>(*net, make_param_groups(*net, po), o);
    t->set_data<std::vector<int64_t>>(
        batches, [&data, net](std::vector<int64_t>& idx) mutable { return toy_loss(net, data, idx); });
    return t;
  };
  {
    auto net = make_tiny_net(30);
    ShardedIndexBatches batches(32, 8, 1);
    make(net, batches)->train();
  }
  const std::string ck = tmp.file("checkpoints");
  EXPECT_NO_THROW(validate_train_checkpoint(ck + "/step-6"));

  // Flip one byte of the optimizer state: checksum mismatch, explicit resume refuses.
  {
    std::string bytes = read_file(ck + "/step-6/optimizer.safetensors");
    bytes[bytes.size() / 2] ^= 0x40;
    std::ofstream(ck + "/step-6/optimizer.safetensors", std::ios::binary) << bytes;
  }
  auto net = make_tiny_net(99);
  ShardedIndexBatches batches(32, 8, 1);
  auto trainer = make(net, batches);
  expect_throw_with([&] { trainer->resume_from(ck + "/step-6"); }, "file 'optimizer.safetensors' checksum differs");
  // Automatic resume skips it and takes step 3.
  EXPECT_TRUE(trainer->resume());
  EXPECT_EQ(trainer->step_count(), 3);

  // Truncated weights and a missing trainer_state.json (a partial directory).
  {
    std::string bytes = read_file(ck + "/step-3/model.safetensors");
    std::ofstream(ck + "/step-3/model.safetensors", std::ios::binary) << bytes.substr(0, bytes.size() - 10);
  }
  expect_throw_with([&] { validate_train_checkpoint(ck + "/step-3"); }, "truncated or corrupt");
  fs::remove(ck + "/step-6/trainer_state.json");
  expect_throw_with([&] { validate_train_checkpoint(ck + "/step-6"); }, "no trainer_state.json (partial checkpoint)");
  // Nothing valid left: resume refuses rather than silently starting over.
  auto net2 = make_tiny_net(98);
  ShardedIndexBatches batches2(32, 8, 1);
  expect_throw_with([&] { make(net2, batches2)->resume(); }, "refusing to start over");

  // A checkpoint from a different data stream or frozen set is not silently used.
  TempDir tmp2;
  {
    auto n = make_tiny_net(1);
    ParamGroupOptions po;
    TrainOptions o = quiet_options(tmp2.path(), 2);
    Trainer t(*n, make_param_groups(*n, po), o);
    ShardedIndexBatches bt(32, 8, 1);
    t.set_data<std::vector<int64_t>>(bt, [&](std::vector<int64_t>& idx) { return toy_loss(n, data, idx); });
    t.train();
  }
  {
    auto n = make_tiny_net(1);
    ParamGroupOptions po;
    po.frozen_prefixes = {"fc1."};
    Trainer t(*n, make_param_groups(*n, po), quiet_options(tmp2.path(), 2));
    ShardedIndexBatches bt(32, 8, 1);
    t.set_data<std::vector<int64_t>>(bt, [&](std::vector<int64_t>& idx) { return toy_loss(n, data, idx); });
    expect_throw_with([&] { t.resume(); }, "differs from the checkpoint's");
  }
  {
    auto n = make_tiny_net(1);
    Trainer t(*n, make_param_groups(*n, ParamGroupOptions{}), quiet_options(tmp2.path(), 2));
    ShardedIndexBatches bt(32, 8, /*seed=*/2);
    t.set_data<std::vector<int64_t>>(bt, [&](std::vector<int64_t>& idx) { return toy_loss(n, data, idx); });
    expect_throw_with([&] { t.resume(); }, "is not this one");
  }
}
