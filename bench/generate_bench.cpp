// Generation and scoring speed, side by side with PyTorch eager on identical weights.
//
//   build/bench/generate_bench            (writes a model to a temp dir, runs both, prints ratios)
//   build/bench/generate_bench greedy16   (only the named workloads, no PyTorch: for profiling)
//   MMB_THREADS=1 build/bench/generate_bench   (both sides on one thread)
//
// Workloads on the default world model (4.1M parameters; 64 image tokens):
//   score          teacher-forced log-probs of 16 sequences x 100 tokens (64 image + 36 text)
//   prefillB       the 80-token prompt with its image into a fresh cache, B = 1, 16, 64
//   greedyB        32 new tokens from that prefilled state, greedy (timed apart from the prefill)
//   sampleB        the same, sampled (temperature 1, top-p 0.9)
//   beam           group beam search (5 beams / 5 groups, 12 tokens) from the batch-1 prompt
//   search         CSR-style 3 levels of group beam search (sentences of 12 tokens), continuing
//                  from the chosen child's cache vs re-encoding the prompt and the earlier
//                  sentences at every node (the reference CSR code): forwarded tokens, time.
// PyTorch runs each workload at libtorch's intra-op count of mmb's policy and at 1 and keeps its
// faster time. MFU = achieved FLOP/s (2 x decoder+head parameters per token, vision tower per
// image) over the measured 1024^3 GEMM FLOP/s at the same thread policy. The batch-1 line compares
// a decoding step with the time to read the decoder and head weights once.
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

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

// Seconds per run of body(setup()), setup untimed.
template <typename Setup, typename Body>
double time_split(Setup&& setup, Body&& body, double min_time = 1.0) {
  { auto x = setup(); body(x); }
  int n = 0;
  double el = 0;
  while (el < min_time || n < 2) {
    auto x = setup();
    auto t0 = Clock::now();
    body(x);
    el += std::chrono::duration<double>(Clock::now() - t0).count();
    ++n;
  }
  return el / n;
}

}  // namespace

int main(int argc, char** argv) {
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
  auto prompt = make_ids(64, prompt_len), score_ids = make_ids(16, 100);
  auto pixels = torch::randn({64, 3, cfg.vision.image_size, cfg.vision.image_size});
  mmb::save_safetensors(dir + "/bench_inputs.safetensors",
                        {{"prompt_ids", prompt}, {"score_ids", score_ids}, {"pixel_values", pixels},
                         {"new_tokens", torch::tensor(new_tokens)}});

  // Decoder + head parameters a token's forward multiplies with (the embedding table: one row).
  const double dec_params = double(mmb::count_parameters(*model, "language_model.") -
                                   mmb::count_parameters(*model, "language_model.model.embed_tokens."));
  // --- mmb
  // `generate_bench NAME...` runs only the named workloads (score, greedy1, greedy16, greedy64,
  // sample1, sample16, sample64, beam, search) and no Python: for profiling one of them.
  std::vector<std::string> only(argv + 1, argv + argc);
  auto wanted = [&](const std::string& name) {
    return only.empty() || std::find(only.begin(), only.end(), name) != only.end();
  };
  std::map<std::string, double> ours;  // workload -> seconds per run
  if (wanted("score")) ours["score"] = time_s([&] { mmb::score_tokens(model, {score_ids, {}, pixels.narrow(0, 0, 16)}, false); });
  // Per batch size: the prefill of the prompt (vision tower included), then decoding new_tokens
  // from it, greedy or sampled (temperature 1, top-p 0.9), timed apart (a fresh copy of the
  // prefilled state per run, outside the timing).
  auto prefill = [&](int64_t B) {
    return mmb::prefill(model, {prompt.narrow(0, 0, B), {}, pixels.narrow(0, 0, B)}, new_tokens + 1);
  };
  for (int64_t B : {1, 16, 64}) {
    const std::string b = std::to_string(B);
    if (!wanted("prefill" + b) && !wanted("greedy" + b) && !wanted("sample" + b)) continue;
    if (wanted("prefill" + b)) ours["prefill" + b] = time_s([&] { prefill(B); });
    const auto st0 = prefill(B);
    for (bool sample : {false, true}) {
      const std::string key = (sample ? "sample" : "greedy") + b;
      if (!wanted(key)) continue;
      mmb::SampleOptions o;
      o.stop.max_new_tokens = new_tokens;
      if (sample) {
        o.temperature = 1.0;
        o.top_p = 0.9;
        o.seed = 1;
      }
      ours[key] = time_split([&] {
        auto st = st0;
        st.cache = st0.cache.clone();
        return st;
      }, [&](mmb::DecodeState& st) { mmb::generate(model, st, o); });
    }
  }
  // The batch-1 weight-streaming bound: the time to read the decoder and head weights once (hot,
  // the same threads); a decoding step cannot be faster.
  double stream_s = 0;
  if (wanted("greedy1")) {
    auto weights = torch::randn({int64_t(dec_params)});
    stream_s = time_s([&] { weights.sum(); }, 0.5);
  }
  // Group beam search from the batch-1 prompt (5 beams, 5 groups, 12 tokens; same outputs as before).
  uint64_t beam_digest = 0;
  mmb::BeamOptions bo;
  bo.num_beams = 5;
  bo.num_groups = 5;
  bo.diversity_penalty = 3.0;
  bo.stop.max_new_tokens = 12;  // one "sentence"
  if (wanted("beam")) {
    auto st0 = mmb::prefill(model, {prompt.narrow(0, 0, 1), {}, pixels.narrow(0, 0, 1)}, 16);
    ours["beam"] = time_s([&] { mmb::beam_search(model, st0, bo); });
    for (const auto& b : mmb::beam_search(model, st0, bo))  // outputs, to compare across builds
      for (int64_t t : b.tokens) beam_digest = beam_digest * 1000003u + uint64_t(t);
  }

  // --- sentence-level search (CSR): each active node expands into 5 children by group beam
  // search; the top 1 and bottom 2 children stay active. Re-encoding (the CSR reference code on
  // Hugging Face generate) forwards prompt + path for every node, expanded to num_beams rows;
  // cache reuse forwards only new tokens (children extend their parent's cache).
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
  double t_reuse = 0, t_reencode = 0;
  if (wanted("search")) {
    t_reuse = time_s([&] { tokens_reuse = search(true); }, 2.0);
    t_reencode = time_s([&] { tokens_reencode = search(false); }, 2.0);
  }

  // --- GEMM peak at this policy
  auto a = torch::randn({1024, 1024}), b = torch::randn({1024, 1024});
  double gemm_s = time_s([&] { torch::mm(a, b); }, 0.5);
  double peak = 2.0 * 1024 * 1024 * 1024 / gemm_s;

  // --- PyTorch eager on the same weights and inputs, OpenBLAS at mmb's count, run twice: with
  // libtorch's intra-op pool at mmb's count and at 1 (Python's OpenBLAS is the pthreads build, a
  // second pool: 1 is often faster). Each workload keeps PyTorch's faster time.
  mmb::Json py = mmb::Json::object();
  int rc = 0;
  std::string cmd;
  if (only.empty()) {
    for (int torch_threads : {policy.torch_intra_op, 1}) {
      cmd = "OPENBLAS_NUM_THREADS=" + std::to_string(policy.blas) + " /usr/bin/python3 " +
            std::string(MMB_SOURCE_DIR) + "/bench/generate_ref.py " + dir + " " + std::to_string(torch_threads);
      std::string out;
      FILE* p = ::popen(cmd.c_str(), "r");
      char buf[4096];
      size_t n;
      while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
      rc = ::pclose(p);
      if (rc != 0) break;
      const mmb::Json run = mmb::Json::parse(out);
      for (const auto& [key, value] : run.items())
        if (!py.contains(key) || value.get<double>() < py[key].get<double>()) py[key] = value;
      if (torch_threads == 1) break;
    }
  }

  const double vis_params =
      double(mmb::count_parameters(*model, "vision_tower.") + mmb::count_parameters(*model, "multi_modal_projector."));
  const double vis_flops = 2.0 * vis_params * double(cfg.vision.num_patches() + 1);
  auto mfu = [&](double tokens, double images, double secs) {
    return (2.0 * dec_params * tokens + vis_flops * images) / secs / peak;
  };
  std::printf("GEMM 1024^3 peak at policy %s: %.1f GFLOP/s\n\n", mmb::describe_threads().c_str(), peak / 1e9);
  std::printf("%-22s %14s %14s %8s %6s\n", "workload", "mmb", "pytorch", "ratio", "MFU");
  auto row = [&](const char* name, double tokens, double images, const std::string& key) {
    if (!ours.count(key)) return;
    const double mine = ours[key], theirs = py.contains(key) ? py[key].get<double>() : 0.0;
    std::printf("%-22s %10.0f t/s %10.0f t/s %7.2fx %5.1f%%\n", name, tokens / mine,
                theirs > 0 ? tokens / theirs : 0.0, theirs > 0 ? theirs / mine : 0.0,
                100.0 * mfu(tokens, images, mine));
  };
  row("score 16x100", 16.0 * 100, 16, "score");
  for (int64_t B : {1, 16, 64}) {
    const std::string b = std::to_string(B);
    row(("prefill " + b + "x80").c_str(), double(B * prompt_len), double(B), "prefill" + b);
    row(("greedy decode, batch " + b).c_str(), double(B * new_tokens), 0, "greedy" + b);
    row(("sampled decode, batch " + b).c_str(), double(B * new_tokens), 0, "sample" + b);
  }
  if (ours.count("beam"))
    std::printf("group beam search (5 beams / 5 groups, 12 tokens, batch-1 prompt): %.2f ms (outputs %016llx)\n",
                1e3 * ours["beam"], (unsigned long long)beam_digest);
  if (stream_s > 0 && ours.count("greedy1"))
    std::printf("batch-1 decoding: %.3f ms/token; weight-streaming bound (decoder + head, %.1f MB read once): "
                "%.0f tok/s -> %.0f%% of it\n",
                1e3 * ours["greedy1"] / double(new_tokens), 4e-6 * dec_params, 1.0 / stream_s,
                100.0 * stream_s * double(new_tokens) / ours["greedy1"]);
  if (t_reuse > 0) {
    std::printf(
        "\nCSR sentence-level search (%d levels, 5 beams / 5 groups, 12-token sentences, top 1 + bottom 2 kept):\n",
        levels);
    std::printf("  cache reuse: %lld forwarded tokens, %.1f ms\n", (long long)tokens_reuse, 1e3 * t_reuse);
    std::printf("  re-encoding: %lld forwarded tokens, %.1f ms\n", (long long)tokens_reencode, 1e3 * t_reencode);
    std::printf("  -> %.2fx fewer tokens, %.2fx faster\n", double(tokens_reencode) / tokens_reuse,
                t_reencode / t_reuse);
  }
  if (rc != 0) std::printf("(python reference failed: %s)\n", cmd.c_str());
  std::system(("rm -rf '" + dir + "'").c_str());
  return 0;
}
