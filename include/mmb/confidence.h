// Step-level confidence (MMBoundary, SPEC.md §1.1–1.3; docs/boundary.md): a response is split
// into steps (sentences); each step gets four signals from the model's own pass over it, the
// signals are normalised over a reference set and fused into one score, and the score is cut
// into five levels, each with a pool of phrases the model can say.
//
//   U_LNLP  = exp(−(1/L)·Σ_l log p(token_l))          an uncertainty (≥ 1)
//   U_MTE   = (1/L)·Σ_l H(p(· | prefix_l))            an uncertainty (nats, ≥ 0)
//   U_TSAR  = −Σ_l R̃(l)·log p(token_l), R(l) = 1 − sim(z, z without token l), R̃ = R / ΣR
//             (R clamped at 0; all weights 0 when ΣR = 0)  an uncertainty (≥ 0)
//   U_CLIPS = max(cos(E_img, E_txt(z)), 0)            a confidence in [0, 1]
//
// sim is ClipScorer::similarity (mean-pooled CLIP text states). Normalisation is min–max over
// the reference set, clamped to [0, 1]; an uncertainty u becomes the confidence 1 − norm(u).
// Fusion (our choices, the paper gives none): "mean" = Σ w_i·c_i with w = 1/4 each (the paper's
// fusion), "max" = max_i c_i (its ablation), "logistic" = σ(b + Σ a_i·c_i) fitted on step truth
// (beyond the paper). Levels 1..5 cut the fused score at μ − 1.5σ, μ − 0.5σ, μ + 0.5σ, μ + 1.5σ of
// the reference set. Signals a fusion does not use (ablations) are left out of it.
#pragma once
#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <torch/torch.h>

#include "mmb/clip_scorer.h"
#include "mmb/json.h"
#include "mmb/tokenizer.h"

namespace mmb {

// ---- phrases ---------------------------------------------------------------------------------

// One level's phrases: `pool` is what the model is taught to say (sampled uniformly), `variants`
// are other wordings a parser accepts (parse_verbal_confidence). Lower-case, no punctuation.
struct ConfidenceLevel {
  int level = 0;            // 1 (lowest) .. 5
  double confidence = 0;    // the probability it states (0.1, 0.3, 0.5, 0.7, 0.9 by default)
  std::vector<std::string> pool, variants;
};

// The five levels, lowest first. The default set is the data file data/confidence_phrases.json,
// compiled into the library.
struct ConfidencePhrases {
  std::vector<ConfidenceLevel> levels;

  static const ConfidencePhrases& builtin();
  // {"levels": [{"level", "confidence", "pool": [...], "variants": [...]}, ...]}: exactly levels
  // 1..5 in order, confidences increasing in (0, 1), pools non-empty. Throws mmb::Error naming
  // `where` and the key.
  static ConfidencePhrases from_json(const Json& j, const std::string& where);
  static ConfidencePhrases load(const std::string& path);

  const ConfidenceLevel& at(int level) const;  // throws unless 1 <= level <= 5
  // A phrase of the level's pool, drawn with `rng`.
  const std::string& sample(int level, std::mt19937_64& rng) const;
  // (phrase, confidence) for every pool phrase and variant: the parser's table.
  std::vector<std::pair<std::string, double>> table() const;
};

// "There is one red cube." + "but i'm not sure" -> "There is one red cube, but I'm not sure.":
// the phrase goes before the sentence's closing punctuation ('.' when it has none), after a
// comma; "i" as a word is written "I".
std::string attach_phrase(const std::string& sentence, const std::string& phrase);
// Byte length of `sentence` without a trailing ", <phrase>." of `phrases` (the longest that
// matches, case-insensitive, spaces and the comma before it dropped); sentence.size() when none.
size_t claim_length(std::string_view sentence, const ConfidencePhrases& phrases = ConfidencePhrases::builtin());

// ---- steps and signals -------------------------------------------------------------------------

// A step of a response: its sentence and the response tokens [token_begin, token_end) that
// spell it (a leading space token belongs to the sentence it starts).
struct StepSpan {
  std::string text;
  int64_t token_begin = 0, token_end = 0;
  // Tokens [token_begin, claim_end) spell the claim: the step without a trailing stated
  // confidence (", but I'm not sure."), found with ConfidencePhrases::builtin(); = token_end
  // when the step states none. The signals are computed over the claim.
  int64_t claim_end = 0;
};
// The sentences of decode(tokens) (mmb/sentences.h) with their token ranges. Tokens after the
// last sentence (EOS, spaces) belong to none. Decodes every prefix: O(T²) in the token count.
// A step's claim ends before the token that starts its trailing confidence phrase (at a token
// boundary; the whole step when the phrase starts inside a token or the claim would be empty).
std::vector<StepSpan> step_spans(const Tokenizer& tok, const std::vector<int64_t>& tokens);

constexpr int kNumSignals = 4;
enum Signal : int { kLnlp = 0, kMte = 1, kTsar = 2, kClips = 3 };
// "lnlp", "mte", "tsar", "clips"
const char* signal_name(int signal);
// Index of a name; throws mmb::Error listing the names.
int signal_index(const std::string& name);
inline bool is_uncertainty(int signal) { return signal != kClips; }

using StepSignals = std::array<double, kNumSignals>;  // raw values, indexed by Signal

// The formulas above on one step's values. Each throws mmb::Error on an empty step (and
// token_sar on sizes that differ).
double lnlp_uncertainty(const std::vector<double>& logprobs);
double mean_token_entropy(const std::vector<double>& entropies);
double token_sar(const std::vector<double>& logprobs, const std::vector<double>& relevance);

// Signals of every step of one response, from its per-token log-probs and entropies (the
// model's own distribution: a generation's, or Vlm::score's teacher-forced pass) and the CLIP:
// all leave-one-out variants of all steps go through the text tower in one forward, and every
// step is scored against the image in one more. `pixel_values` (1, 3, H, W) as the CLIP's input;
// undefined gives clips = 0. Sizes of tokens, logprobs and entropies must match.
struct ResponseSignals {
  std::vector<StepSpan> steps;
  std::vector<StepSignals> signals;  // one per step
};
ResponseSignals response_signals(const Tokenizer& tok, ClipScorer& clip, const torch::Tensor& pixel_values,
                                 const std::vector<int64_t>& tokens, const std::vector<float>& logprobs,
                                 const std::vector<float>& entropies);

// ---- normalisation, fusion, levels (confidence.json) ---------------------------------------------

struct ConfidenceEstimator {
  StepSignals lo{}, hi{};                // min and max of each raw signal over the reference set
  std::array<bool, kNumSignals> use{{true, true, true, true}};
  std::string fusion = "mean";           // "mean" | "max" | "logistic"
  StepSignals coef{};                    // logistic: a_i (on the normalised confidences)
  double intercept = 0;                  // logistic: b
  double mu = 0, sigma = 0;              // of the fused score over the reference set
  int64_t reference_steps = 0;

  // Each signal as a confidence in [0, 1] (uncertainties flipped).
  StepSignals normalised(const StepSignals& raw) const;
  double fuse(const StepSignals& raw) const;
  int level(double fused) const;  // 1..5
  std::array<double, 4> cuts() const;  // μ − 1.5σ, μ − 0.5σ, μ + 0.5σ, μ + 1.5σ

  Json to_json() const;  // docs/boundary.md, "confidence.json"
  // Throws mmb::Error naming `where` and the key on a missing or mistyped key.
  static ConfidenceEstimator from_json(const Json& j, const std::string& where);
  static ConfidenceEstimator load(const std::string& path);
  void save(const std::string& path) const;  // atomic
};

struct ConfidenceFitOptions {
  std::string fusion = "mean";
  std::array<bool, kNumSignals> use{{true, true, true, true}};
  double l2 = 1e-3;          // logistic: ridge penalty on the coefficients (not the intercept)
  int max_iterations = 100;  // logistic: Newton steps (stops earlier at convergence)
};
// Fits the estimator on reference steps; `correct` (step truth) is needed by "logistic" only
// (may be empty otherwise). Throws on no steps, sizes that differ, no used signal, or an
// unknown fusion.
ConfidenceEstimator fit_confidence(const std::vector<StepSignals>& reference, const std::vector<bool>& correct,
                                   const ConfidenceFitOptions& options = {});

}  // namespace mmb
