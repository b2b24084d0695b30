// Preference builders beyond CSR, and the edits of a response they are made of, all written
// through the world's description grammar (world_tasks.h), so a change of the grammar flows to
// them (docs/prefs.md):
//   corrected  the policy's own answer (rejected) against the same answer with each false sentence
//              rewritten to the nearest true one (chosen): same sentence count, every rewritten
//              sentence true, the others byte for byte unchanged.
//   bpo        BPO: the data's ground-truth description (chosen) against the policy's answer on the
//              diffusion-noised image (negative 1) and against the ground truth with one injected
//              error (negative 2).
//   bdhs       the alignment study's BDHS: the ground truth (chosen) against the policy's
//              rewrite of it sentence by sentence with its attention to the image mostly masked.
// Every pair carries the verifier's judgement of both sides (prefs.h) and its "source".
#pragma once
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "mmb/json.h"
#include "mmb/prefs.h"
#include "mmb/verifier.h"
#include "mmb/world_tasks.h"

namespace mmb {

// ---- edits of a response in the world's grammar ---------------------------------------------

struct SentenceEdit {
  int64_t sentence = -1;  // index among the response's sentences (split_sentences); for an
                          // inserted sentence, the index it takes in the edited response
  std::string before;     // "" for an inserted sentence
  std::string after;      // "" for a deleted sentence
  std::string kind;       // correct | add_object | delete | color | shape | size | position | count
};

struct EditedResponse {
  std::string text;                // the edited response
  std::vector<SentenceEdit> edits;  // in sentence order
  Json edits_json() const;         // [{"sentence", "kind", "before", "after"}]
};

// The true sentences of the scene's grammar: every visible object in every style, the object
// count in both forms, the count of each shape (zero included) and the occluder's sentences.
std::vector<std::string> true_grammar_sentences(const world::Scene& scene);

// A true grammar sentence about a visible object that `text` does not yet mention: among the
// object sentences whose verdict raises the text's mention_recall and whose first three words are
// `like`'s, the one closest to `like` by word edit distance: it keeps the form of the sentence it
// stands in for, so a pair of the two differs in what it names, never in "There is a" against
// "There are two" (a count sentence has no stand-in). "" when every visible object is mentioned
// or no such sentence has that opening. Online DPO's loop pairs set it against a repeated sentence.
std::string unmentioned_object_sentence(const world::Verifier& verifier, const world::Scene& scene,
                                        const std::string& text, const std::string& like);

// Each false sentence of `text` (by the verifier) rewritten to the true grammar sentence closest
// to it by word edit distance (lower-cased words, punctuation ignored). A candidate about an
// object that a true sentence of the response already names costs one word more (so a
// correction adds information rather than repeating it), and a candidate already in the response
// is never used. Unverifiable and true sentences, and the bytes between sentences, are unchanged.
// With only_hallucinated, only the false sentences that name a kind the scene does not have
// (CHAIR's hallucinations) are rewritten; wrong attributes of present objects stay.
EditedResponse correct_response(const world::Verifier& verifier, const world::Scene& scene, const std::string& text,
                                bool only_hallucinated = false);

// The kinds inject_error knows, in its default order of preference (none = draw uniformly).
const std::vector<std::string>& injected_error_kinds();

// BPO's error injection on a response whose sentences are the scene's grammar sentences (a
// ground-truth description): one plausible error of `kind` ("" = a kind drawn uniformly among
// those the response allows):
//   add_object  a sentence stating an absent shape, drawn by its co-occurrence with the present
//               shapes (stats.cooccur[present][absent], the training split's statistics), with a
//               colour, size and position of the scene's objects;
//   delete      one object sentence removed (an omission: judged by object recall, not by truth);
//   color | shape | size | position   one object sentence restated with that attribute changed;
//   count       the object count sentence with the count one off.
// Every sentence it writes is judged false by the verifier (a change that happens to be true of
// another object is redrawn). Returns false when `text` allows no such error.
bool inject_error(const world::Verifier& verifier, const world::Scene& scene, const std::string& text,
                  const world::ShapeStats& stats, std::mt19937_64& rng, EditedResponse& out,
                  const std::string& kind = "");

// ---- the builders ---------------------------------------------------------------------------

// `mmb prefs corrected`: for each drawn description prompt of a world split, the policy answers
// (greedy by default, `temperature` > 0 samples); an answer with at least one false sentence
// becomes a pair (chosen = correct_response of it, rejected = it); with fix = "hallucinated", an
// answer with a hallucinated kind, only those sentences rewritten. A wrong answer to a QA prompt
// is paired with the ground truth's answer. Dropped: answers with nothing to fix ("all_true"),
// corrections the verifier judge does not rank above the answer
// ("not_better"). "source": "corrected", "corrected": {"rewritten", "edits"}.
struct CorrectedBuildOptions {
  std::string model_dir;  // the policy
  std::string world_dir;
  std::string split = "train";
  // Prompts: description (descriptions), qa (the first turn of the QA conversations: a wrong
  // short answer is paired with the ground truth's) and pope:adversarial (POPE's yes/no questions
  // about absent shapes that co-occur with present ones, and about present ones; read_task_prompts).
  std::vector<std::string> tasks = {"description", "qa", "pope:adversarial"};
  int64_t limit = 1000;  // prompts, drawn with `seed` (-1: all)
  uint64_t seed = 1234;
  std::string out;                 // pairs.jsonl
  int64_t samples_per_prompt = 1;  // answers per prompt (each a candidate pair)
  double temperature = 0.0;        // 0 = greedy (the answers evaluation sees)
  double top_p = 1.0;
  int64_t max_new_tokens = 128;  // as `mmb eval`'s descriptions
  int64_t batch_size = 16;       // prompts per generation batch
  // hallucinated: the false sentences naming an absent kind (the default: it lowers CHAIR, see
  // docs/results/prefs.md) | false: every false sentence (SPEC §7's literal form)
  std::string fix = "hallucinated";
  double judge_error_weight = 1.0;
  PromptShard shard;  // the slice of the drawn prompts this process answers
  bool progress = true;
};
PairBuildReport build_corrected_pairs(const CorrectedBuildOptions& options);

// `mmb prefs bpo` (BPO, SPEC §5): chosen = the ground-truth description of the prompt's scene;
// negative 1 ("bpo_noise") = the policy's answer to the image noised at `noise_step` (t = 900):
// sampler "noised" samples from the noised image alone (the paper's intent, the default);
// "two_pass" decodes the clean and the noised image in lock-step with SecondContextProcessor,
// s = (1 + a)·l − a·l' with tokens below log(0.2) + max(l) cut (a = `alpha`; the released
// code's a = +1 is contrastive decoding, which removes the prior instead); temperature 0.2 as
// the paper. Negative 2 ("bpo_inject") = inject_error on the ground truth. A pair whose negative
// the verifier judge does not rank below the positive is dropped ("not_worse"), as is one with a
// response of more than `max_words` words ("too_long"). Short-answer prompts (tasks "qa" and
// "pope…", read_task_prompts) pair the reference answer with the noised image's answer when that
// is wrong (judge_answer), and with the opposite of a yes/no reference as the injected error (other
// short answers have none: "no_injection").
struct BpoBuildOptions {
  std::string model_dir;
  std::string world_dir;
  std::string split = "train";
  std::vector<std::string> tasks = {"description"};
  int64_t limit = 1000;
  uint64_t seed = 1234;
  std::string out;
  int64_t noise_step = 900;
  std::string sampler = "noised";  // noised | two_pass
  double alpha = 1.0;              // a of the two-pass sampler
  double temperature = 0.2;        // sampling of negative 1
  double top_p = 1.0;
  int64_t max_new_tokens = 128;
  int64_t batch_size = 16;
  bool noise_negative = true;   // write negative 1
  bool inject_negative = true;  // write negative 2
  // Negative 2's writer: "rules" (inject_error, the co-occurrence rules) | "lm" (the paper's LM
  // rewrite, with the policy's own language model: one sentence of the description, drawn
  // uniformly, is cut after k of its words, k uniform in 0 … words − 1, and the policy continues
  // it to the sentence end at `temperature` with every image key hidden, so its language prior
  // writes the rest; the other sentences are kept. A short answer is the policy's answer with the
  // image hidden.)
  std::string inject_mode = "rules";
  std::string inject_kind;  // "" = drawn per pair (injected_error_kinds; rules only)
  int64_t max_words = 350;
  // Negative 1 of a description keeps at most as many sentences as the positive ("sentences_cut"
  // counts the rest): the noised image's answers run longer than the ground truth, and a pair
  // whose rejected is longer teaches saying less.
  bool match_sentences = false;
  double judge_error_weight = 1.0;
  PromptShard shard;  // the slice of the drawn prompts this process answers
  bool progress = true;
};
PairBuildReport build_bpo_pairs(const BpoBuildOptions& options);

// `mmb prefs bdhs` (BDHS, SPEC §4.2): chosen = the ground truth y+ of a drawn prompt (the world's
// descriptions and the first turn of its QA conversations); rejected = y+ rewritten by the policy
// with its attention to the image hidden: each image key kept only when u >= keep_threshold,
// u ~ U(0, 1) (0.99: about 1% visible), the image optionally noised at noise_step (BDHS_noise:
// t = 500). In each sentence of y+ a leading yes/no is swapped with probability swap_prob and the
// sentence is cut after a uniformly drawn number of its words (0 … words − 1); the masked model
// continues from the ground-truth prefix (the earlier sentences and the cut sentence's head) to
// the sentence end; y− joins the rewritten sentences. When sim(y−, y+) >= similarity (0.97;
// ClipScorer::similarity, mean-pooled CLIP text states) it is drawn again with a new mask, at
// most max_tries times, the last a free generation under the mask; a short answer whose yes/no was
// swapped is kept whatever its similarity (the text tower scores "Yes." and "No." as near-identical,
// and the swap changes the meaning by construction). Dropped: negatives still too
// similar after the last try ("similar"), negatives the verifier judge does not rank below y+
// ("not_worse"; a QA negative is worse when its answer is wrong or missing).
struct BdhsBuildOptions {
  std::string model_dir;
  std::string clip_dir;  // the CLIP whose text tower measures similarity
  std::string world_dir;
  std::string split = "train";
  std::vector<std::string> tasks = {"description", "qa"};
  int64_t limit = 1000;
  uint64_t seed = 1234;
  std::string out;
  double keep_threshold = 0.99;  // ρ_th
  int64_t noise_step = -1;       // -1: no noise; 500: BDHS_noise
  double swap_prob = 0.5;
  double similarity = 0.97;
  int64_t max_tries = 5;
  double temperature = 0.0;  // the masked continuation (0 = greedy: the prior's most likely words)
  double top_p = 1.0;
  int64_t max_sentence_tokens = 70;
  int64_t max_new_tokens = 128;  // the last try's free generation
  int64_t batch_size = 16;       // prompts per batch (each sentence a row)
  double judge_error_weight = 1.0;
  PromptShard shard;  // the slice of the drawn prompts this process answers
  bool progress = true;
};
PairBuildReport build_bdhs_pairs(const BdhsBuildOptions& options);

// BDHS's rewrite start of one ground-truth sentence: a leading yes/no swapped with probability
// swap_prob, then the sentence's first k words, k uniform in [0, words − 1] (at least the swapped
// word). A lone yes/no that was swapped is the whole rewritten sentence (complete).
struct BdhsHead {
  std::string text;
  bool complete = false;
  bool swapped = false;
};
BdhsHead bdhs_sentence_head(const std::string& sentence, double swap_prob, std::mt19937_64& rng);

// "No" for a leading "Yes" and the other way round (any case; the first letter's case kept), with
// what follows the word kept ("Yes, there is." -> "No, there is."); "" when the text does not
// start with the word yes or no. BDHS's swap and BPO's injected short-answer error.
std::string opposite_yes_no(const std::string& answer);

// BDHS's image-key mask for `in` (key_keep, model.h): every non-image position kept, each image
// position kept when its u ~ U(0, 1) from `generator` is >= keep_threshold. (B, T) bool.
torch::Tensor bdhs_key_keep(const torch::Tensor& input_ids, int64_t image_token_index, double keep_threshold,
                            at::Generator generator);

}  // namespace mmb
