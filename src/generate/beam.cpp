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
    auto logp = torch::log_softmax(st.last_logits.to(torch::kFloat32), -1);  // (nb, V)
    forbid_image_token(model, logp);
    auto logp_acc = logp.accessor<float, 2>();
    auto counts = torch::zeros({V}, torch::kFloat32);                         // picks by earlier groups
    auto counts_acc = counts.accessor<float, 1>();
    std::vector<int64_t> src(nb), tok(nb);
    std::vector<Open> next(nb);
    for (int64_t g = 0; g < ng_; ++g) {
      const int64_t r0 = g * gs;
      auto scores = logp.narrow(0, r0, gs) - opt.diversity_penalty * counts.unsqueeze(0);  // (gs, V)
      std::vector<double> base(gs);
      for (int64_t i = 0; i < gs; ++i) base[i] = beams[r0 + i].score;
      auto cand = scores + torch::tensor(base, torch::kFloat64).to(torch::kFloat32).unsqueeze(1);
      auto top = cand.view({-1}).topk(std::min<int64_t>(2 * gs, gs * V));
      auto vals = std::get<0>(top).accessor<float, 1>();
      auto idx = std::get<1>(top).accessor<int64_t, 1>();
      int64_t k = 0;
      for (int64_t rank = 0; rank < idx.size(0) && k < gs; ++rank) {
        const int64_t flat = idx[rank], b = r0 + flat / V, t = flat % V;
        const double value = vals[rank];
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
      for (int64_t i = 0; i < gs; ++i) counts_acc[tok[r0 + i]] += 1;
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
    st = st.select(torch::tensor(src, torch::kLong));
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
