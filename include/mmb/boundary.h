// MMBoundary on a world (`mmb boundary …`; docs/boundary.md): the model answers a split's
// reasoning questions and description prompts, each answer is split into steps, every step gets
// its four signals (mmb/confidence.h) and the verifier's truth; from these the estimator is fitted,
// the signals are scored by AUROC, and the SFT warm-up data [z1 c1 … zT cT] is written.
//
// A step is correct when the verifier finds it true; an unverifiable step counts as incorrect
// (as `mmb eval`'s step accuracy: vague text earns nothing).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mmb/confidence.h"
#include "mmb/json.h"
#include "mmb/verifier.h"
#include "mmb/world.h"

namespace mmb {

struct BoundaryAnswerOptions {
  std::string model_dir;  // the VLM that answers (and whose log-probs and entropies are the signals)
  std::string clip_dir;   // the CLIP of TokenSAR's similarity and of CLIPScore
  std::string world_dir;
  std::string split = "test";
  std::vector<std::string> tasks{"reasoning", "description"};
  int64_t limit = -1;            // questions per task, the first of the split (-1: all)
  int64_t batch_size = 16;       // prompts per generation batch
  int64_t max_new_tokens = 96;
  std::string prompt_suffix;     // appended to every question after a space (e.g. a request to
                                 // state confidence); "" = the plain question
  bool progress = true;
};

struct BoundaryStep {
  std::string text;
  world::Truth truth = world::Truth::kUnverifiable;
  StepSignals signals{};
  bool correct() const { return truth == world::Truth::kTrue; }
};

struct BoundaryAnswer {
  std::string id, task;          // question id; "reasoning" | "description"
  std::string question, image;   // image relative to the world directory
  std::string canonical;         // reasoning: the expected answer ("" for descriptions)
  std::string answer;            // the model's greedy answer
  bool answer_correct = false;   // reasoning: the final answer is right
  std::vector<BoundaryStep> steps;
};

// A question of a world split: reasoning.jsonl's (with its canonical answer) or a description
// prompt of llava.json. The first `limit` of each task (-1: all). Throws on a missing file, an
// unknown task or a task without questions.
struct BoundaryQuestion {
  std::string id, task, question, image, canonical;
  int64_t reference_steps = 0;  // reasoning: steps of the reference chain (perception, reasoning, final)
};
std::vector<BoundaryQuestion> read_boundary_questions(const std::string& world_dir, const std::string& split,
                                                      const std::vector<std::string>& tasks, int64_t limit);

// The world's truth for MMBoundary: the scenes of a world and a verifier that strips stated
// confidence (every phrase of ConfidencePhrases::builtin()). Shared by the step collection and
// the RL rewards. Throws mmb::Error on a missing scenes.jsonl, or on an image with no scene.
class BoundaryJudge {
 public:
  explicit BoundaryJudge(const std::string& world_dir);
  // Truth of one step about the scene of `image` ("images/<id>.png"); an empty sentence is
  // unverifiable. `canonical` lets answer sentences be judged (as Verifier::verify).
  world::Truth step_truth(const std::string& image, const std::string& step, const std::string& canonical) const;
  const world::Verifier& verifier() const { return verifier_; }

 private:
  std::vector<world::Scene> scenes_;
  std::map<std::string, const world::Scene*> scene_of_;
  world::Verifier verifier_;
};

// Generates, splits, scores and verifies. Throws mmb::Error on a missing file or unknown task.
std::vector<BoundaryAnswer> collect_boundary_answers(const BoundaryAnswerOptions& options);

// One JSON line per step: {"id", "task", "step", "text", "truth", "correct", "lnlp", "mte",
// "tsar", "clips"} (+ "fused", "level" when an estimator is given).
void write_boundary_steps(const std::string& path, const std::vector<BoundaryAnswer>& answers,
                          const ConfidenceEstimator* estimator = nullptr);
// Reads such a file (any extra keys ignored). Throws naming file:line on a bad line.
struct StepTable {
  std::vector<StepSignals> signals;
  std::vector<bool> correct;
  std::vector<std::string> task;
};
StepTable read_boundary_steps(const std::string& path);

// AUROC of each signal (as a confidence: uncertainties negated) for step correctness, per task
// and over all steps, and of the estimator's fused score when given:
// {"steps", "accuracy", "auroc": {"lnlp", "mte", "tsar", "clips", "fused"}, "by_task": {...}};
// with an estimator also "level_ece": the ECE (10 equal-width bins) of the internal level's
// probability (0.1 … 0.9) against step truth, the MECE of a model that states its level exactly.
Json signal_report(const StepTable& table, const ConfidenceEstimator* estimator = nullptr);

// The SFT warm-up data (SPEC.md §1.4) as a LLaVA JSON array: per answer one record whose response
// is the answer's steps, each followed by a phrase of its level drawn from `phrases` with `seed`
// (attach_phrase); "task": "boundary". Answers without steps are skipped. Returns the records.
Json boundary_sft_records(const std::vector<BoundaryAnswer>& answers, const ConfidenceEstimator& estimator,
                          const ConfidencePhrases& phrases, uint64_t seed);

// ---- MMBoundary's RL reward (SPEC.md §1.5) -----------------------------------------------------
//   R = α·R_KA + β·R_EC + γ·R_CS (+ δ·R_IDK, beyond the paper)
//   R_KA = Σ_t a_t / max(T, T_ref) ("reference", our default: the paper matches steps to a reference
//   chain of T_ref steps, so a response that skips steps loses credit; without it a policy learns
//   to say one easy step) or mean_t a_t ("steps", the literal formula);  R_EC = 1 − mean_t |conf(c_t) − a_t| ("absolute", the paper) or
//   1 − mean_t (conf(c_t) − a_t)² ("brier", a proper scoring rule);  R_CS = 1 − mean_t |conf(c_t) − conf(ĉ_t)|.
// A step that states no confidence counts as error 1 in R_EC and R_CS (our choice: a policy
// cannot earn calibration by going silent). A response without steps earns 0 in all three.
// R_IDK (our addition, BAPO's idea): an answer of "I don't know" earns +1 where abstaining is
// right (the question is unanswerable, or none of the group's answers is correct) and −1 where
// the answer was knowable; other answers earn 0.
struct BoundaryRewardOptions {
  double alpha = 1.0 / 3, beta = 1.0 / 3, gamma = 1.0 / 3;
  std::string ka_form = "reference";  // "reference" | "steps"
  std::string ec_form = "absolute";   // "absolute" | "brier"
  double delta = 0;                  // weight of R_IDK (0 = the paper's reward)
};
struct StepOutcome {
  bool correct = false;   // a_t
  double stated = -1;     // conf(c_t) in [0, 1]; < 0 when the step states none
  double internal = 0.5;  // conf(ĉ_t): the confidence of the level the signals give
};
struct BoundaryReward {
  double knowledge = 0, calibration = 0, self = 0, idk = 0, total = 0;
};
// `reference_steps` is T_ref (0: none known, R_KA falls back to the mean over the response's steps).
// Throws mmb::Error on an unknown ka_form or ec_form.
BoundaryReward boundary_reward(const std::vector<StepOutcome>& steps, const BoundaryRewardOptions& options,
                               bool abstained = false, bool abstaining_is_right = false, int64_t reference_steps = 0);

}  // namespace mmb
