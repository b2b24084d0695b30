// Iterative prompt optimisation (the calibration study): start from a few prompt suffixes,
// paraphrase every kept prompt, score each candidate on a training split by the accuracy and ECE
// of the letter method (multiple choice), keep the best k, repeat.
//
//   round 0: score the start prompts; keep the top k
//   round r = 1..n: every kept prompt gets m paraphrases; pool = kept ∪ new ones (duplicates
//   dropped, a prompt scored once); sort by (floor(acc / bucket) descending, ECE ascending, then
//   accuracy descending and first-seen order for ties); keep the top k
//   result: the best prompt, measured again on a held-out split next to the start prompts
//
// A prompt suffix is appended, after a space, to the multiple-choice user text (question,
// options, "Please provide the option letter directly."); the assistant's answer stays primed
// with "(" as in the study. The paraphraser is pluggable: the calibration study used an external LLM; mmb has a
// rule-based paraphraser for the world and one that asks the model's own language model.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mmb/json.h"
#include "mmb/vlm.h"

namespace mmb {

class Paraphraser {
 public:
  virtual ~Paraphraser() = default;
  // Up to `count` paraphrases of `prompt`, all different from it and from each other.
  // Deterministic for a given seed.
  virtual std::vector<std::string> paraphrase(const std::string& prompt, int count, uint64_t seed) = 0;
  virtual std::string name() const = 0;
};

// Rule-based: synonym substitutions ("might" -> "may" / "could", "answer" -> "response", ...),
// optional lead-ins ("I think", "Perhaps") and hedges, drawn at random; rules in
// src/eval/prompt_search.cpp. Needs no model.
std::unique_ptr<Paraphraser> make_template_paraphraser();

// The VLM's own language model, text only: it is asked to rephrase the prompt and sampled
// (temperature 1, top-p 0.9); the first sentence of each sample is a candidate, empty or
// repeated ones dropped. `vlm` must outlive the paraphraser.
std::unique_ptr<Paraphraser> make_model_paraphraser(Vlm& vlm, int64_t max_new_tokens = 24);

struct PromptSearchOptions {
  std::vector<std::string> start_prompts = {"The answer might be", "The answer must be"};
  int rounds = 10;          // n
  int paraphrases = 5;      // m per kept prompt per round
  int keep = 5;             // k
  double accuracy_bucket = 0.2;  // sort key floor(acc / bucket)
  std::string train_split = "train";  // where candidates are scored
  std::string test_split = "test";    // where the best prompt and the start prompts are measured at the end
  int64_t train_limit = 100;  // multiple-choice questions scoring each candidate
  int64_t test_limit = 300;
  std::string mc_style = "calibration-study";  // as EvalOptions::mc_style
  int num_bins = 10;
  int64_t batch_size = 32;
  uint64_t seed = 1234;
  bool progress = true;
};

// Runs the search. Returns {"best": {"prompt", "accuracy", "ece", "round"}, "rounds": [[{"prompt",
// "accuracy", "ece", "round", "parent", "kept"}...] per round], "candidates_scored",
// "paraphraser", "test": {"best": {...}, "start_prompts": [{...}], "none": {...}} (the held-out split;
// "none" = no suffix)}. Throws mmb::Error on no start prompts, k or m < 1, rounds < 0.
Json prompt_search(Vlm& vlm, const std::string& world_dir, Paraphraser& paraphraser,
                   const PromptSearchOptions& options = {});

}  // namespace mmb
