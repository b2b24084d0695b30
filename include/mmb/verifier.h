// The verifier: tells whether one sentence in the world's language is true of a scene.
//
// It parses the closed grammar the task generators write (docs/world.md lists it) with a
// hand-written tokenizer and recursive descent over precomputed word tables — no regex — and
// tolerates what models add: any case, punctuation, a leading "So," / "Yes," / "I think", and a
// trailing confidence phrase ("..., but I'm not sure", "with total certainty", ...).
//
// Semantics (exact, against the full scene graph, hidden objects included):
//   existence  "There is a large red circle at the top left."  some object matches every attribute
//   count      "There are two circles." / "There are no stars."  exactly that many match
//   attribute  "The circle is red." / "The red object is a circle."  every referent has it
//   relation   "The red circle is to the left of the star."  by grid column / row
//   occlusion  "There is a grey box at the top." / "An object is hidden behind the grey box."
//   arithmetic "Two plus one is three." / "Two is more than one."
//   answer     "So, the answer is three." / "Yes."  compared with the expected answer, if given
// A definite reference with no referent is false (and its kind hallucinated); one with several
// referents that disagree is unverifiable (ambiguous). Claims about the colour, shape or size of
// the object behind the grey box are unverifiable: the image cannot show them.
//
// Thread safety: a Verifier is immutable after construction (add_hedge excepted); verify() and
// check_answer() may be called from many threads. Speed: see bench/world_bench.cpp.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mmb/world.h"

namespace mmb::world {

enum class Truth : uint8_t { kTrue, kFalse, kUnverifiable };
enum class ClaimKind : uint8_t { kNone, kExistence, kCount, kAttribute, kRelation, kOcclusion,
                                 kArithmetic, kAnswer };
const char* truth_name(Truth t);       // "true", "false", "unverifiable"
const char* claim_name(ClaimKind k);   // "existence", ...; "none" when the sentence did not parse

// Object kinds the verifier knows: the shapes (index = Shape), then the foreign kinds
// (kNumShapes + k = foreign_kind_name(k)). Masks below have bit i set for kind i.
constexpr int kNumKinds = kNumShapes + kNumForeignKinds;
const char* kind_name(int kind);

struct Verdict {
  Truth truth = Truth::kUnverifiable;
  ClaimKind kind = ClaimKind::kNone;
  uint32_t mentioned = 0;      // kinds the sentence asserts or refers to (not negated ones)
  uint32_t hallucinated = 0;   // mentioned kinds no object of the scene has (CHAIR's numerator)
  uint32_t referents = 0;      // bit i: scene object i is what the sentence talks about
  const char* reason = "";     // why false / unverifiable, a static string ("" when true)

  bool is_true() const { return truth == Truth::kTrue; }
  std::vector<std::string> mentioned_names() const;
  std::vector<std::string> hallucinated_names() const;
  Json to_json() const;
};

// The result of comparing a response with an expected answer.
struct AnswerCheck {
  Truth truth = Truth::kUnverifiable;  // unverifiable = no answer found in the response
  std::string answer;                  // the response's answer, canonical ("yes", "red", "C", ...)
  bool is_idk = false;                 // the response said "I don't know"
};

class Verifier {
 public:
  Verifier();

  // Verifies one sentence against the scene. `expected_answer` (canonical, as in QA::canonical)
  // lets answer sentences ("So, the answer is three.") be judged; without it they are
  // unverifiable. Throws mmb::Error on an empty sentence (nothing but spaces and punctuation).
  Verdict verify(const Scene& scene, std::string_view sentence,
                 std::string_view expected_answer = {}) const;

  // Extracts the answer of a response ("Yes.", "The answer is C.", "So, the answer is two.",
  // "I don't know.") and compares it with `expected` (canonical). A letter A–E is compared as
  // an option letter. Throws mmb::Error when `expected` is empty.
  AnswerCheck check_answer(std::string_view response, std::string_view expected) const;

  // Adds a trailing confidence phrase to strip (e.g. from the confidence module's pools).
  void add_hedge(std::string_view phrase);

  struct Tables;  // word table and phrase lists (verifier.cpp)

 private:
  std::shared_ptr<Tables> tables_;  // shared by copies of this Verifier (add_hedge included)
};

}  // namespace mmb::world
