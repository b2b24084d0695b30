// The verifier's lexicon and tokenizer (private to src/world). Words are looked up in an
// open-addressing hash table built once; a sentence is lower-cased into a stack buffer and cut
// into at most kMaxTokens tokens, each with its category and value.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mmb/verifier.h"

namespace mmb::world::lex {

// Word categories. `val` carries the shape / colour / size / number / side, or 1 for a negated
// verb ("isn't").
enum Cat : uint8_t {
  kUnknown, kShape, kShapes, kForeign, kForeigns, kColor, kGrey, kSize, kNumber, kNo, kNone,
  kVertical,    // top (0) / bottom (2), also upper / lower
  kHorizontal,  // left (0) / right (2)
  kCenter, kCorner, kSide, kPart,
  kThere, kThereIs, kIs, kAre, kA, kThe, kAt, kIn, kOn, kOf, kTo, kImage, kThis,
  kI, kWe, kCan, kSee, kShows, kObject, kObjects, kBox, kSomething, kHidden, kBehind, kHides,
  kAbove, kBelow, kPlus, kAnd, kMakes, kMore, kLess, kThan, kEqual, kSame, kAs, kAnswer,
  kYes, kNot, kDo, kDont, kKnow, kCannot, kTell, kUnknownWord, kAny, kLocated, kTotal,
  kOption, kLetter,  // kLetter: single letters b..e ("a" is kA)
};

struct Token {
  std::string_view text;
  Cat cat = kUnknown;
  uint8_t val = 0;
  bool comma_after = false;  // a ',' or ':' followed the word
};

constexpr int kMaxTokens = 96;

struct Tokens {
  Token tok[kMaxTokens];
  int n = 0;
  bool overflow = false;  // the sentence had more than kMaxTokens words
};

}  // namespace mmb::world::lex

namespace mmb::world {

struct Verifier::Tables {
  struct Entry {
    std::string key;
    lex::Cat cat = lex::kUnknown;
    uint8_t val = 0;
  };
  std::vector<Entry> slots;  // power-of-two size, empty key = free
  uint64_t mask = 0;
  std::vector<std::vector<std::string>> hedges;    // trailing phrases, tokenised
  std::vector<std::vector<std::string>> prefixes;  // leading phrases, tokenised

  Tables();
  void add(std::string_view word, lex::Cat cat, uint8_t val = 0);
  const Entry* find(std::string_view word) const;
  // Lower-cases `sentence` into `buffer` (at least sentence.size() bytes) and tokenises it;
  // token texts point into `buffer`.
  void tokenize(std::string_view sentence, char* buffer, lex::Tokens& out) const;
  static std::vector<std::string> split_words(std::string_view phrase);
};

}  // namespace mmb::world
