// Step spans and MMBoundary's four step signals (SPEC.md §1.1; include/mmb/confidence.h).
#include <algorithm>
#include <cmath>

#include "mmb/confidence.h"
#include "mmb/error.h"
#include "mmb/sentences.h"

namespace mmb {
namespace {

constexpr const char* kSignalNames[kNumSignals] = {"lnlp", "mte", "tsar", "clips"};

std::vector<int32_t> text_ids(const Tokenizer& tok, const std::vector<int64_t>& tokens, size_t begin, size_t end,
                              size_t skip = size_t(-1)) {
  std::vector<int32_t> ids;
  for (size_t i = begin; i < end; ++i) {
    const int64_t t = tokens[i];
    if (i == skip || t == tok.eos_id() || t == tok.pad_id() || t == tok.bos_id() || t < 0 || t >= tok.num_ids())
      continue;
    ids.push_back(int32_t(t));
  }
  return ids;
}

}  // namespace

const char* signal_name(int signal) {
  if (signal < 0 || signal >= kNumSignals) fail("signal_name: no signal ", signal);
  return kSignalNames[signal];
}

int signal_index(const std::string& name) {
  for (int i = 0; i < kNumSignals; ++i)
    if (name == kSignalNames[i]) return i;
  fail("signal_index: unknown signal \"", name, "\" (expected lnlp, mte, tsar or clips)");
}

std::vector<StepSpan> step_spans(const Tokenizer& tok, const std::vector<int64_t>& tokens) {
  const std::string text = tok.decode(text_ids(tok, tokens, 0, tokens.size()));
  // char_end[k]: bytes of the decoded text spelled by tokens [0, k] (non-decreasing).
  std::vector<size_t> char_end(tokens.size());
  size_t last = 0;
  for (size_t k = 0; k < tokens.size(); ++k) {
    last = std::max(last, std::min(text.size(), tok.decode(text_ids(tok, tokens, 0, k + 1)).size()));
    char_end[k] = last;
  }
  std::vector<StepSpan> out;
  size_t previous_end = 0;  // byte after the previous sentence: the whitespace between goes to the next
  for (const auto& s : sentence_spans(text)) {
    StepSpan span;
    span.text = text.substr(s.begin, s.end - s.begin);
    size_t k = 0;
    while (k < tokens.size() && char_end[k] <= previous_end) ++k;
    previous_end = s.end;
    span.token_begin = int64_t(k);
    while (k < tokens.size() && char_end[k] < s.end) ++k;
    span.token_end = int64_t(std::min(k + 1, tokens.size()));
    // The claim: the tokens that end at or before its last byte.
    span.claim_end = span.token_end;
    const size_t claim_bytes = s.begin + claim_length(span.text);
    if (claim_bytes < s.end) {
      int64_t c = span.token_begin;
      while (c < span.token_end && char_end[size_t(c)] <= claim_bytes) ++c;
      if (c > span.token_begin && char_end[size_t(c - 1)] == claim_bytes) span.claim_end = c;
    }
    if (span.token_end > span.token_begin) out.push_back(std::move(span));
  }
  return out;
}

double lnlp_uncertainty(const std::vector<double>& logprobs) {
  if (logprobs.empty()) fail("lnlp_uncertainty: empty step");
  double s = 0;
  for (double lp : logprobs) s += lp;
  return std::exp(-s / double(logprobs.size()));
}

double mean_token_entropy(const std::vector<double>& entropies) {
  if (entropies.empty()) fail("mean_token_entropy: empty step");
  double s = 0;
  for (double h : entropies) s += h;
  return s / double(entropies.size());
}

double token_sar(const std::vector<double>& logprobs, const std::vector<double>& relevance) {
  if (logprobs.empty()) fail("token_sar: empty step");
  if (logprobs.size() != relevance.size())
    fail("token_sar: ", logprobs.size(), " log-probs but ", relevance.size(), " relevances");
  double total = 0;
  for (double r : relevance) total += std::max(r, 0.0);
  if (total <= 0) return 0.0;
  double u = 0;
  for (size_t l = 0; l < logprobs.size(); ++l) u -= std::max(relevance[l], 0.0) / total * logprobs[l];
  return u;
}

ResponseSignals response_signals(const Tokenizer& tok, ClipScorer& clip, const torch::Tensor& pixel_values,
                                 const std::vector<int64_t>& tokens, const std::vector<float>& logprobs,
                                 const std::vector<float>& entropies) {
  if (tokens.size() != logprobs.size() || tokens.size() != entropies.size())
    fail("response_signals: ", tokens.size(), " tokens, ", logprobs.size(), " log-probs, ", entropies.size(),
         " entropies (expected equal)");
  ResponseSignals out;
  out.steps = step_spans(tok, tokens);
  if (out.steps.empty()) return out;
  // Every step and each of its leave-one-out variants, embedded in one forward of the text tower.
  std::vector<std::string> texts;
  std::vector<size_t> first_variant;
  for (const auto& s : out.steps)
    texts.push_back(s.claim_end == s.token_end ? s.text
                                               : tok.decode(text_ids(tok, tokens, size_t(s.token_begin),
                                                                     size_t(s.claim_end))));
  for (const auto& s : out.steps) {
    first_variant.push_back(texts.size());
    for (int64_t l = s.token_begin; l < s.claim_end; ++l)
      texts.push_back(tok.decode(text_ids(tok, tokens, size_t(s.token_begin), size_t(s.claim_end), size_t(l))));
  }
  auto emb = clip.sentence_embeddings(texts);  // (N, C)
  const int64_t S = int64_t(out.steps.size());
  std::vector<double> clips(size_t(S), 0.0);
  if (pixel_values.defined()) {
    std::vector<std::string> steps(texts.begin(), texts.begin() + S);
    clips = clip.score(pixel_values, steps);
  }
  for (int64_t i = 0; i < S; ++i) {
    const auto& s = out.steps[size_t(i)];
    const int64_t L = s.claim_end - s.token_begin;
    auto sims = torch::mv(emb.narrow(0, int64_t(first_variant[size_t(i)]), L), emb[i]).to(torch::kDouble).contiguous();
    std::vector<double> lp, h, rel;
    for (int64_t l = 0; l < L; ++l) {
      lp.push_back(logprobs[size_t(s.token_begin + l)]);
      h.push_back(entropies[size_t(s.token_begin + l)]);
      rel.push_back(1.0 - sims.data_ptr<double>()[l]);
    }
    StepSignals sig{};
    sig[kLnlp] = lnlp_uncertainty(lp);
    sig[kMte] = mean_token_entropy(h);
    sig[kTsar] = token_sar(lp, rel);
    sig[kClips] = clips[size_t(i)];
    out.signals.push_back(sig);
  }
  return out;
}

}  // namespace mmb
