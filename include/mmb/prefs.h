// Preference pairs: TRL's preference format as JSON Lines, the one file format every preference
// builder writes and `mmb train dpo` reads.
//
// One object per line:
//   {"prompt": P, "chosen": C, "rejected": R, "images": ["img/x.png"], ...extra fields}
// P is a string (the user's question) or a conversational list of {"role", "content"} messages
// ending with a user message (earlier user/assistant turns allowed, a leading "system" message
// ignored: the model's chat template has its own). C and R are strings or lists holding one
// assistant message. A content is a string or TRL's list of parts ({"type": "text", "text"} and
// {"type": "image"}). "<image>" markers are removed; "images" has at most one path (relative to
// the image root), absent or empty for a text-only pair. Every other field ("source", verifier
// counts, ids) is kept in PreferencePair::extra and written back unchanged.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mmb/chat_template.h"
#include "mmb/json.h"
#include "mmb/verifier.h"

namespace mmb {

struct PreferencePair {
  std::vector<ChatTurn> prompt;  // the conversation up to the last question (its answer empty)
  std::string chosen;            // preferred response
  std::string rejected;          // dispreferred response
  std::string image;             // path relative to the image root; "" = text only
  Json extra = Json::object();   // every other field of the line
  std::string where;             // "file:line", for errors
};

struct PairFileReport {
  int64_t lines = 0;                          // non-blank lines read
  int64_t pairs = 0;                          // pairs returned
  int64_t skipped = 0;                        // malformed lines skipped (skip_bad)
  std::vector<std::string> skipped_examples;  // up to 5 "file:line: reason"
  std::map<std::string, int64_t> sources;     // pairs per "source" field ("" when absent)
  Json to_json() const;
};

// Parses one line's object. Throws mmb::Error naming `where` and what is wrong (missing key,
// wrong type, empty response, identical chosen and rejected, more than one image, no user turn).
PreferencePair parse_preference_pair(const Json& line, const std::string& where);

// Reads a whole file. A malformed line (bad JSON or a bad pair) throws mmb::Error naming
// file:line, unless skip_bad: then it is skipped and counted in `report`. Throws when the file
// has no pair at all.
std::vector<PreferencePair> read_preference_pairs(const std::string& path, bool skip_bad = false,
                                                  PairFileReport* report = nullptr);

// The line of a pair: conversational prompt when it has earlier turns, else a plain string;
// extra fields merged back. read(write(p)) == p.
Json preference_pair_to_json(const PreferencePair& pair);
// Writes pairs atomically as JSONL.
void write_preference_pairs(const std::string& path, const std::vector<PreferencePair>& pairs);

// A relative path that cannot leave its root (no absolute path, no ".." component); throws
// mmb::Error "<who>: <where>: ..." otherwise.
void check_under_root(const std::string& path, const std::string& where, const char* who);

// A world split's prompts with their scenes: its llava.json records of task "description" (the
// prompts online DPO and the builders answer), the first turn of its "qa" records (a short
// question: presence, colour, shape, size, position, count, relation), its "reasoning" records,
// or "pope" / "pope:<categories>" (comma-separated random, popular, adversarial): the split's
// pope.jsonl questions, as short-answer prompts (task "qa") whose reference is "Yes." or "No.".
struct DescriptionPrompt {
  std::string question;  // without "<image>"
  std::string image;     // relative to the world directory
  size_t scene = 0;      // index into the scenes of `scene_index`
  std::string reference;  // the record's answer: the scene's ground-truth description (or short answer)
  std::string task = "description";  // description | qa
};
// scene_index maps a scene id to its index. Throws mmb::Error naming the record on a malformed
// one, an image with no scene, an unknown task, or a split without prompts of the task.
// Whether read_task_prompts knows the task name.
bool is_prompt_task(const std::string& task);
std::vector<DescriptionPrompt> read_task_prompts(const std::string& world_dir, const std::string& split,
                                                 const std::string& task,
                                                 const std::map<std::string, size_t>& scene_index);
// read_task_prompts(..., "description", ...).
std::vector<DescriptionPrompt> read_description_prompts(const std::string& world_dir, const std::string& split,
                                                        const std::map<std::string, size_t>& scene_index);

// `limit` of `n` indices drawn with `seed`, in increasing order (all when limit < 0 or >= n):
// the builders' prompt draw.
std::vector<size_t> draw_indices(size_t n, int64_t limit, uint64_t seed);

// The scenes of a world (scenes.jsonl, every split) and `limit` prompts of `split` drawn with
// `seed` (draw_indices) from the prompts of `tasks` in that order: what the world builders
// answer. Throws as read_task_prompts.
struct WorldPromptSet {
  std::vector<world::Scene> scenes;
  std::vector<DescriptionPrompt> prompts;
};
WorldPromptSet draw_world_prompts(const std::string& world_dir, const std::string& split, int64_t limit,
                                  uint64_t seed, const std::vector<std::string>& tasks = {"description"});

// ---- judging responses with the world's exact truth ----------------------------------------

// What the verifier says of one response, sentence by sentence (split_sentences).
struct ResponseJudgement {
  int64_t sentences = 0, true_sentences = 0, false_sentences = 0, unverifiable_sentences = 0;
  int64_t hallucinated = 0;  // hallucinated object mentions (CHAIR's numerator)
  int64_t repeated = 0;      // sentences that repeat an earlier one of the response word for word
  int64_t visible = 0;       // the scene's visible objects
  double recall = 0;         // object_recall: visible objects some true sentence talks about
  double mentioned = 0;      // mention_recall: visible objects some sentence refers to, true or not
  // Errors: false sentences + unverifiable sentences + hallucinated mentions + repeated sentences.
  // An unverifiable sentence counts against a response, so vague text cannot win; a repeated one
  // too, so a loop of true sentences cannot; an empty response is one error.
  int64_t errors() const;
  // recall − error_weight · errors / max(1, visible): an error costs as much as error_weight
  // correctly described objects, so neither saying less nor saying more wins by itself.
  double score(double error_weight = 1.0) const;
  // The online judge's score: `recall` is "strict" (recall above) or "mention" (mentioned); an
  // error is a hallucinated mention, an unverifiable or a repeated sentence (weight 1 each) or a false
  // sentence (weight false_weight, <= 1: a true object with a wrong attribute is a lesser fault
  // than an object that is not there), and costs error_weight objects. score(w) =
  // score(w, "strict", 1).
  double score(double error_weight, const std::string& recall_kind, double false_weight) const;
  Json to_json() const;
  // Inverse of to_json; throws mmb::Error naming `where` and the missing or mistyped key.
  static ResponseJudgement from_json(const Json& j, const std::string& where);
};
ResponseJudgement judge_response(const world::Verifier& verifier, const world::Scene& scene, const std::string& text);

// A short answer (the first turn of a QA conversation) judged against the ground truth's answer:
// one sentence, true when its answer is the reference's (Verifier::check_answer), false when it
// differs or is missing (vague text cannot win); recall 0.
ResponseJudgement judge_answer(const world::Verifier& verifier, const world::Scene& scene, const std::string& reference,
                               const std::string& answer);

// A reasoning answer (a chain of steps ending in "So, the answer is …") judged step by step as
// judge_response does, the answer sentence against the reference chain's own answer; a wrong or
// missing final answer counts one more false sentence. Recall 0: its score ranks by errors alone.
ResponseJudgement judge_reasoning(const world::Verifier& verifier, const world::Scene& scene,
                                  const std::string& reference, const std::string& text);

// A response to a world prompt judged by the prompt's task: judge_answer for "qa" (short answers,
// POPE's questions), judge_reasoning for "reasoning", judge_response for descriptions.
ResponseJudgement judge_prompt_response(const world::Verifier& verifier, const world::Scene& scene,
                                        const DescriptionPrompt& prompt, const std::string& text);

// The verifier judge's order, by score(error_weight): > 0 when a is better than b, < 0 when
// worse, 0 on a tie (a pair of tied responses teaches nothing and is dropped).
int compare_judgements(const ResponseJudgement& a, const ResponseJudgement& b, double error_weight = 1.0);

// Online DPO's judges (DpoRunOptions::judge): the weight of each score in a response's total —
// "verifier", "clip" or "likelihood" alone (weight 1), or "mix" with `mix` = "name=w,…" over those
// names (weights >= 0, at least one > 0; a name given once). Throws mmb::Error naming the bad part.
std::map<std::string, double> judge_weights(const std::string& judge, const std::string& mix);

// What a preference builder did; printed as one JSON line (with pairs_per_minute and tokens_per_s).
struct PairBuildReport {
  int64_t prompts = 0, pairs = 0, generated_tokens = 0;
  std::map<std::string, int64_t> dropped;  // candidate pairs not written, by reason
  double seconds = 0;
  Json to_json() const;
  static PairBuildReport from_json(const Json& j, const std::string& where);  // throws naming `where`
  // The totals of several shards' reports; seconds is the slowest shard's (they run side by side).
  static PairBuildReport merge(const std::vector<PairBuildReport>& shards);
};

// One slice of a builder's drawn prompts: shard `index` of `count` answers the contiguous range
// [index·N/count, (index+1)·N/count) of the N prompts (`mmb prefs` under torchrun: a shard a rank).
// Generation seeds follow the prompt's place in the whole draw, so the draw is the same however
// it is sharded.
struct PromptShard {
  int64_t index = 0, count = 1;
  std::pair<size_t, size_t> range(size_t n) const;  // throws mmb::Error unless 0 <= index < count
};

// The shards' pair files (in shard order) joined into `out` (atomically), each line checked as
// read_preference_pairs does.
void merge_pair_files(const std::vector<std::string>& parts, const std::string& out);

// ---- pair quality (`mmb prefs stats`) ------------------------------------------------------

// Word-level Levenshtein distance (words split on white space).
int64_t word_edit_distance(const std::string& a, const std::string& b);

// Over the pairs that carry "chosen_judgement" and "rejected_judgement" (what the builders write
// on the world): the share whose chosen is truly better / equal / worse by compare_judgements,
// mean errors, hallucinations and recall of each side; over all pairs: mean words of each side and
// mean word edit distance (absolute and divided by the longer side). Per "source" too.
Json preference_pair_stats(const std::vector<PreferencePair>& pairs, double error_weight = 1.0);

}  // namespace mmb
