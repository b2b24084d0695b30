// CSR's sentence-level search (calibrated self-rewarding): the policy's own responses, grown one
// sentence at a time, rewarded by the model's likelihood and the image-text CLIPScore, and paired
// best path against worst path (SPEC.md §3; docs/prefs.md).
//
//   1. From each active node, group beam search (5 beams in 5 groups, Hamming diversity penalty
//      3.0) to the sentence end, at most 70 new tokens: each beam is a child. A child ending in
//      EOS is final. Child score = parent score + the child's mean token log-prob.
//   2. The children of every active node of a level are pooled; when the pool holds at least
//      `prune_at` (5) children, the `keep_top` (1) best and `keep_bottom` (2) worst by score stay
//      and the rest are dropped (the released code; the paper's top-k / bottom-k are the same
//      flags). Kept non-final children are the next level's active nodes; the search stops when
//      none is left or after `max_sentences` levels.
//   3. Rewards of a node (one sentence s): "score" mode (the paper) R = λ·R_I + (1 − λ)·R_T with
//      R_I = CLIPScore(image, s) / 100 = max(cos, 0) and R_T = exp(mean token log-prob of s), both
//      in [0, 1]; a path's value is the mean R over its nodes, higher is better. "rank" mode (the
//      released code): among siblings, rank_T by R_T and rank_I by R_I (0 = best), node value =
//      (1 − λ)·rank_T + λ·rank_I, path value the mean over its nodes, lower is better.
//   4. chosen = the leaf path of best value, rejected = the one of worst value (no pair when
//      they are the same text or either is empty).
//
// Every child continues from its parent's cached state (the KV cache is forked, never
// re-encoded); the nodes of a level are searched one after another.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mmb/clip_scorer.h"
#include "mmb/generate.h"
#include "mmb/image.h"
#include "mmb/model.h"
#include "mmb/prefs.h"
#include "mmb/tokenizer.h"
#include "mmb/vlm.h"

namespace mmb {

struct CsrOptions {
  int64_t num_beams = 5;
  int64_t num_groups = 5;
  double diversity_penalty = 3.0;
  int64_t max_sentence_tokens = 70;
  int64_t max_sentences = 8;  // levels of the tree
  int64_t keep_top = 1;
  int64_t keep_bottom = 2;
  int64_t prune_at = 5;          // prune a level's pool when it holds at least this many children
  double lambda = 0.9;           // weight of the image reward R_I
  std::string reward = "score";  // "score" | "rank"
};

struct CsrNode {
  int64_t parent = -1;  // index in CsrTree::nodes; -1 for a level-0 node (the root's child)
  int64_t level = 0;
  std::vector<int64_t> tokens;  // the sentence's tokens (EOS included when final)
  std::vector<float> logprobs;  // the model's log-prob of each token
  std::string text;             // decoded sentence (no EOS)
  double score = 0;             // search score: sum of mean token log-probs from the root
  double r_text = 0;            // exp(mean token log-prob), in (0, 1]
  double r_image = 0;           // CLIPScore / 100, in [0, 1]
  double value = 0;             // score mode: λ·r_image + (1 − λ)·r_text; rank mode: the rank mix
  bool final = false;           // ended with EOS
  bool kept = false;            // survived its level's pruning
};

struct CsrTree {
  std::vector<CsrNode> nodes;
  std::vector<int64_t> leaves;         // kept nodes that end a path (final, or at the last level)
  int64_t chosen = -1, rejected = -1;  // leaves; -1 when there is no pair
  int64_t generated_tokens = 0;        // tokens produced by the beam searches
};

// Indices of the nodes from level 0 down to `leaf`.
std::vector<int64_t> csr_path(const CsrTree& tree, int64_t leaf);
// The path's sentences joined by single spaces.
std::string csr_path_text(const CsrTree& tree, int64_t leaf);
// The path's value under options.reward (mean of its nodes' values).
double csr_path_value(const CsrTree& tree, int64_t leaf);

// The search for one prompt and image. Throws mmb::Error on bad options.
CsrTree csr_search(Vlm& vlm, ClipScorer& clip, const std::string& prompt, const Image& image,
                   const CsrOptions& options);

void validate(const CsrOptions& options);

}  // namespace mmb

namespace mmb {

// `mmb prefs csr`: CSR pairs for a world split's description prompts (with the verifier's
// judgement of chosen and rejected written beside them) or for any LLaVA-format JSON of images and
// prompts (no judgement). TRL preference JSONL out (prefs.h), "source": "csr".
struct CsrBuildOptions {
  std::string model_dir;  // the policy (its tokenizer and chat template)
  std::string clip_dir;   // the CLIP whose CLIPScore is R_I
  std::string world_dir;  // a world: its split's description prompts and scenes
  std::string split = "train";
  std::string data, image_root;  // or: LLaVA JSON records (image + first human turn)
  int64_t limit = 100;           // prompts, drawn with `seed` (-1: all)
  uint64_t seed = 1234;
  std::string out;  // pairs.jsonl
  CsrOptions search;
  PromptShard shard;  // the slice of the drawn prompts this process answers
  bool progress = true;
};
// Dropped: "no_pair" (a tree whose best and worst paths are the same text).
PairBuildReport build_csr_pairs(const CsrBuildOptions& options);

}  // namespace mmb
