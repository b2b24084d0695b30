// Generation and scoring speed, side by side with PyTorch eager on identical weights.
//
//   build/bench/generate_bench            (writes a model to a temp dir, runs both, prints ratios)
//   MMB_THREADS=1 build/bench/generate_bench   (both sides on one BLAS thread)
//
// Workloads on the default world model (4.1M parameters; 64 image tokens):
//   score     teacher-forced log-probs of 16 sequences x 100 tokens (64 image + 36 text)
//   greedy@1  prompt of 80 tokens + 32 new tokens, batch 1, KV cache
//   greedy@16 the same at batch 16
//   sentence search: CSR-style 3 levels of group beam search (5 beams / 5 groups, sentences of
//            12 tokens), continuing from the chosen child's cache vs re-encoding the prompt and
//            the earlier sentences at every node (the reference CSR code): forwarded tokens, time.
// MFU = achieved FLOP/s (2 x decoder+head parameters per token, vision tower per image) over the
// measured 1024^3 GEMM FLOP/s at the same thread policy.
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <unistd.h>

#include "mmb/checkpoint.h"
#include "mmb/generate.h"
#include "mmb/json.h"
#include "mmb/safetensors.h"
#include "mmb/threads.h"

namespace {

using Clock = std::chrono::steady_clock;

template <typename Fn>
double time_s(Fn&& fn, double min_time = 1.0) {
  fn();
  int n = 0;
  auto t0 = Clock::now();
  double el = 0;
  while (el < min_time || n < 2) {
    fn();
    ++n;
    el = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  return el / n;
}

}  // namespace

int main() {
  const char* th = std::getenv("MMB_THREADS");  // thread count for the policy (default: the cores not busy now)
  const mmb::ThreadPolicy policy = mmb::default_thread_policy(th ? std::atoi(th) : 0);
  mmb::apply_thread_policy(policy);
  torch::NoGradGuard ng;
  mmb::LlavaConfig cfg;  // the default world model
  cfg.text.vocab_size = 600;
  mmb::LlavaForConditionalGeneration model(cfg);
  mmb::init_weights(*model, 1);
  model->eval();
  char tmpl[] = "/tmp/mmb_genbench_XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  mmb::save_model_dir(dir, mmb::to_json(cfg), *model);

  const int64_t N = cfg.image_seq_length(), prompt_len = 80, new_tokens = 32;
  torch::manual_seed(0);
  auto make_ids = [&](int64_t B, int64_t T) {
    auto ids = torch::randint(5, cfg.text.vocab_size, {B, T}, torch::kLong);
    ids.narrow(1, 1, N).fill_(cfg.image_token_index);
    return ids;
  };
  auto prompt = make_ids(16, prompt_len), score_ids = make_ids(16, 100);
  auto pixels = torch::randn({16, 3, cfg.vision.image_size, cfg.vision.image_size});
  mmb::save_safetensors(dir + "/bench_inputs.safetensors",
                        {{"prompt_ids", prompt}, {"score_ids", score_ids}, {"pixel_values", pixels},
                         {"new_tokens", torch::tensor(new_tokens)}});

  // --- mmb
  double score_s = time_s([&] { mmb::score_tokens(model, {score_ids, {}, pixels}, false); });
  auto greedy = [&](int64_t B) {
    return time_s([&] {
      auto st = mmb::prefill(model, {prompt.narrow(0, 0, B), {}, pixels.narrow(0, 0, B)}, new_tokens + 1);
      mmb::SampleOptions o;
      o.stop.max_new_tokens = new_tokens;
      mmb::generate(model, st, o);
    });
  };
  double g1 = greedy(1), g16 = greedy(16);

  // --- sentence-level search (CSR): each active node expands into 5 children by group beam
  // search; the top 1 and bottom 2 children stay active. Re-encoding (the CSR reference code on
  // Hugging Face generate) forwards prompt + path for every node, expanded to num_beams rows;
  // cache reuse forwards only new tokens (children extend their parent's cache).
  mmb::BeamOptions bo;
  bo.num_beams = 5;
  bo.num_groups = 5;
  bo.diversity_penalty = 3.0;
  bo.stop.max_new_tokens = 12;  // one "sentence"
  const int levels = 3;
  int64_t tokens_reuse = 0, tokens_reencode = 0;
  auto search = [&](bool reuse) {
    auto root_ids = prompt.narrow(0, 0, 1);
    auto px = pixels.narrow(0, 0, 1);
    struct Node {
      mmb::DecodeState st;
      std::vector<int64_t> path;
      double score;
    };
    int64_t forwarded = 0;
    std::vector<Node> active;
    active.push_back({mmb::prefill(model, {root_ids, {}, px}, 64), {}, 0.0});
    forwarded += prompt_len;
    for (int l = 0; l < levels; ++l) {
      std::vector<Node> children;
      for (auto& node : active) {
        if (!reuse) {  // HF generate: prompt + path expanded to num_beams rows, encoded again
          auto ids = torch::cat({root_ids, torch::tensor(node.path, torch::kLong).view({1, -1})}, 1);
          auto rows = ids.repeat({bo.num_beams, 1});
          mmb::prefill(model, {rows, {}, px.repeat({bo.num_beams, 1, 1, 1})}, 64);
          node.st = mmb::prefill(model, {ids, {}, px}, 64);
          forwarded += rows.numel();
        }
        auto beams = mmb::beam_search(model, node.st, bo);
        forwarded += int64_t(bo.stop.max_new_tokens) * bo.num_beams;  // one token per beam per step
        for (const auto& b : beams) {
          Node c{{}, node.path, node.score + b.score};
          c.path.insert(c.path.end(), b.tokens.begin(), b.tokens.end());
          if (reuse) {  // the child continues from its parent's cache
            c.st = node.st.select(torch::zeros({1}, torch::kLong));
            mmb::extend(model, c.st, torch::tensor(b.tokens, torch::kLong).unsqueeze(0));
            forwarded += int64_t(b.tokens.size());
          }
          children.push_back(std::move(c));
        }
      }
      std::sort(children.begin(), children.end(), [](const Node& a, const Node& b) { return a.score > b.score; });
      active.clear();
      active.push_back(std::move(children.front()));  // top 1 and bottom 2 stay active
      for (size_t i = children.size() - 2; i < children.size(); ++i) active.push_back(std::move(children[i]));
    }
    return forwarded;
  };
  double t_reuse = time_s([&] { tokens_reuse = search(true); }, 2.0);
  double t_reencode = time_s([&] { tokens_reencode = search(false); }, 2.0);

  // --- GEMM peak at this policy
  auto a = torch::randn({1024, 1024}), b = torch::randn({1024, 1024});
  double gemm_s = time_s([&] { torch::mm(a, b); }, 0.5);
  double peak = 2.0 * 1024 * 1024 * 1024 / gemm_s;

  // --- PyTorch eager on the same weights and inputs
  // Same pools as mmb: libtorch intra-op 1, OpenBLAS at mmb's count (else Python's OpenBLAS would
  // take every core while mmb runs with MMB_THREADS=1).
  std::string cmd = "OPENBLAS_NUM_THREADS=" + std::to_string(policy.blas) + " /usr/bin/python3 " +
                    std::string(MMB_SOURCE_DIR) + "/bench/generate_ref.py " + dir + " 1";
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = ::pclose(p);
  mmb::Json py = rc == 0 ? mmb::Json::parse(out) : mmb::Json::object();

  const double dec_params = double(mmb::count_parameters(*model, "language_model."));
  const double vis_params =
      double(mmb::count_parameters(*model, "vision_tower.") + mmb::count_parameters(*model, "multi_modal_projector."));
  const double vis_flops = 2.0 * vis_params * double(cfg.vision.num_patches() + 1);
  auto mfu = [&](double tokens, double images, double secs) {
    return (2.0 * dec_params * tokens + vis_flops * images) / secs / peak;
  };
  std::printf("GEMM 1024^3 peak at policy %s: %.1f GFLOP/s\n\n", mmb::describe_threads().c_str(), peak / 1e9);
  std::printf("%-22s %14s %14s %8s %6s\n", "workload", "mmb", "pytorch", "ratio", "MFU");
  auto row = [&](const char* name, double tokens, double images, double ours, const char* key) {
    double theirs = py.contains(key) ? py[key].get<double>() : 0.0;
    std::printf("%-22s %10.0f t/s %10.0f t/s %7.2fx %5.1f%%\n", name, tokens / ours, theirs > 0 ? tokens / theirs : 0.0,
                theirs > 0 ? theirs / ours : 0.0, 100.0 * mfu(tokens, images, ours));
  };
  row("score 16x100", 16.0 * 100, 16, score_s, "score_s");
  row("greedy batch 1", double(new_tokens), 1, g1, "greedy1_s");
  row("greedy batch 16", 16.0 * new_tokens, 16, g16, "greedy16_s");
  std::printf(
      "\nCSR sentence-level search (%d levels, 5 beams / 5 groups, 12-token sentences, top 1 + bottom 2 kept):\n",
      levels);
  std::printf("  cache reuse: %lld forwarded tokens, %.1f ms\n", (long long)tokens_reuse, 1e3 * t_reuse);
  std::printf("  re-encoding: %lld forwarded tokens, %.1f ms\n", (long long)tokens_reencode, 1e3 * t_reencode);
  std::printf("  -> %.2fx fewer tokens, %.2fx faster\n", double(tokens_reencode) / tokens_reuse, t_reencode / t_reuse);
  if (rc != 0) std::printf("(python reference failed: %s)\n", cmd.c_str());
  std::system(("rm -rf '" + dir + "'").c_str());
  return 0;
}
