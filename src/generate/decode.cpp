// Cached decoding: prefill, extend, sampling loop with stops and logits processors.
#include <algorithm>
#include <cmath>
#include <limits>

#include "mmb/error.h"
#include "mmb/generate.h"
#include "mmb/sentences.h"
#include "mmb/strings.h"

namespace mmb {
namespace {

// Logits of each row's last real position: (B, T, C) hidden -> (B, V). mask (B, T) marks real
// tokens; undefined = all real.
torch::Tensor last_logits(LlavaForConditionalGeneration& model, const torch::Tensor& hidden,
                          const torch::Tensor& mask) {
  const int64_t B = hidden.size(0), T = hidden.size(1);
  torch::Tensor h;                                                  // (B, C)
  if (T == 1 || !mask.defined()) {
    h = hidden.select(1, T - 1);
  } else {
    auto pos = torch::arange(T, torch::dtype(torch::kLong).device(hidden.device())).view({1, T});
    auto last = (mask.to(torch::kLong) * (pos + 1)).argmax(1);      // last real position per row (B,)
    h = hidden.index({torch::arange(B, last.options()), last});
  }
  auto logits = model->logits(h);                                   // (B, V)
  return logits.scalar_type() == torch::kFloat32 ? logits : logits.to(torch::kFloat32);
}

// Keeps the top_k logits and the top_p nucleus of each row; others become -inf.
void filter_top_k_top_p(torch::Tensor& logits, int64_t top_k, double top_p) {
  const double neg_inf = -std::numeric_limits<double>::infinity();
  if (top_k > 0 && top_k < logits.size(-1)) {
    auto kth = std::get<0>(logits.topk(top_k, -1)).select(-1, top_k - 1).unsqueeze(-1);  // (B, 1)
    logits = logits.masked_fill(logits < kth, neg_inf);
  }
  if (top_p < 1.0) {
    auto sorted = logits.sort(-1, /*descending=*/true);
    auto probs = torch::softmax(std::get<0>(sorted), -1);
    auto cum = probs.cumsum(-1);
    auto remove_sorted = (cum - probs) > top_p;  // keep up to and including the token crossing top_p
    auto remove = torch::zeros_like(remove_sorted).scatter(-1, std::get<1>(sorted), remove_sorted);
    logits = logits.masked_fill(remove, neg_inf);
  }
}

}  // namespace

// The <image> id is an input slot, never an output: it gets -inf before a token is chosen.
void forbid_image_token(LlavaForConditionalGeneration& model, torch::Tensor& logits) {
  const int64_t img = model->config().image_token_index;
  if (img >= 0 && img < logits.size(-1)) logits.select(-1, img).fill_(-std::numeric_limits<float>::infinity());
}

// Decides whether a token sequence is complete; shared with beam search (beam.cpp).
std::string stop_reason(const StopOptions& stop, const std::vector<int64_t>& tokens) {
  if (tokens.empty()) return "";
  if (std::find(stop.stop_tokens.begin(), stop.stop_tokens.end(), tokens.back()) != stop.stop_tokens.end())
    return "stop_token";
  if (stop.stop_strings.empty() && !stop.stop_at_sentence_end) return "";
  if (!stop.decode) fail("generate: stop strings / sentence stops need StopOptions::decode");
  std::string text = stop.decode(tokens);
  for (const auto& s : stop.stop_strings)
    if (!s.empty() && ends_with(text, s)) return "stop_string";
  if (stop.stop_at_sentence_end && ends_sentence(text)) return "sentence_end";
  return "";
}

double Generation::sum_logprob() const {
  double s = 0;
  for (float v : logprobs) s += v;
  return s;
}

DecodeState prefill(LlavaForConditionalGeneration& model, const VlmInput& in, int64_t extra_capacity) {
  c10::InferenceMode inference;
  const int64_t B = in.input_ids.size(0), T = in.input_ids.size(1);
  DecodeState st;
  st.cache = model->new_cache(B, T + std::max<int64_t>(extra_capacity, 1));
  auto hidden = model->forward_hidden(in, &st.cache);  // (B, T, C)
  st.last_logits = last_logits(model, hidden, in.attention_mask);
  return st;
}

void extend(LlavaForConditionalGeneration& model, DecodeState& state, const torch::Tensor& ids,
            const torch::Tensor& mask) {
  c10::InferenceMode inference;
  auto hidden = model->forward_hidden({ids, mask}, &state.cache);  // (B, T, C)
  auto fresh = last_logits(model, hidden, mask);                   // (B, V)
  if (!mask.defined()) {
    state.last_logits = fresh;
    return;
  }
  // Rows whose new tokens are all padding keep their previous next-token logits.
  auto any = mask.to(torch::kBool).any(1);                         // (B,)
  state.last_logits = torch::where(any.unsqueeze(1), fresh, state.last_logits);
}

SecondContextProcessor::SecondContextProcessor(LlavaForConditionalGeneration model, DecodeState second,
                                               double alpha, double cutoff)
    : model_(std::move(model)), second_(std::move(second)), alpha_(alpha), log_cutoff_(std::log(cutoff)) {
  if (!(cutoff > 0 && cutoff <= 1)) fail("SecondContextProcessor: cutoff must be in (0, 1], got ", cutoff);
}

void SecondContextProcessor::process(torch::Tensor& logits, const torch::Tensor&) {
  auto l = logits, l2 = second_.last_logits.to(logits.dtype());  // (B, V)
  if (l2.sizes() != l.sizes())
    fail("SecondContextProcessor: second context has logits ", l2.sizes(), ", main ", l.sizes());
  auto cut = std::get<0>(l.max(-1, true)) + log_cutoff_;          // (B, 1)
  auto s = (1.0 + alpha_) * l - alpha_ * l2;
  logits = s.masked_fill(l < cut, -std::numeric_limits<float>::infinity());
}

void SecondContextProcessor::advance(const torch::Tensor& chosen, const torch::Tensor& running) {
  const bool all_running = running.all().item<bool>();
  extend(model_, second_, chosen.view({-1, 1}), all_running ? torch::Tensor() : running.view({-1, 1}).to(torch::kLong));
}

void SecondContextProcessor::reorder(const torch::Tensor& index) { second_ = second_.select(index); }

// SampleOptions::repetition_penalty and no_repeat_ngram_size on one row's logits (V,).
static void penalise_repeats(float* logits, int64_t vocab, const std::vector<int64_t>& tokens,
                             const SampleOptions& opt) {
  if (opt.repetition_penalty != 1.0) {
    std::vector<bool> seen(size_t(vocab), false);
    for (int64_t t : tokens)
      if (t >= 0 && t < vocab && !seen[size_t(t)]) {
        seen[size_t(t)] = true;
        float& l = logits[t];
        l = l > 0 ? float(l / opt.repetition_penalty) : float(l * opt.repetition_penalty);
      }
  }
  const int64_t n = opt.no_repeat_ngram_size, len = int64_t(tokens.size());
  if (n <= 0 || len < n - 1) return;
  // Every earlier n-gram whose first n-1 tokens equal the last n-1 generated bans its last token.
  for (int64_t start = 0; start + n <= len; ++start) {
    bool same = true;
    for (int64_t k = 0; k < n - 1 && same; ++k) same = tokens[size_t(start + k)] == tokens[size_t(len - n + 1 + k)];
    const int64_t banned = tokens[size_t(start + n - 1)];
    if (same && banned >= 0 && banned < vocab) logits[banned] = -std::numeric_limits<float>::infinity();
  }
}

std::vector<Generation> generate(LlavaForConditionalGeneration& model, DecodeState& state,
                                 const SampleOptions& opt, const std::vector<LogitsProcessor*>& processors) {
  c10::InferenceMode inference;
  const int64_t B = state.last_logits.size(0);
  if (opt.temperature < 0) fail("generate: temperature must be >= 0, got ", opt.temperature);
  if (opt.top_p <= 0 || opt.top_p > 1) fail("generate: top_p must be in (0, 1], got ", opt.top_p);
  if (!(opt.repetition_penalty > 0)) fail("generate: repetition_penalty must be > 0, got ", opt.repetition_penalty);
  if (opt.no_repeat_ngram_size < 0) fail("generate: no_repeat_ngram_size must be >= 0, got ", opt.no_repeat_ngram_size);
  const bool penalise = opt.repetition_penalty != 1.0 || opt.no_repeat_ngram_size > 0;
  auto gen = at::detail::createCPUGenerator(opt.seed);
  std::vector<Generation> out(B);
  std::vector<bool> done(B, false);
  int64_t n_done = 0;
  // Tokens so far, for the processors only: (B, max_new_tokens), the first `step` columns filled.
  auto generated = processors.empty() ? torch::Tensor()
                                      : torch::zeros({B, std::max<int64_t>(opt.stop.max_new_tokens, 0)}, torch::kLong);
  const int64_t pad = model->config().text.pad_token_id;
  for (int64_t step = 0; step < opt.stop.max_new_tokens; ++step) {
    auto logits = state.last_logits.scalar_type() == torch::kFloat32 ? state.last_logits
                                                                     : state.last_logits.to(torch::kFloat32);  // (B, V)
    auto logp = torch::log_softmax(logits, -1);                             // (B, V)
    auto entropy = -(logp.exp() * logp).sum(-1);                            // (B,)
    auto proc = logits.clone();
    forbid_image_token(model, proc);
    for (auto* p : processors) p->process(proc, generated.narrow(1, 0, step));
    if (penalise) {
      proc = proc.contiguous();
      float* rows = proc.data_ptr<float>();
      const int64_t V = proc.size(1);
      for (int64_t b = 0; b < B; ++b)
        if (!done[b]) penalise_repeats(rows + b * V, V, out[b].tokens, opt);
    }
    torch::Tensor next;                                                     // (B,)
    if (opt.temperature == 0.0) {
      next = proc.argmax(-1);
    } else {
      proc = proc / opt.temperature;
      filter_top_k_top_p(proc, opt.top_k, opt.top_p);
      next = torch::multinomial(torch::softmax(proc, -1), 1, false, gen).view({B});
    }
    auto next_acc = next.accessor<int64_t, 1>();
    auto logp_acc = logp.accessor<float, 2>();
    auto ent_acc = entropy.accessor<float, 1>();
    auto running = torch::zeros({B}, torch::kBool);
    auto running_acc = running.accessor<bool, 1>();
    const bool all_running = n_done == 0;  // before this step's stops: every row takes its token
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) {
        next_acc[b] = pad;
        continue;
      }
      running_acc[b] = true;
      int64_t tok = next_acc[b];
      out[b].tokens.push_back(tok);
      out[b].logprobs.push_back(logp_acc[b][tok]);
      out[b].entropies.push_back(ent_acc[b]);
      std::string why = stop_reason(opt.stop, out[b].tokens);
      if (!why.empty()) {
        done[b] = true;
        ++n_done;
        out[b].finish_reason = why;
      }
    }
    for (auto* p : processors) p->advance(next, running);
    if (generated.defined()) generated.select(1, step).copy_(next);
    // The state always ends holding every generated token, so callers can continue from it.
    extend(model, state, next.view({B, 1}), all_running ? torch::Tensor() : running.view({B, 1}));
    if (n_done == B) break;
  }
  for (int64_t b = 0; b < B; ++b)
    if (!done[b]) out[b].finish_reason = "length";
  return out;
}

}  // namespace mmb
