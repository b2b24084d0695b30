// Confidence elicitation: how sure is the model of an answer?
//   (a) option letter of a multiple-choice question (the calibration study): greedy decoding, the first step
//       whose argmax is a letter A–E gives the prediction and its softmax probability;
//   (b) yes/no probability p(yes) / (p(yes) + p(no)) from the first answer token's logits;
//   (c) sequence confidence exp(mean token log-prob) (length-normalised likelihood);
//   (d) verbalised confidence parsed from text ("80%", "0.8", "with total certainty").
// Letters, "yes" and "no" are found as tokens of the loaded tokenizer, in both forms a
// SentencePiece vocabulary may hold them: with the word-start marker ("▁A", "▁Yes": an answer's
// first word) and without ("A" after a primed "(").
#pragma once
#include <array>
#include <string>
#include <string_view>
#include <vector>

#include <torch/torch.h>

#include "mmb/calibration.h"
#include "mmb/tokenizer.h"
#include "mmb/vlm.h"

namespace mmb {

// ---- (a) option letters ------------------------------------------------------------------------

constexpr int kMaxOptions = 5;  // A..E

// Token ids that spell each letter: per letter, the pieces "A" and "▁A" that exist. Throws
// mmb::Error naming the letter when the vocabulary has neither.
struct LetterTokens {
  std::array<std::vector<int64_t>, kMaxOptions> ids;
  int letter_of(int64_t id) const;  // 0..4, or -1
};
LetterTokens letter_tokens(const Tokenizer& tok);

struct LetterOptions {
  // Text the assistant's answer starts with (the calibration study ends the prompt with "Answer: ("); it is
  // encoded as the start of the response, so "(" becomes "▁(" like a generated one. "" = none.
  std::string response_prefix = "(";
  int max_steps = 20;        // greedy steps searched for a letter (the calibration study: 20)
  bool keep_logits = false;  // keep the answer step's full logits (for temperature scaling)
  double temperature = 1.0;  // confidence = softmax(logits / temperature) (mmb/calibration.h);
                             // the argmax, hence the answer, does not depend on it
};

struct LetterAnswer {
  int letter = -1;            // 0..4 (A..E); -1 = no letter within max_steps (the calibration study skips it)
  double confidence = 0;      // softmax probability of the argmax letter token, full vocabulary,
                              // at LetterOptions::temperature
  double raw_confidence = 0;  // the same at temperature 1 (uncalibrated)
  int step = -1;              // 0-based generation step where the letter appeared
  std::array<double, kMaxOptions> letter_probs{};  // p of each letter (its forms summed) at that
                                                   // step, renormalised over the 5 letters
  torch::Tensor logits;       // (V,) float on CPU: that step's logits, when keep_logits
};

// The calibration study's prompt: question, options "A. ...", then "Please provide the option letter directly."
std::string calibration_study_mc_prompt(const std::string& question, const std::vector<std::string>& options);

// Answers a batch of multiple-choice prompts (user texts, already containing the options) by the
// calibration study's letter method. images[i] may be null only if all are (as Vlm::encode_prompts).
std::vector<LetterAnswer> letter_answers(Vlm& vlm, const std::vector<std::string>& prompts,
                                         const std::vector<const Image*>& images,
                                         const LetterOptions& options = {});

// ---- (b) yes / no --------------------------------------------------------------------------------

// First tokens of an answer that says yes / no: the first token of encode(w) for w in
// {"Yes", "yes", "YES", "No", "no", "NO"} plus the pieces themselves where they exist. A token
// that would count for both (e.g. a bare "▁") is dropped from both; throws if a side is left empty.
struct YesNoTokens {
  std::vector<int64_t> yes, no;
};
YesNoTokens yes_no_tokens(const Tokenizer& tok);

// p(yes) / (p(yes) + p(no)) per row of next-token logits (B, V): p(yes) sums the yes tokens'
// softmax probabilities of logits / temperature. In [0, 1]; 0.5 when both are 0 in floating point.
std::vector<double> yes_probability(const torch::Tensor& logits, const YesNoTokens& tokens,
                                    double temperature = 1.0);

// ---- (c) sequence ------------------------------------------------------------------------------

// exp(mean log-prob) of the tokens (the geometric mean of their probabilities). Throws on none.
double sequence_confidence(const std::vector<float>& logprobs);
// Mean of per-token entropies (nats). Throws on none.
double mean_entropy(const std::vector<float>& entropies);

// ---- the confidence of one generated answer (`mmb generate`) -----------------------------------

struct AnswerConfidence {
  std::string method;        // "yes_no" | "letter" | "sequence"
  double confidence = 0;     // in [0, 1], at `temperature`
  double temperature = 1.0;  // the calibration temperature used (1 for "sequence")
};

// How sure the model is of `generation`, an answer to (prompt, image): an answer whose first
// token says yes or no gets p(that side) (method b) from the first answer step's logits at
// temperatures.yes_no; one whose first token is an option letter gets that token's probability
// at temperatures.mc (method a); anything else the sequence confidence (c). Runs one prefill of
// the prompt for the first step's logits.
AnswerConfidence answer_confidence(Vlm& vlm, const std::string& prompt, const Image* image,
                                   const Generation& generation, const ConfidenceTemperatures& temperatures);

// ---- (d) verbalised ----------------------------------------------------------------------------

struct VerbalConfidence {
  bool found = false;
  double value = 0;      // probability in [0, 1]
  std::string matched;   // the text that gave it ("80%", "with total certainty")
  bool numeric = false;  // a number (else a phrase)
};

// Parses the confidence a text states. Numbers win over phrases: "80%", "80 percent",
// "8/10", "8 out of 10", a decimal in [0, 1] ("0.8"); the last number if several. Phrases
// (case-insensitive, whole words, the longest match) map to the five MMBoundary levels
// (0.9, 0.7, 0.5, 0.3, 0.1): "with total certainty" 0.9, "I believe this is right" 0.7,
// "can't be entirely sure" 0.5, "I'm not sure" 0.3, "it needs checking" 0.1, and common
// variants (docs/metrics.md lists them).
VerbalConfidence parse_verbal_confidence(std::string_view text);

// The phrase table: (phrase, probability), lower-case: every pool phrase and variant of
// ConfidencePhrases::builtin() (data/confidence_phrases.json).
const std::vector<std::pair<std::string, double>>& verbal_confidence_phrases();

// The claim of a step without its stated confidence: lower-case words (as the phrase parser
// splits them) with trailing confidence phrases removed. "There is one cube, but I'm not sure."
// and "There is one cube." both give "there is one cube". For exact step matching.
std::string claim_key(std::string_view sentence);

}  // namespace mmb
