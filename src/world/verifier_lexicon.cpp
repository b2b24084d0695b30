// The verifier's word table, phrase lists and tokenizer.
#include "verifier_lexicon.h"

#include <cctype>

namespace mmb::world {
namespace {

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (char c : s) {
    h ^= uint8_t(c);
    h *= 1099511628211ull;
  }
  return h;
}

bool is_word_byte(unsigned char c) {
  return std::isalnum(c) || c == '\'' || c >= 0x80;
}

// Trailing confidence phrases (the default pools of the confidence module, and common hedges).
const char* const kHedges[] = {
    "but i'm not sure", "but i am not sure", "with total certainty", "and it needs checking",
    "and i believe this is right", "but i can't be entirely sure",
    "but i cannot be entirely sure", "but i'm not entirely sure", "and i'm sure of it",
    "and i am certain", "with certainty", "for sure", "i think", "i believe", "probably",
    "maybe", "perhaps", "though i'm not sure", "but it needs checking", "i guess"};
// Leading phrases that carry no claim.
const char* const kPrefixes[] = {
    "so", "therefore", "thus", "hence", "also", "and", "then", "finally", "overall", "i think",
    "i think that", "i believe", "i believe that", "it seems that", "probably", "maybe",
    "perhaps", "certainly", "clearly", "definitely", "in the image", "in this image",
    "in the picture", "in this picture", "looking at the image", "we can see that",
    "i can see that"};

}  // namespace

std::vector<std::string> Verifier::Tables::split_words(std::string_view phrase) {
  std::vector<std::string> words;
  std::string cur;
  for (char c : phrase) {
    unsigned char u = static_cast<unsigned char>(c);
    if (is_word_byte(u)) {
      cur += char(std::tolower(u));
    } else if (!cur.empty()) {
      words.push_back(cur);
      cur.clear();
    }
  }
  if (!cur.empty()) words.push_back(cur);
  return words;
}

void Verifier::Tables::add(std::string_view word, lex::Cat cat, uint8_t val) {
  uint64_t i = fnv1a(word) & mask;
  while (!slots[i].key.empty() && slots[i].key != word) i = (i + 1) & mask;
  slots[i].key = std::string(word);
  slots[i].cat = cat;
  slots[i].val = val;
}

const Verifier::Tables::Entry* Verifier::Tables::find(std::string_view word) const {
  uint64_t i = fnv1a(word) & mask;
  while (!slots[i].key.empty()) {
    if (slots[i].key == word) return &slots[i];
    i = (i + 1) & mask;
  }
  return nullptr;
}

Verifier::Tables::Tables() {
  using namespace lex;
  slots.resize(1024);
  mask = slots.size() - 1;
  for (int s = 0; s < kNumShapes; ++s) {
    add(shape_name(Shape(s)), kShape, uint8_t(s));
    add(shape_plural(Shape(s)), kShapes, uint8_t(s));
  }
  for (int k = 0; k < kNumForeignKinds; ++k) {
    add(foreign_kind_name(k), kForeign, uint8_t(kNumShapes + k));
    add(foreign_kind_plural(k), kForeigns, uint8_t(kNumShapes + k));
  }
  for (int c = 0; c < kNumColors; ++c) add(color_name(Color(c)), kColor, uint8_t(c));
  add("grey", kGrey);
  add("gray", kGrey);
  for (int z = 0; z < kNumSizes; ++z) add(size_name(Size(z)), kSize, uint8_t(z));
  add("big", kSize, uint8_t(Size::kLarge));
  add("little", kSize, uint8_t(Size::kSmall));
  add("tiny", kSize, uint8_t(Size::kSmall));
  const char* numbers[] = {"zero", "one", "two",   "three", "four", "five",
                           "six",  "seven", "eight", "nine",  "ten"};
  for (int n = 0; n <= 10; ++n) add(numbers[n], kNumber, uint8_t(n));
  for (int n = 0; n <= 99; ++n) add(std::to_string(n), kNumber, uint8_t(n));
  add("single", kNumber, 1);
  add("no", kNo);
  add("none", kNone);
  add("top", kVertical, 0);
  add("upper", kVertical, 0);
  add("bottom", kVertical, 2);
  add("lower", kVertical, 2);
  add("left", kHorizontal, 0);
  add("right", kHorizontal, 2);
  add("center", kCenter);
  add("centre", kCenter);
  add("middle", kCenter);
  add("corner", kCorner);
  add("side", kSide);
  add("part", kPart);
  add("there", kThere);
  add("there's", kThereIs);
  add("is", kIs, 0);
  add("isn't", kIs, 1);
  add("are", kAre, 0);
  add("aren't", kAre, 1);
  add("a", kA);
  add("an", kA);
  add("the", kThe);
  add("at", kAt);
  add("in", kIn);
  add("on", kOn);
  add("of", kOf);
  add("to", kTo);
  for (const char* w : {"image", "picture", "scene", "photo"}) add(w, kImage);
  add("this", kThis);
  add("i", kI);
  add("we", kWe);
  add("can", kCan);
  add("see", kSee);
  for (const char* w : {"shows", "contains", "has", "displays", "depicts", "includes"})
    add(w, kShows);
  for (const char* w : {"object", "shape", "thing", "item"}) add(w, kObject);
  for (const char* w : {"objects", "shapes", "things", "items"}) add(w, kObjects);
  add("box", kBox);
  add("boxes", kBox, 1);
  add("something", kSomething);
  add("hidden", kHidden);
  add("covered", kHidden);
  add("behind", kBehind);
  add("under", kBehind);
  add("hides", kHides);
  add("covers", kHides);
  add("above", kAbove);
  add("below", kBelow);
  add("beneath", kBelow);
  add("plus", kPlus);
  add("and", kAnd);
  for (const char* w : {"makes", "make", "equals", "gives", "give"}) add(w, kMakes);
  for (const char* w : {"more", "greater", "larger", "bigger"}) add(w, kMore);
  for (const char* w : {"less", "fewer", "smaller"}) add(w, kLess);
  add("than", kThan);
  add("equal", kEqual);
  add("same", kSame);
  add("as", kAs);
  add("answer", kAnswer);
  add("yes", kYes);
  add("not", kNot);
  add("do", kDo);
  add("don't", kDont);
  add("dont", kDont);
  add("know", kKnow);
  add("cannot", kCannot);
  add("can't", kCannot);
  add("tell", kTell);
  add("say", kTell);
  add("unknown", kUnknownWord);
  add("any", kAny);
  add("some", kAny);
  add("located", kLocated);
  add("total", kTotal);
  add("altogether", kTotal);
  add("option", kOption);
  for (const char* w : {"b", "c", "d", "e"}) add(w, kLetter, uint8_t(w[0] - 'a'));
  for (const char* h : kHedges) hedges.push_back(split_words(h));
  for (const char* p : kPrefixes) prefixes.push_back(split_words(p));
}

void Verifier::Tables::tokenize(std::string_view sentence, char* buffer, lex::Tokens& out) const {
  out.n = 0;
  out.overflow = false;
  size_t len = 0;
  size_t i = 0;
  const size_t n = sentence.size();
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(sentence[i]);
    if (!is_word_byte(c)) {
      if ((c == ',' || c == ':' || c == ';') && out.n > 0) out.tok[out.n - 1].comma_after = true;
      ++i;
      continue;
    }
    size_t start = len;
    while (i < n) {
      // U+2019 (right single quotation mark) counts as an apostrophe: "don’t".
      unsigned char d = static_cast<unsigned char>(sentence[i]);
      if (d == 0xE2 && i + 2 < n && uint8_t(sentence[i + 1]) == 0x80 &&
          uint8_t(sentence[i + 2]) == 0x99) {
        buffer[len++] = '\'';
        i += 3;
        continue;
      }
      if (!is_word_byte(d)) break;
      buffer[len++] = char(d >= 'A' && d <= 'Z' ? d + 32 : d);
      ++i;
    }
    if (out.n == lex::kMaxTokens) {
      out.overflow = true;
      return;
    }
    lex::Token& t = out.tok[out.n++];
    t.text = std::string_view(buffer + start, len - start);
    t.comma_after = false;
    const Entry* e = find(t.text);
    t.cat = e ? e->cat : lex::kUnknown;
    t.val = e ? e->val : 0;
  }
}

}  // namespace mmb::world
