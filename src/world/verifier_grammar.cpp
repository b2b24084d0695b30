// The verifier's grammar: token-level parsing of positions, noun phrases and answers.
#include "verifier_grammar.h"

namespace mmb::world::grammar {
namespace {

bool matches_words(const Tokens& t, int from, const std::vector<std::string>& words) {
  if (from < 0 || from + int(words.size()) > t.n) return false;
  for (size_t k = 0; k < words.size(); ++k)
    if (t.tok[from + k].text != words[k]) return false;
  return true;
}

}  // namespace

const char* const kNumberWords[] = {"zero", "one", "two",   "three", "four", "five",
                                    "six",  "seven", "eight", "nine",  "ten"};

std::string canonical(const AnswerValue& v) {
  switch (v.cat) {
    case AnswerCat::kYes: return "yes";
    case AnswerCat::kNo: return "no";
    case AnswerCat::kIdk: return "I don't know";
    case AnswerCat::kColor: return color_name(Color(v.val));
    case AnswerCat::kShape: return shape_name(Shape(v.val));
    case AnswerCat::kSize: return size_name(Size(v.val));
    case AnswerCat::kNumber: return v.val <= 10 ? kNumberWords[v.val] : std::to_string(v.val);
    case AnswerCat::kCell: return cell_name(v.val);
    case AnswerCat::kLetter: return std::string(1, char('A' + v.val));
    default: return "";
  }
}

// "in the image", "of the picture", "in total": carries no claim.
void Parser::skip_tails() {
  for (;;) {
    if ((peek() == kIn || peek() == kOf || peek() == kOn) &&
        (peek(1) == kThe || peek(1) == kThis) && peek(2) == kImage) {
      pos += 3;
    } else if (peek() == kIn && peek(1) == kTotal) {
      pos += 2;
    } else if (peek() == kTotal) {
      pos += 1;
    } else {
      return;
    }
  }
}

// top | top left | left | center | top center, optionally + corner / side / part.
bool Parser::position(int& cell) {
  int row = 1, col = 1;
  if (at(kVertical)) {
    row = val();
    ++pos;
    if (at(kHorizontal)) {
      col = val();
      ++pos;
    } else {
      accept(kCenter);
    }
  } else if (at(kHorizontal)) {
    col = val();
    ++pos;
  } else if (!accept(kCenter)) {
    return false;
  }
  if (!accept(kCorner) && !accept(kSide)) accept(kPart);
  cell = row * kGrid + col;
  return true;
}

// (at|in|on) [the] POSITION
bool Parser::location(int& cell) {
  int save = pos;
  if (accept(kAt) || accept(kIn) || accept(kOn)) {
    accept(kThe);
    if (position(cell)) return true;
  }
  pos = save;
  return false;
}

// behind|under the [grey] box
bool Parser::behind_box() {
  int save = pos;
  if (accept(kBehind) && (accept(kThe) || accept(kA))) {
    accept(kGrey);
    if (accept(kBox)) return true;
  }
  pos = save;
  return false;
}

// ADJ* NOUN MOD*
bool Parser::np_body(NounPhrase& np) {
  for (;;) {
    if (at(kSize) && np.size < 0) {
      np.size = val();
    } else if (at(kColor) && np.color < 0) {
      np.color = val();
    } else if (at(kGrey) && np.color < 0) {
      np.color = kGreyColor;
    } else {
      break;
    }
    ++pos;
  }
  switch (peek()) {
    case kShape: case kForeign: np.kind = val(); break;
    case kShapes: case kForeigns: np.kind = val(); np.plural = true; break;
    case kObject: case kSomething: break;
    case kObjects: np.plural = true; break;
    case kBox: np.box = true; np.plural = val() == 1; break;
    default: return false;
  }
  ++pos;
  for (;;) {
    int cell;
    skip_tails();
    if (np.cell < 0 && location(cell)) {
      np.cell = cell;
    } else if (!np.box && behind_box()) {
      np.hidden = true;
    } else if (!np.box && at(kHidden) && peek(1) == kBehind) {
      ++pos;
      if (!behind_box()) return false;
      np.hidden = true;
    } else {
      return true;
    }
  }
}

// (a|an|any|some|NUM|no) NP, or a bare plural ("there are circles").
bool Parser::quantified_np(NounPhrase& np) {
  int save = pos;
  if (accept(kA) || accept(kAny)) {
    np.quant = kIndef;
  } else if (at(kNumber)) {
    np.quant = val();
    ++pos;
  } else if (accept(kNo)) {
    np.quant = 0;
  } else if (accept(kSomething)) {
    np.quant = kIndef;
    --pos;  // "something" is also the noun
  } else {
    np.quant = kIndef;
  }
  if (np_body(np)) return true;
  pos = save;
  return false;
}

bool Parser::definite_np(NounPhrase& np) {
  int save = pos;
  if (accept(kThe) || accept(kThis)) {
    np.quant = kDef;
    if (np_body(np)) return true;
  }
  pos = save;
  return false;
}

// [the] yes | no | I don't know | colour | [a] shape | size | NUM | none | [at the] position |
// letter, then the end of the sentence (or a comma when `allow_more`).
bool Parser::answer_value(AnswerValue& v, bool allow_more) {
  int save = pos;
  auto finish = [&](AnswerValue value) {
    bool comma = pos > 0 && t.tok[pos - 1].comma_after;
    skip_tails();
    if (done() || (allow_more && comma)) {
      v = value;
      return true;
    }
    pos = save;
    return false;
  };
  if (at(kA) && (peek(1) == kEnd || t.tok[pos].comma_after)) {  // "A." is option A
    ++pos;
    return finish({AnswerCat::kLetter, 0});
  }
  if (accept(kOption)) {
    if (at(kA) || at(kLetter)) {
      int letter = at(kA) ? 0 : val();
      ++pos;
      return finish({AnswerCat::kLetter, letter});
    }
    pos = save;
    return false;
  }
  if (at(kLetter)) {
    int letter = val();
    ++pos;
    return finish({AnswerCat::kLetter, letter});
  }
  if (accept(kYes)) return finish({AnswerCat::kYes, 0});
  if (accept(kNo)) return finish({AnswerCat::kNo, 0});
  if (accept(kNone)) return finish({AnswerCat::kNumber, 0});
  if (accept(kUnknownWord)) return finish({AnswerCat::kIdk, 0});
  {  // I don't know / I do not know / I cannot tell
    int s2 = pos;
    accept(kI);
    if (accept(kDont) || (accept(kDo) && accept(kNot))) {
      if (accept(kKnow)) return finish({AnswerCat::kIdk, 0});
    } else if (accept(kCannot)) {
      if (accept(kTell) || accept(kSee) || accept(kKnow)) return finish({AnswerCat::kIdk, 0});
    }
    pos = s2;
  }
  accept(kThe);
  if (at(kColor)) {
    int c = val();
    ++pos;
    return finish({AnswerCat::kColor, c});
  }
  if (at(kSize)) {
    int z = val();
    ++pos;
    accept(kObject);
    return finish({AnswerCat::kSize, z});
  }
  if (at(kNumber)) {
    int n = val();
    ++pos;
    if (at(kShapes) || at(kObjects) || at(kShape) || at(kObject)) ++pos;
    return finish({AnswerCat::kNumber, n});
  }
  accept(kA);
  if (at(kShape) || at(kShapes)) {
    int k = val();
    ++pos;
    return finish({AnswerCat::kShape, k});
  }
  int cell;
  if (location(cell) || position(cell)) return finish({AnswerCat::kCell, cell});
  pos = save;
  return false;
}

void strip(const Verifier::Tables& tables, const Tokens& t, int& begin, int& end,
           bool strip_yes_no) {
  for (bool changed = true; changed && end > begin;) {
    changed = false;
    for (const auto& h : tables.hedges) {
      int from = end - int(h.size());
      if (from > begin && from >= 0 && int(h.size()) <= end &&
          matches_words(t, from, h)) {
        end = from;
        changed = true;
        break;
      }
    }
  }
  for (bool changed = true; changed && end > begin;) {
    changed = false;
    for (const auto& pre : tables.prefixes) {
      if (begin + int(pre.size()) < end && matches_words(t, begin, pre)) {
        begin += int(pre.size());
        changed = true;
        break;
      }
    }
    if (strip_yes_no && end - begin > 1 && t.tok[begin].comma_after &&
        (t.tok[begin].cat == kYes || t.tok[begin].cat == kNo)) {
      ++begin;
      changed = true;
    }
  }
}



bool parse_answer_value(const Verifier::Tables& tables, std::string_view text, AnswerValue& v,
                        bool search_answer_is) {
  Tokenized tk(tables, text);
  const Tokens& t = tk.tokens;
  int begin = 0, end = t.n;
  strip(tables, t, begin, end, false);
  if (search_answer_is) {
    // The last "answer is" wins: a reasoning chain ends with "So, the answer is X."
    for (int i = end - 1; i >= begin; --i) {
      if (t.tok[i].cat != kAnswer) continue;
      Parser p{t, i + 1, end};
      p.accept(kIs);
      if (p.answer_value(v, true)) return true;
    }
  }
  Parser p{t, begin, end};
  return p.answer_value(v, true);
}

}  // namespace mmb::world::grammar
