// Beam search and group (diverse) beam search, after Vijayakumar et al. 2016 as implemented in
// Hugging Face transformers (HammingDiversityLogitsProcessor + BeamSearchScorer):
// - groups are processed in order at each step; a group's log-probs lose diversity_penalty for
//   every time an earlier group picked the token at this step;
// - beam scores accumulate the penalised log-probs; each group starts from one live beam;
// - per group the top 2 * group_size candidates are scanned: a candidate that completes (stop
//   token, stop string, sentence end) becomes a finished hypothesis if its rank < group_size,
//   otherwise the first group_size open candidates continue;
// - finished score = beam score / generated_length^length_penalty (HF's default for decoder-only
//   models in recent versions uses the generated length too); at max_new_tokens the open beams
//   are finalised with reason "length";
// - a group is done when it holds group_size hypotheses and its best open beam, length-normalised
//   at the current length, cannot beat the worst of them (HF's early_stopping=False heuristic).
// The cache is reordered by copying the selected rows (as HF's _reorder_cache).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "mmb/error.h"
#include "mmb/generate.h"

namespace mmb {

std::string stop_reason(const StopOptions& stop, const std::vector<int64_t>& tokens);  // decode.cpp
void forbid_image_token(LlavaForConditionalGeneration& model, torch::Tensor& logits);   // decode.cpp

double Beam::sum_logprob() const {
  double s = 0;
  for (float v : logprobs) s += v;
  return s;
}

namespace {

struct Open {
  std::vector<int64_t> tokens;
  std::vector<float> logprobs;
  double score = 0;
};

double normalised(double score, size_t length, double length_penalty) {
  return score / std::pow(double(std::max<size_t>(length, 1)), length_penalty);
}

// Reorders the cache's rows in place, row i taking row src[i] (HF's _reorder_cache): only the rows
// that change are copied, through a scratch buffer, instead of gathering a whole new cache every
// step. A cache that is not contiguous CPU memory is gathered with KvCache::select instead.
void reorder_rows(KvCache& cache, const std::vector<int64_t>& src) {
  const int64_t B = cache.batch();
  std::vector<int64_t> moved;
  for (int64_t i = 0; i < B; ++i)
    if (src[size_t(i)] != i) moved.push_back(i);
  if (moved.empty()) return;
  std::vector<torch::Tensor*> all;
  for (auto* vec : {&cache.k, &cache.v})
    for (auto& t : *vec) all.push_back(&t);
  all.push_back(&cache.key_keep);
  all.push_back(&cache.real);
  all.push_back(&cache.next_position);
  for (auto* t : all)
    if (!t->device().is_cpu() || !t->is_contiguous()) {
      cache = cache.select(torch::tensor(src, torch::kLong));
      return;
    }
  std::vector<char> scratch;
  for (auto* t : all) {
    const size_t row = size_t(t->numel() / B) * t->element_size();
    char* base = static_cast<char*>(t->data_ptr());
    scratch.resize(moved.size() * row);
    for (size_t j = 0; j < moved.size(); ++j)
      std::memcpy(scratch.data() + j * row, base + size_t(src[size_t(moved[j])]) * row, row);
    for (size_t j = 0; j < moved.size(); ++j) std::memcpy(base + size_t(moved[j]) * row, scratch.data() + j * row, row);
  }
}

void add_finished(std::vector<Beam>& hyps, Beam b, int64_t keep) {
  hyps.push_back(std::move(b));
  std::stable_sort(hyps.begin(), hyps.end(), [](const Beam& x, const Beam& y) { return x.score > y.score; });
  if (int64_t(hyps.size()) > keep) hyps.resize(keep);
}

}  // namespace

std::vector<Beam> beam_search(LlavaForConditionalGeneration& model, const DecodeState& start,
                              const BeamOptions& opt) {
  c10::InferenceMode inference;
  const int64_t nb = opt.num_beams, ng_ = opt.num_groups;
  if (start.last_logits.size(0) != 1) fail("beam_search: expects a single-row state, got ", start.last_logits.size(0));
  if (nb < 1 || ng_ < 1 || nb % ng_)
    fail("beam_search: num_beams ", nb, " must be a positive multiple of num_groups ", ng_);
  if (opt.stop.max_new_tokens < 1) fail("beam_search: max_new_tokens must be >= 1");
  const int64_t gs = nb / ng_;
  DecodeState st = start.select(torch::zeros({nb}, torch::kLong));
  const int64_t V = st.last_logits.size(1);
  std::vector<Open> beams(nb);
  for (int64_t i = 0; i < nb; ++i) beams[i].score = (i % gs == 0) ? 0.0 : -1e9;  // one live beam per group
  std::vector<std::vector<Beam>> finished(ng_);
  std::vector<bool> group_done(ng_, false);

  for (int64_t step = 0; step < opt.stop.max_new_tokens; ++step) {
    auto logp = torch::log_softmax(st.last_logits.to(torch::kFloat32), -1).contiguous();  // (nb, V)
    forbid_image_token(model, logp);
    auto logp_acc = logp.accessor<float, 2>();
    std::vector<float> counts(size_t(V), 0.f);                                 // picks by earlier groups
    std::vector<int64_t> src(nb), tok(nb);
    std::vector<Open> next(nb);
    const float penalty = float(opt.diversity_penalty);
    std::vector<std::pair<float, int64_t>> cands;                             // (score, beam * V + token)
    for (int64_t g = 0; g < ng_; ++g) {
      const int64_t r0 = g * gs;
      // The top 2 * gs of (log p - penalty * count) + beam score over the group's beams and tokens,
      // in float as the tensor expression computed it; ties rank the lower index first.
      const int64_t want = std::min<int64_t>(2 * gs, gs * V);
      cands.clear();
      for (int64_t i = 0; i < gs; ++i) {
        const float base = float(beams[r0 + i].score);
        const float* row = logp.data_ptr<float>() + (r0 + i) * V;
        for (int64_t t = 0; t < V; ++t) cands.emplace_back((row[t] - penalty * counts[size_t(t)]) + base, i * V + t);
      }
      auto better = [](const std::pair<float, int64_t>& a, const std::pair<float, int64_t>& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
      };
      std::partial_sort(cands.begin(), cands.begin() + want, cands.end(), better);
      cands.resize(size_t(want));
      int64_t k = 0;
      for (int64_t rank = 0; rank < int64_t(cands.size()) && k < gs; ++rank) {
        const int64_t flat = cands[size_t(rank)].second, b = r0 + flat / V, t = flat % V;
        const double value = cands[size_t(rank)].first;
        Open o = beams[b];
        o.tokens.push_back(t);
        o.logprobs.push_back(logp_acc[b][t]);
        o.score = value;
        std::string why = group_done[g] ? "" : stop_reason(opt.stop, o.tokens);
        if (!why.empty()) {
          if (rank < gs) {
            Beam fin{o.tokens, o.logprobs, value, normalised(value, o.tokens.size(), opt.length_penalty), g, why};
            add_finished(finished[g], std::move(fin), gs);
          }
          continue;
        }
        src[r0 + k] = b;
        tok[r0 + k] = t;
        next[r0 + k] = std::move(o);
        ++k;
      }
      for (; k < gs; ++k) {  // fewer open candidates than beams: keep dead placeholders
        src[r0 + k] = r0;
        tok[r0 + k] = model->config().text.pad_token_id;
        next[r0 + k] = beams[r0];
        next[r0 + k].score = -1e18;
      }
      for (int64_t i = 0; i < gs; ++i) counts[size_t(tok[r0 + i])] += 1;
      // done when full and no open beam can beat the worst finished hypothesis
      if (int64_t(finished[g].size()) >= gs) {
        double best_open = -1e30;
        for (int64_t i = 0; i < gs; ++i)
          best_open =
              std::max(best_open, normalised(next[r0 + i].score, next[r0 + i].tokens.size(), opt.length_penalty));
        if (best_open <= finished[g].back().score) group_done[g] = true;
      }
    }
    beams = std::move(next);
    if (std::all_of(group_done.begin(), group_done.end(), [](bool d) { return d; })) break;
    if (step + 1 == opt.stop.max_new_tokens) break;
    reorder_rows(st.cache, src);  // extend replaces last_logits
    extend(model, st, torch::tensor(tok, torch::kLong).view({nb, 1}));
  }
  std::vector<Beam> out;
  for (int64_t g = 0; g < ng_; ++g) {
    if (!group_done[g])
      for (int64_t i = 0; i < gs; ++i) {
        const Open& o = beams[g * gs + i];
        if (o.score <= -1e17 || o.tokens.empty()) continue;
        add_finished(
            finished[g],
            Beam{o.tokens, o.logprobs, o.score, normalised(o.score, o.tokens.size(), opt.length_penalty), g, "length"},
            gs);
      }
    for (auto& b : finished[g]) out.push_back(std::move(b));
  }
  return out;
}

}  // namespace mmb
