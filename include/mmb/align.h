// `mmb align`: rounds of self-rewarded alignment in one command — CSR's loop (sample, reward,
// pair, DPO, repeat), run with any of mmb's preference builders (docs/prefs.md#mmb-align).
//
// Round r (1 … rounds) starts from the previous round's model (round 1 from `model_dir`):
//   <out>/round<r>_pairs   the method's builders answer `limit` training prompts (drawn with seed + r)
//                          with the round's start model: pairs.jsonl (all builders' pairs),
//                          <builder>.jsonl, report.json (each builder's report), stats.json (pair
//                          quality, preference_pair_stats)
//   <out>/round<r>_dpo     `mmb train dpo` on pairs.jsonl with the round's start model as policy
//                          and reference (model/); the method "online" trains online DPO here and
//                          has no pairs phase
//   <out>/round<r>_eval    `mmb eval` of the round's model (results.json, samples.jsonl)
//   <out>/round0_eval      the start model's evaluation (eval_start)
//   <out>/align.json       per round: pair counts and quality, builder and DPO seconds, headline
//                          metrics (also returned)
// Every phase is resumable and fingerprinted (phase.h): its settings and the phase it starts
// from, so a changed setting re-runs that phase and every phase after it, and says so; a killed
// DPO phase resumes from its checkpoints.
//
// Methods register in one table (align_methods()); "a+b" trains on the union of the builders'
// pairs of a and b (online cannot be combined).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mmb/csr.h"
#include "mmb/dpo.h"
#include "mmb/eval.h"
#include "mmb/json.h"
#include "mmb/pair_builders.h"

namespace mmb {

class RunDir;

struct AlignOptions {
  std::string model_dir;  // round 1's start (policy and reference)
  std::string clip_dir;   // CLIP of CSR's image reward, BDHS's similarity, online DPO's clip/mix judges
  std::string world_dir;  // a world: training prompts, the verifier, the test split
  std::string out;
  std::string method = "corrected";  // a name of align_methods(), or several joined by '+'
  int64_t rounds = 1;
  int64_t limit = 1000;  // training prompts each builder answers per round
  uint64_t seed = 1234;
  // Builder settings; model, world, split, limit, seed and output are set per round.
  CsrOptions csr;
  CorrectedBuildOptions corrected;
  BpoBuildOptions bpo;
  BdhsBuildOptions bdhs;
  // DPO settings; model, reference, data, image root, output and seed are set per round (seed + r).
  DpoRunOptions dpo;
  // Evaluation of every round's model (default: POPE, CHAIR, MC and reasoning on the whole test split).
  EvalOptions eval;
  bool eval_start = true;  // evaluate the start model as round 0
  bool progress = true;
};

// One method of the table: how a round builds its pairs (or, when online, that DPO samples them).
struct AlignMethod {
  std::string name;
  std::string help;
  bool online = false;  // trains online DPO; no builder
  // Builds the round's pairs into `pairs` with `model_dir` as the policy; seed is per round.
  using Build = std::function<PairBuildReport(const AlignOptions&, const std::string& model_dir,
                                              const std::string& pairs, uint64_t seed)>;
  Build build;
};
const std::vector<AlignMethod>& align_methods();

// The methods named by `method` ("corrected", "corrected+csr"), in order. Throws mmb::Error naming
// an unknown one (with the known names), a repeated one, or online combined with another.
std::vector<const AlignMethod*> parse_align_method(const std::string& method);

// The eval defaults of the alignment table: pope, chair, mc and reasoning on the whole test split,
// uncalibrated (temperature 1).
EvalOptions default_align_eval();

// Runs (or resumes) every round; returns align.json's content:
// {"method", "rounds": [{"round", "model", "pairs": {...builder reports, "stats"}, "seconds",
//  "eval": headline}], "start": {"model", "eval": headline}}.
// Throws mmb::Error on bad options, naming the option.
Json run_align(const AlignOptions& options, RunDir* run);

// The headline numbers of an eval result (POPE accuracy per category, CHAIR_s, CHAIR_i, object
// recall, verifiable share, repeating share, MC accuracy and ECE, reasoning step and answer
// accuracy): the per-round table of align.json and the report.
Json align_headline(const Json& eval_results);

}  // namespace mmb
