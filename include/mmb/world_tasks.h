// The world's tasks: descriptions, POPE yes/no questions, attribute / counting / relation
// questions, multiple choice, reasoning chains and unanswerable questions — every answer computed
// from the scene graph, every sentence in the closed grammar the Verifier parses (verifier.h).
//
// Answers are short ("Yes.", "Red.", "At the top left.", "Three.", "I don't know.");
// descriptions and reasoning steps are declarative sentences, one fact each. See docs/world.md
// for the grammar and docs/formats.md for the files written by generate_world.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "mmb/json.h"
#include "mmb/world.h"

namespace mmb::world {

// A question with its answer. `canonical` is the answer as check_answer compares it:
// "yes", "no", a colour, shape, size, cell name ("top left"), a number word ("three"),
// an option letter ("C") or "I don't know".
struct QA {
  std::string question;     // without the "<image>\n" prefix
  std::string answer;       // the response text, e.g. "Red."
  std::string canonical;
  std::string category;     // existence, color, shape, size, position, count, relation, or for
                            // unanswerable ones: occluded, nonvisual, unknown_kind
  bool answerable = true;
};

// One POPE question: "Is there a <shape> in the image?" with label yes/no.
struct PopeQuestion {
  std::string text;
  bool label = false;       // true = "yes"
  std::string category;     // random, popular, adversarial
  Shape shape = Shape::kCircle;
};

// A multiple-choice question with options A–E (the calibration study's letter-probability confidence).
struct McQuestion {
  std::string question;                 // the bare question
  std::array<std::string, 5> options;   // option texts, A..E
  int answer = 0;                       // index of the correct option
  std::string category;                 // color, shape, count, position
  std::string prompt() const;           // question + "\nA. ...\n...\nE. ...\n" + instruction
  // The calibration study's prompt: question, options, "Please provide the option letter directly." (its
  // answer in the SFT data is "(C)", as the calibration study primes the answer with "(").
  std::string study_prompt() const;
};

// A multi-step question with its reference chain (MMBoundary's format): perception steps
// (facts read off the image), reasoning steps (facts derived from them), then
// "So, the answer is X."
struct ReasoningChain {
  std::string question;
  std::vector<std::string> perception;
  std::vector<std::string> reasoning;
  std::string final_step;               // "So, the answer is three."
  std::string canonical;                // "three"
  std::string category;                 // total_count, compare_count, relation
  std::string text() const;             // all steps joined by spaces
};

// Statistics of the training split that choose POPE negatives: shape frequency (objects per
// scene) and co-occurrence P(B present | A present).
struct ShapeStats {
  std::array<double, kNumShapes> frequency{};                          // share of scenes with it
  std::array<std::array<double, kNumShapes>, kNumShapes> cooccur{};    // [A][B] = P(B | A)
};
ShapeStats shape_stats(const std::vector<Scene>& scenes);

// Everything generated for one scene.
struct SceneTasks {
  std::string description_prompt;       // "Describe the image in detail."
  std::vector<std::string> description; // one sentence per object (and a count sentence)
  std::string caption;                  // short caption for CLIP training
  std::vector<QA> qa;                   // the SFT conversation turns
  std::vector<PopeQuestion> pope;       // empty for scenes with an occluder
  std::vector<McQuestion> mc;
  std::vector<ReasoningChain> reasoning;
  std::vector<QA> idk;                  // unanswerable questions mixed with answerable ones
  int64_t sample_count() const;         // description + turns + questions, for speed reports
};

// Generates the tasks of a scene, deterministic from (seed, split, index). `train_stats` chooses
// POPE popular and adversarial negatives.
SceneTasks make_tasks(const Scene& scene, const WorldConfig& config, const ShapeStats& train_stats,
                      uint64_t seed);

// ---- the description grammar ----------------------------------------------------------------
// The sentence forms describe() writes, public so that every builder of sentences (the
// preference builders' corrections and injected errors) writes through the same code: a change
// of the grammar flows to them. Each is one fact the Verifier parses.

constexpr int kObjectSentenceStyles = 5;
// A visible object in style 0..4: "There is a large red circle at the top left.",
// "A large red circle is at the top left.", "I can see ...", "At the top left, there is ...",
// "The image shows ...". Another style counts as 0. Attributes are read from `o` as given, so a
// modified copy states a false fact in the same words.
std::string object_sentence(const Object& o, int style);
// The scene's object count in form 0 ("There are three objects in the image.") or 1 ("The image
// shows three objects.").
std::string object_count_sentence(int n, int form);
// The occluder's sentences: "There is a grey box at the top." and "An object is hidden behind
// the grey box."
std::vector<std::string> occluder_sentences(const Object& box);
// "There are two circles." / "There is one star." / "There are no stars."
std::string shape_count_sentence(int n, Shape shape);

// ---- the whole world on disk ---------------------------------------------------------------
struct GenerateSummary {
  int64_t scenes = 0;
  int64_t samples = 0;       // SceneTasks::sample_count summed
  int64_t png_bytes = 0;
  double seconds = 0;
  Json stats;                // as written to stats.json
};

// Writes the world into `out_dir` (created if missing): world.json (config, vocabulary, seed),
// scenes.jsonl, images/<id>.png, <split>/{llava.json, pope.jsonl, mc.jsonl, reasoning.jsonl,
// idk.jsonl, captions.jsonl}, stats.json. Every file is written atomically; the output is
// byte-identical for the same (config, seed) whatever the thread count. Renders, encodes and
// writes images on config.threads threads while the calling thread appends the text files.
// Shows a progress bar on stderr when `progress`.
GenerateSummary generate_world(const WorldConfig& config, uint64_t seed, const std::string& out_dir,
                               bool progress = true);

// Statistics of a set of scenes and POPE questions: per split counts, shape and colour
// distributions, co-occurrence P(B|A), colour given shape, occlusion rate, objects per scene,
// POPE yes/no balance per category. POPE records are the JSON lines of pope.jsonl.
Json compute_stats(const std::vector<Scene>& scenes, const std::vector<Json>& pope);
// Reads <dir>/scenes.jsonl and <dir>/<split>/pope.jsonl and computes the statistics.
Json compute_stats(const std::string& world_dir);
// Human-readable tables of compute_stats' output (for `mmb world stats`).
std::string format_stats(const Json& stats);

}  // namespace mmb::world
