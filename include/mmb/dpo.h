// The DPO family of preference losses, on sequence log-probabilities (TRL's names and forms).
//
// Per pair, with sequence log-probs (sums over response tokens) of the policy πθ and the frozen
// reference πref for the chosen y+ and rejected y−:
//   h = (log πθ(y+) − log πθ(y−)) − (log πref(y+) − log πref(y−))
//   sigmoid  −(1 − ε)·log σ(βh) − ε·log σ(−βh)          (DPO; ε > 0 is cDPO's label smoothing)
//   robust   (−(1 − ε)·log σ(βh) + ε·log σ(−βh)) / (1 − 2ε)   (robust DPO, unbiased under noise ε)
//   hinge    max(0, 1 − βh)                            (SLiC)
//   ipo      (h − 1/(2β))² with every log-prob divided by its response's token count (TRL's form)
//   ipo_sum  (h − 1/(2β))² on the summed log-probs (the IPO paper's form)
// Optional terms, added per pair:
//   rpo_alpha · NLL(y+), the chosen response's mean token negative log-likelihood (RPO)
//   anchor · −log σ(β(log πθ(y+) − log πref(y+)))   (mDPO's anchor: the chosen likelihood must not fall)
//   image_weight · −log σ(β[(log πθ(y+|m) − log πref(y+|m)) − (log πθ(y+|m') − log πref(y+|m'))])
//     (mDPO's image-conditional term: m' a corrupted image)
// Logged with TRL's names: rewards/chosen = β(log πθ(y+) − log πref(y+)), rewards/rejected,
// rewards/margins (their difference), rewards/accuracies (chosen reward > rejected reward),
// logps/chosen, logps/rejected (the policy's summed log-probs).
// Pure tensor functions: thread-safe, differentiable through the policy terms.
#pragma once
#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "mmb/train.h"

namespace mmb {

struct DpoLossOptions {
  std::string loss = "sigmoid";  // sigmoid | robust | hinge | ipo | ipo_sum
  double beta = 0.1;
  double label_smoothing = 0.0;  // ε of sigmoid (cDPO) and robust, in [0, 0.5)
  double rpo_alpha = 0.0;        // weight of the chosen NLL term (0 = off)
  double anchor = 0.0;           // weight of mDPO's anchor term (0 = off)
  double image_weight = 0.0;     // weight of mDPO's image-conditional term (0 = off)
};

// Throws mmb::Error naming the bad field (unknown loss, β <= 0, ε outside [0, 0.5), negative weights).
void check_dpo_options(const DpoLossOptions& options);

// Inputs, each (B,) float: summed response log-probs and response token counts.
struct DpoInputs {
  torch::Tensor policy_chosen, policy_rejected;  // with grad
  torch::Tensor ref_chosen, ref_rejected;        // constants
  torch::Tensor chosen_tokens, rejected_tokens;  // token counts (> 0), for ipo and the NLL term
  // mDPO's image-conditional term (when image_weight > 0): the chosen response on the corrupted image.
  torch::Tensor policy_chosen_corrupt, ref_chosen_corrupt;
};

struct DpoLossTerms {
  torch::Tensor loss;              // (B,) per-pair loss, all terms included
  torch::Tensor chosen_rewards;    // (B,) detached
  torch::Tensor rejected_rewards;  // (B,) detached
};

DpoLossTerms dpo_loss(const DpoInputs& in, const DpoLossOptions& options);

// ---- `mmb train dpo`: offline DPO on a preference file -------------------------------------

class RunDir;

struct DpoRunOptions {
  std::string model_dir;      // the policy's start (and the reference unless ref_model_dir)
  std::string ref_model_dir;  // the reference πref ("" = model_dir)
  std::string data;           // TRL preference JSONL (prefs.h)
  std::string image_root;     // image paths are relative to it and must stay under it
  std::string out;            // run directory: ref_logps.json, checkpoints/, model/
  std::string ref_cache;      // reference log-probs file ("" = <out>/ref_logps.json)
  bool skip_bad = false;      // skip malformed lines (counted) instead of failing
  DpoLossOptions loss;
  int64_t batch_size = 8;  // pairs per global batch (split across ranks)
  int64_t steps = 200;
  double lr = 5e-5;
  double weight_decay = 0.0;
  double warmup_ratio = 0.1;
  double grad_clip = 1.0;
  int64_t grad_accum = 1;
  int64_t checkpoint_every = 100;
  int64_t max_length = 512;        // tokens of prompt + response (image tokens included); longer
                                   // pairs are rejected and counted, unless truncate_response
  bool truncate_response = false;  // cut response ends to fit instead (image and prompt never cut)
  bool freeze_vision = true;       // the vision tower stays fixed (as the papers' DPO)
  int64_t ref_batch = 16;          // pairs per reference forward
  // mDPO's image-conditional term (loss.image_weight > 0): the chosen response is also scored on a
  // corrupted copy of the pair's image, m'. Every pair needs an image. The corruption of a pair is
  // a function of (seed, pair index) offline, so its reference log-probs are cached with the others;
  // online pairs draw theirs from (seed, step, slot).
  std::string image_corruption = "crop";  // crop (mDPO: a random crop keeping <= image_keep of the
                                          // area, resized back) | noise (diffusion noise at step image_noise_step)
  double image_keep = 0.2;
  int64_t image_noise_step = 500;
  // Held-out pairs (TRL's eval_dataset): every eval_every steps (0: at the end only) and at the
  // end, the policy's loss and TRL's metrics on them, logged as eval/<name>. Their reference
  // log-probs are computed once per run, in eval mode, from the reference.
  std::string eval_data;
  int64_t eval_every = 0;
  uint64_t seed = 1234;

  // Online DPO (online = true; `data` unused): every step, the policy samples
  // samples_per_prompt responses to each of the batch's prompts (the description prompts of the
  // world's `online_split`), the judge ranks them (below; the verifier by default), and the
  // step trains on best vs worst of each prompt; prompts whose responses all tie are dropped and
  // counted. The reference is the start model, kept in memory (no cache: responses are new).
  bool online = false;
  std::string world_dir;           // a world directory (mmb world generate --out)
  std::string online_split = "train";
  int64_t samples_per_prompt = 4;  // k >= 2
  double temperature = 1.0;        // sampling of the policy's responses
  double top_p = 1.0;
  int64_t max_new_tokens = 80;
  // The prompts' tasks: "description" (judged sentence by sentence), "qa" (the world's short
  // questions, judged right or wrong against the ground truth's answer), "reasoning", and "pope" /
  // "pope:<categories>" (the split's POPE yes/no questions, judged as short answers).
  std::vector<std::string> online_tasks = {"description"};
  double judge_error_weight = 1.0;  // ResponseJudgement::score: an error costs this many objects
  std::string judge_recall = "strict";  // the verifier's recall term: strict | mention
  double judge_false_weight = 1.0;      // a false sentence's share of an error (hallucinated mention = 1)
  // Length-matched pairs (verifier judge, descriptions and reasoning chains): > 0 takes the
  // rejected only among the samples whose token count is within this fraction of the chosen's
  // (0.25: ±25%), so the pairs carry no systematic length difference for DPO to learn; a prompt
  // with none is dropped and counted (length_unmatched_prompts). 0 = off.
  double length_tolerance = 0.0;
  // With length_tolerance: a reasoning chain that stops before its final answer may be the
  // rejected whatever its length (the length rule would hide exactly that failure: an unfinished
  // chain is shorter than a finished one).
  bool finish_chains = false;
  // QA prompts: drop a step's excess pairs whose chosen answer is "yes" (or "no") so both are
  // chosen equally often; without it the pairs follow the base's errors (a base that misses more
  // objects than it invents learns to say "yes"). Counted as qa_unbalanced_pairs.
  bool qa_balance = false;
  // One of each prompt's k samples is the policy's greedy answer (what `mmb eval` decodes), the
  // other k − 1 are sampled: a greedy loop or hallucination the samples at the temperature rarely
  // show is judged and, being worst, rejected.
  bool greedy_sample = false;
  // Description prompts: besides the judge's pair, a sample that repeats a sentence (the greedy
  // answer, with greedy_sample, looked at first; one a prompt) gives a pair whose rejected is
  // itself up to the end of the first repeat, and whose chosen is
  //   stop  the text cut before the repeat (the pair teaches stopping instead of looping);
  //   name  the true grammar sentence naming a visible object the text does not yet mention in the
  //         repeat's place (unmentioned_object_sentence; neither side's end token is trained, so
  //         the pair teaches naming the next object instead of looping); a sample with every
  //         object mentioned gives no pair;
  //   both  name where an object is unmentioned, stop where none is.
  std::string loop_pairs = "none";  // none | stop | name | both
  // The judge that ranks a prompt's samples, each by a score (higher wins; equal scores tie):
  //   verifier    ResponseJudgement::score(judge_error_weight, judge_recall, judge_false_weight),
  //               the world's exact truth; a chosen description must mention a visible object,
  //               and the rejected one is the worst of the samples that mention no more objects
  //               than the chosen (so no pair teaches that saying less is better)
  //   clip        the mean CLIPScore / 100 of the response's sentences against the image, with the
  //               CLIP of clip_dir (no truth needed: CSR's image reward)
  //   likelihood  exp(mean token log-prob) of the response under the policy that sampled it
  //   mix         the weighted sum of those scores, weights in judge_mix ("verifier=1,clip=0.5")
  // avg DPO ranks with the verifier only.
  std::string judge = "verifier";
  std::string judge_mix;
  std::string clip_dir;
  // How a step averages: "pairs" = the mean over its kept pairs (a step with one kept pair moves
  // the model as much as one with eight); "prompts" = their sum over the batch's prompts.
  std::string online_weight = "pairs";

  // Mixed DPO (the alignment study; online = true with `data`): each prompt slot of a step takes an
  // online pair (best vs worst of the policy's samples) with probability mix_online, else an
  // offline pair of `data` drawn uniformly. 1 = online only; the study uses 0.5.
  double mix_online = 1.0;
  // avg DPO (the alignment study; `data` without online, `world_dir` for the judge): per offline
  // pair (y+, y−) the policy samples samples_per_prompt responses to its prompt, the verifier judge
  // takes the worst ỹ−, and the loss is γ·L(y+, y−) + (1 − γ)·L(y+, ỹ−) with γ = avg_gamma
  // (1 = plain offline DPO; the study uses 0.5). Pairs need the world's "scene" field.
  double avg_gamma = 1.0;
};

// What the reference pass did (also in the run's manifest under "reference").
struct DpoReferenceInfo {
  bool cached = false;        // true: read from the cache, no reference forward
  int64_t forward_pairs = 0;  // pairs the reference was run on (0 when cached)
  std::string path;           // the cache file
  std::string fingerprint;    // its id
};

// Trains the policy with dpo_loss on every pair, logging TRL's metric names per step.
// Reference log-probs come from the cache when its fingerprint (reference weights, data,
// template, tokenizer, max length, truncation, IPO's normalisation inputs) matches; a cache made
// from other inputs is refused with the parts that changed. Resumes from <out>/checkpoints.
StepStats run_dpo(const DpoRunOptions& options, RunDir* run, DpoReferenceInfo* reference = nullptr);

}  // namespace mmb
