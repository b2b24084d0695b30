// The verifier's grammar (private to src/world): noun phrases, positions, answers — the
// token-level parsing that verifier.cpp builds its sentence forms on.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "verifier_lexicon.h"

namespace mmb::world::grammar {

using namespace lex;

constexpr int kIndef = -1;        // "a", "an", "any": at least one
constexpr int kDef = -2;          // "the"
constexpr int kGreyColor = 100;   // "grey": only the occluder is grey
constexpr Cat kEnd = Cat(255);    // peek() past the end

struct NounPhrase {
  int quant = kIndef;
  int size = -1, color = -1, kind = -1, cell = -1;
  bool box = false, hidden = false, plural = false;
};

// An answer value: what "Yes.", "Red.", "At the top left.", "Three.", "C." or "I don't know."
// denote.
enum class AnswerCat : uint8_t { kNone, kYes, kNo, kIdk, kColor, kShape, kSize, kNumber, kCell,
                                 kLetter };
struct AnswerValue {
  AnswerCat cat = AnswerCat::kNone;
  int val = 0;
  bool operator==(const AnswerValue& o) const { return cat == o.cat && val == o.val; }
};

// The answer's canonical text: "yes", "red", "top left", "three", "C", "I don't know".
std::string canonical(const AnswerValue& v);

// A cursor over tokens [pos, end). location, behind_box, quantified_np, definite_np and
// answer_value leave `pos` unchanged when they fail.
struct Parser {
  const Tokens& t;
  int pos, end;

  Cat peek(int k = 0) const { return pos + k < end ? t.tok[pos + k].cat : kEnd; }
  uint8_t val(int k = 0) const { return t.tok[pos + k].val; }
  bool at(Cat c) const { return peek() == c; }
  bool accept(Cat c) {
    if (!at(c)) return false;
    ++pos;
    return true;
  }
  bool done() const { return pos >= end; }

  // "in the image", "of the picture", "in total": carries no claim.
  void skip_tails();

  // top | top left | left | center | top center, optionally + corner / side / part.
  bool position(int& cell);

  // (at|in|on) [the] POSITION
  bool location(int& cell);

  // behind|under the [grey] box
  bool behind_box();

  // ADJ* NOUN MOD*
  bool np_body(NounPhrase& np);

  // (a|an|any|some|NUM|no) NP, or a bare plural ("there are circles").
  bool quantified_np(NounPhrase& np);

  bool definite_np(NounPhrase& np);

  // [the] yes | no | I don't know | colour | [a] shape | size | NUM | none | [at the] position |
  // letter, then the end of the sentence (or a comma when `allow_more`).
  bool answer_value(AnswerValue& v, bool allow_more);
};

// Tokenises into a stack buffer when the sentence is short (the common case).
struct Tokenized {
  Tokens tokens;
  char small[512];
  std::string large;
  Tokenized(const Verifier::Tables& tables, std::string_view s) {
    char* buf = small;
    if (s.size() > sizeof small) {
      large.resize(s.size());
      buf = large.data();
    }
    tables.tokenize(s, buf, tokens);
  }
};

// Strips trailing hedges and leading connectives; `strip_yes_no` also drops "Yes," / "No,".
void strip(const Verifier::Tables& tables, const Tokens& t, int& begin, int& end,
           bool strip_yes_no);

// The answer of a response: after the last "answer is" when `search_answer_is`, else at the
// start. False when there is none.
bool parse_answer_value(const Verifier::Tables& tables, std::string_view text, AnswerValue& v,
                        bool search_answer_is);

}  // namespace mmb::world::grammar
