// Cached decoding: prefill, extend, sampling loop with stops and logits processors.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include <ATen/Parallel.h>

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

// One row's log-softmax summary: the log normaliser and the entropy (nats) of softmax(logits).
struct RowStats {
  double log_z = 0, entropy = 0;
};
RowStats row_stats(const float* logits, int64_t V) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < V; ++i) mx = std::max(mx, logits[i]);
  double z = 0, zl = 0;  // sum e^(l - mx), sum e^(l - mx) (l - mx)
  for (int64_t i = 0; i < V; ++i) {
    const double d = double(logits[i]) - mx;
    if (d == -std::numeric_limits<double>::infinity()) continue;
    const double e = std::exp(d);
    z += e;
    zl += e * d;
  }
  RowStats r;
  r.log_z = mx + std::log(z);
  r.entropy = std::log(z) - zl / z;  // -sum p log p with log p = d - log z
  return r;
}

// Draws a token from softmax(row / temperature) restricted to the top_k tokens and the top_p
// nucleus (Hugging Face's TopK then TopP warpers: a token is dropped when the probability mass of
// the tokens ranked above it already exceeds top_p), with u uniform in [0, 1). The nucleus is found
// by sorting only the tokens above a probability threshold whose mass already exceeds top_p, not
// the whole vocabulary. row is scratch (V) and is overwritten.
int64_t sample_row(float* row, int64_t V, double temperature, int64_t top_k, double top_p, double u,
                   std::vector<int64_t>& order, std::vector<float>& scratch) {
  const float inv_t = float(1.0 / temperature);
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < V; ++i) {
    row[i] *= inv_t;
    mx = std::max(mx, row[i]);
  }
  if (top_k > 0 && top_k < V) {  // keep logits >= the k-th largest (ties kept, as torch's topk mask)
    scratch.assign(row, row + V);
    std::nth_element(scratch.begin(), scratch.begin() + (top_k - 1), scratch.end(), std::greater<float>());
    const float kth = scratch[size_t(top_k - 1)];
    for (int64_t i = 0; i < V; ++i)
      if (row[i] < kth) row[i] = -std::numeric_limits<float>::infinity();
  }
  double z = 0;  // row becomes unnormalised probabilities
  for (int64_t i = 0; i < V; ++i) {
    row[i] = row[i] == -std::numeric_limits<float>::infinity() ? 0.f : std::exp(row[i] - mx);
    z += row[i];
  }
  if (top_p < 1.0) {
    // The nucleus is every token with p >= cut, cut = the probability of the first token (in
    // descending order) whose higher-ranked mass exceeds top_p (ties at cut are all kept). Only
    // candidates with p >= tau are sorted, tau lowered until their mass exceeds top_p: then the
    // cut lies among them (every token outside has at least their mass ranked above it).
    float tau = 0.5f;  // relative to the largest probability, which is 1
    for (;;) {
      order.clear();
      double mass = 0;
      for (int64_t i = 0; i < V; ++i)
        if (row[i] >= tau && row[i] > 0) {
          order.push_back(i);
          mass += row[i];
        }
      if (mass > top_p * z || tau == 0.f) break;
      tau = tau < 1e-12f ? 0.f : tau / 16;
    }
    std::vector<float>& sorted = scratch;
    sorted.clear();
    for (int64_t i : order) sorted.push_back(row[i]);
    std::sort(sorted.begin(), sorted.end(), std::greater<float>());
    float cut = sorted.back();
    double before = 0;  // mass ranked above sorted[j]
    for (float p : sorted) {
      if (before > top_p * z) break;
      cut = p;
      before += p;
    }
    for (int64_t i = 0; i < V; ++i)
      if (row[i] < cut) row[i] = 0.f;
    z = 0;
    for (int64_t i : order) z += row[i];
  }
  double r = u * z;
  int64_t last = 0;
  for (int64_t i = 0; i < V; ++i) {
    if (row[i] <= 0) continue;
    last = i;
    r -= row[i];
    if (r < 0) return i;
  }
  return last;
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
  std::mt19937_64 rng(opt.seed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<Generation> out(B);
  std::vector<bool> done(B, false);
  int64_t n_done = 0;
  // Tokens so far, for the processors only: (B, max_new_tokens), the first `step` columns filled.
  auto generated = processors.empty() ? torch::Tensor()
                                      : torch::zeros({B, std::max<int64_t>(opt.stop.max_new_tokens, 0)}, torch::kLong);
  const int64_t pad = model->config().text.pad_token_id, img = model->config().image_token_index;
  std::vector<double> draws(B);
  std::vector<int64_t> chosen(B);
  std::vector<RowStats> stats(B);
  // Finished rows leave the batch (without processors, which hold per-row state): once a quarter
  // of the decoded rows are done, the state keeps the running ones and the finished ones are
  // parked, each with its cache at the length it finished, and merged back at the end.
  const bool compact = processors.empty() && B > 1;
  std::vector<int64_t> rows(static_cast<size_t>(B));  // decoded row w is row rows[w] of the batch
  for (int64_t b = 0; b < B; ++b) rows[size_t(b)] = b;
  DecodeState compacted;
  DecodeState* cur = &state;
  struct Parked {              // rows that left together, with their state when they left
    std::vector<int64_t> rows;  // batch rows, in the order of st's rows
    DecodeState st;
  };
  std::vector<Parked> parked;
  for (int64_t step = 0; step < opt.stop.max_new_tokens; ++step) {
    const int64_t Bw = int64_t(rows.size());
    auto logits = cur->last_logits.to(torch::kFloat32).contiguous();     // (Bw, V)
    const int64_t V = logits.size(1);
    // The logits a token is chosen from: the model's (the <image> id forbidden below), or the
    // processors' when there are any.
    torch::Tensor proc;
    if (!processors.empty()) {
      proc = logits.clone();
      forbid_image_token(model, proc);
      for (auto* p : processors) p->process(proc, generated.narrow(1, 0, step));
      proc = proc.to(torch::kFloat32).contiguous();
    }
    // One uniform per row of the batch and step, drawn in row order whether or not the row is
    // still decoded: the same stream at any thread count and with or without compaction.
    for (int64_t b = 0; b < B; ++b) draws[b] = opt.temperature > 0 ? uniform(rng) : 0.0;
    const float* model_rows = logits.data_ptr<float>();
    const float* pick_rows = proc.defined() ? proc.data_ptr<float>() : model_rows;
    auto choose = [&](int64_t w, std::vector<float>& row, std::vector<int64_t>& order, std::vector<float>& scratch) {
      const int64_t b = rows[size_t(w)];
      stats[b] = row_stats(model_rows + w * V, V);
      row.assign(pick_rows + w * V, pick_rows + (w + 1) * V);
      if (!proc.defined() && img >= 0 && img < V) row[size_t(img)] = -std::numeric_limits<float>::infinity();
      if (penalise) penalise_repeats(row.data(), V, out[b].tokens, opt);
      if (opt.temperature == 0.0)
        chosen[b] = std::max_element(row.begin(), row.end()) - row.begin();  // first maximum, as argmax
      else
        chosen[b] = sample_row(row.data(), V, opt.temperature, opt.top_k, opt.top_p, draws[b], order, scratch);
    };
    at::parallel_for(0, Bw, 8, [&](int64_t begin, int64_t end) {
      std::vector<float> row, scratch;
      std::vector<int64_t> order;
      for (int64_t w = begin; w < end; ++w)
        if (!done[rows[size_t(w)]]) choose(w, row, order, scratch);
    });
    auto next = torch::empty({Bw}, torch::kLong);                          // (Bw,)
    auto next_acc = next.accessor<int64_t, 1>();
    auto running = torch::zeros({Bw}, torch::kBool);
    auto running_acc = running.accessor<bool, 1>();
    bool all_running = true;  // before this step's stops: every decoded row takes its token
    for (int64_t w = 0; w < Bw; ++w) {
      const int64_t b = rows[size_t(w)];
      if (done[b]) {
        next_acc[w] = pad;
        all_running = false;
        continue;
      }
      running_acc[w] = true;
      const int64_t tok = chosen[b];
      next_acc[w] = tok;
      out[b].tokens.push_back(tok);
      out[b].logprobs.push_back(float(double(model_rows[w * V + tok]) - stats[b].log_z));
      out[b].entropies.push_back(float(stats[b].entropy));
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
    extend(model, *cur, next.view({Bw, 1}), all_running ? torch::Tensor() : running.view({Bw, 1}));
    if (n_done == B) break;
    int64_t done_here = 0;
    for (int64_t w = 0; w < Bw; ++w) done_here += done[rows[size_t(w)]] ? 1 : 0;
    if (compact && done_here > 0 && 4 * done_here >= Bw) {
      std::vector<int64_t> keep, kept_rows, leave, left_rows;
      for (int64_t w = 0; w < Bw; ++w) {
        const int64_t b = rows[size_t(w)];
        if (done[b])
          leave.push_back(w), left_rows.push_back(b);
        else
          keep.push_back(w), kept_rows.push_back(b);
      }
      parked.push_back({std::move(left_rows), cur->select(torch::tensor(leave, torch::kLong))});
      compacted = cur->select(torch::tensor(keep, torch::kLong));
      cur = &compacted;
      rows = std::move(kept_rows);
    }
  }
  if (!parked.empty()) {  // every row back into the caller's state, in batch order
    parked.push_back({rows, std::move(*cur)});
    int64_t length = 0, capacity = 0;
    for (const auto& p : parked) {
      length = std::max(length, p.st.cache.length);
      capacity = std::max(capacity, p.st.cache.capacity());
    }
    DecodeState full;
    full.cache = model->new_cache(B, capacity);
    full.cache.length = length;
    full.last_logits = torch::empty({B, parked.front().st.last_logits.size(1)}, parked.front().st.last_logits.options());
    for (const auto& p : parked) {
      // Rows that left early continue as padding: positions after their length are not kept.
      const auto index = torch::tensor(p.rows, torch::kLong);
      const int64_t n = p.st.cache.length;
      for (size_t l = 0; l < full.cache.k.size(); ++l) {
        full.cache.k[l].narrow(2, 0, n).index_copy_(0, index, p.st.cache.k[l].narrow(2, 0, n));
        full.cache.v[l].narrow(2, 0, n).index_copy_(0, index, p.st.cache.v[l].narrow(2, 0, n));
      }
      full.cache.key_keep.narrow(1, 0, n).index_copy_(0, index, p.st.cache.key_keep.narrow(1, 0, n));
      full.cache.real.narrow(1, 0, n).index_copy_(0, index, p.st.cache.real.narrow(1, 0, n));
      full.cache.next_position.index_copy_(0, index, p.st.cache.next_position);
      full.last_logits.index_copy_(0, index, p.st.last_logits);
    }
    state = std::move(full);
  }
  for (int64_t b = 0; b < B; ++b)
    if (!done[b]) out[b].finish_reason = "length";
  return out;
}

}  // namespace mmb
