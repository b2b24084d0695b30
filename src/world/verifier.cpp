// The verifier: recursive descent over the token categories of verifier_lexicon.cpp, then exact
// evaluation against the scene graph. No allocation on the common path (tokens live in a stack
// buffer), so one core verifies several hundred thousand sentences per second.
//
// Sentence forms (after stripping leading "So," / "Yes," / "I think" and trailing hedges):
//   there is|are|isn't QNP [LOC]      I [can] see QNP      the image shows QNP
//   LOC, there is QNP                 QNP is [located] LOC | [hidden] behind the grey box
//   the [grey] box hides QNP
//   DNP is|are [not] (LOC | hidden | REL DNP | [a] ADJ* [NOUN])
//   NUM plus|and NUM is|makes NUM     NUM is [not] more|less than NUM   NUM is equal to NUM
//   [the] answer is VALUE             VALUE
// QNP = (a|an|any|NUM|no) ADJ* NOUN MOD*, DNP = the ADJ* NOUN MOD*, MOD = LOC | behind the box.
#include <cstring>

#include "mmb/error.h"
#include "mmb/verifier.h"
#include "verifier_grammar.h"

namespace mmb::world {
namespace {

using namespace grammar;

struct Context {
  const Scene& scene;
  uint32_t present = 0;  // bit k: some object of the scene has shape k
};

bool matches(const Object& o, const NounPhrase& np) {
  if (np.box) return o.occluded && (np.cell < 0 || o.cell == np.cell);
  if (np.kind >= kNumShapes || np.color == kGreyColor) return false;
  if (np.kind >= 0 && int(o.shape) != np.kind) return false;
  if (np.color >= 0 && int(o.color) != np.color) return false;
  if (np.size >= 0 && int(o.size) != np.size) return false;
  if (np.cell >= 0 && o.cell != np.cell) return false;
  if (np.hidden && !o.occluded) return false;
  return true;
}

uint32_t referents_of(const Context& c, const NounPhrase& np) {
  uint32_t mask = 0;
  for (size_t i = 0; i < c.scene.objects.size() && i < 32; ++i)
    if (matches(c.scene.objects[i], np)) mask |= 1u << i;
  return mask;
}

int popcount(uint32_t x) { return __builtin_popcount(x); }

void mention(const Context& c, Verdict& v, int kind) {
  if (kind < 0) return;
  v.mentioned |= 1u << kind;
  if (kind >= kNumShapes || !(c.present >> kind & 1u)) v.hallucinated |= 1u << kind;
}

Verdict result(Verdict v, bool ok, const char* reason_if_false) {
  v.truth = ok ? Truth::kTrue : Truth::kFalse;
  v.reason = ok ? "" : reason_if_false;
  return v;
}

Verdict unverifiable(Verdict v, const char* reason) {
  v.truth = Truth::kUnverifiable;
  v.reason = reason;
  return v;
}

// Existence / count: `negated` for "there isn't", "there are not".
Verdict eval_existence(const Context& c, const NounPhrase& np, bool negated) {
  Verdict v;
  uint32_t refs = referents_of(c, np);
  int n = popcount(refs);
  bool affirmative = !negated && np.quant != 0;
  // An exact number ("two circles", "one star") is a count; "a", "any", "no" are existence.
  v.kind = (np.box || np.hidden) ? ClaimKind::kOcclusion
           : np.quant >= 1       ? ClaimKind::kCount
                                 : ClaimKind::kExistence;
  if (affirmative) mention(c, v, np.kind);
  bool ok;
  if (np.quant == kIndef) {
    ok = negated ? n == 0 : n >= 1;
  } else {
    ok = negated ? n != np.quant : n == np.quant;
    if (negated && np.quant == 0) ok = n >= 1;  // "there are not no stars": unlikely but exact
  }
  if (ok && affirmative) v.referents = refs;
  return result(v, ok, n == 0 ? "no such object in the scene" : "wrong count");
}

enum class Pred : uint8_t { kCell, kHidden, kAttributes, kRelation };

struct Predicate {
  Pred type = Pred::kAttributes;
  bool negated = false;
  int cell = -1;
  NounPhrase attrs;   // size / colour / kind for kAttributes
  int relation = 0;   // 0 left of, 1 right of, 2 above, 3 below
  NounPhrase other;   // kRelation's object
};

bool holds(const Object& a, const Object& b, int rel) {
  switch (rel) {
    case 0: return a.col() < b.col();
    case 1: return a.col() > b.col();
    case 2: return a.row() < b.row();
    default: return a.row() > b.row();
  }
}

Verdict eval_definite(const Context& c, const NounPhrase& subject, const Predicate& p) {
  Verdict v;
  v.kind = p.type == Pred::kRelation ? ClaimKind::kRelation
           : p.type == Pred::kHidden ? ClaimKind::kOcclusion
                                     : ClaimKind::kAttribute;
  mention(c, v, subject.kind);
  if (p.type == Pred::kAttributes && !p.negated) mention(c, v, p.attrs.kind);
  if (p.type == Pred::kRelation) mention(c, v, p.other.kind);
  uint32_t refs = referents_of(c, subject);
  if (refs == 0) return result(v, false, "the object referred to is not in the scene");
  v.referents = refs;
  const bool hidden_subject = subject.box || subject.hidden;
  if (hidden_subject && p.type == Pred::kAttributes &&
      (p.attrs.kind >= 0 || p.attrs.color >= 0 || p.attrs.size >= 0))
    return unverifiable(v, "attribute of the hidden object");
  uint32_t others = 0;
  if (p.type == Pred::kRelation) {
    others = referents_of(c, p.other);
    if (others == 0) return result(v, false, "the object related to is not in the scene");
  }
  int n_true = 0, n_total = 0;
  const auto& objs = c.scene.objects;
  for (size_t i = 0; i < objs.size() && i < 32; ++i) {
    if (!(refs >> i & 1u)) continue;
    const Object& o = objs[i];
    if (p.type == Pred::kRelation) {
      for (size_t j = 0; j < objs.size() && j < 32; ++j) {
        if (!(others >> j & 1u) || j == i) continue;
        n_total++;
        n_true += holds(o, objs[j], p.relation) != p.negated;
      }
      continue;
    }
    bool ok;
    if (p.type == Pred::kCell) {
      ok = o.cell == p.cell;
    } else if (p.type == Pred::kHidden) {
      ok = o.occluded;
    } else {
      const NounPhrase& a = p.attrs;
      ok = (a.kind < 0 || int(o.shape) == a.kind) &&
           (a.color < 0 || int(o.color) == a.color) && (a.size < 0 || int(o.size) == a.size);
      if (a.kind >= kNumShapes || a.color == kGreyColor) ok = false;
    }
    n_total++;
    n_true += ok != p.negated;
  }
  if (n_total == 0) return unverifiable(v, "an object cannot be related to itself");
  if (n_true == n_total) return result(v, true, "");
  if (n_true == 0 || subject.plural) return result(v, false, "the attribute does not hold");
  return unverifiable(v, "ambiguous reference");
}

// PRED after "is" / "are" [not].
bool parse_predicate(Parser& p, Predicate& pred) {
  int save = p.pos;
  int cell;
  p.accept(kLocated);
  if (p.location(cell)) {
    pred.type = Pred::kCell;
    pred.cell = cell;
    return true;
  }
  p.pos = save;
  if (p.accept(kHidden)) {
    p.behind_box();
    pred.type = Pred::kHidden;
    return true;
  }
  if (p.behind_box()) {
    pred.type = Pred::kHidden;
    return true;
  }
  // to the left of | left of | to the right of | above | below
  {
    int s2 = p.pos;
    int rel = -1;
    if (p.accept(kAbove)) {
      rel = 2;
    } else if (p.accept(kBelow)) {
      rel = 3;
    } else {
      p.accept(kTo);
      p.accept(kThe);
      if (p.at(kHorizontal)) {
        rel = p.val() == 0 ? 0 : 1;
        ++p.pos;
        if (!p.accept(kOf)) rel = -1;
      }
    }
    if (rel >= 0 && p.definite_np(pred.other)) {
      pred.type = Pred::kRelation;
      pred.relation = rel;
      return true;
    }
    p.pos = s2;
  }
  // [a] ADJ* [NOUN]
  p.accept(kA);
  NounPhrase& a = pred.attrs;
  bool any = false;
  for (;;) {
    if (p.at(kSize) && a.size < 0) {
      a.size = p.val();
    } else if (p.at(kColor) && a.color < 0) {
      a.color = p.val();
    } else if (p.at(kGrey) && a.color < 0) {
      a.color = kGreyColor;
    } else if ((p.at(kShape) || p.at(kShapes) || p.at(kForeign) || p.at(kForeigns)) &&
               a.kind < 0) {
      a.kind = p.val();
    } else if (p.at(kObject) || p.at(kObjects)) {
      // "a red object": no constraint from the noun
    } else {
      break;
    }
    any = true;
    ++p.pos;
  }
  if (any) {
    pred.type = Pred::kAttributes;
    return true;
  }
  p.pos = save;
  return false;
}

bool parse_definite(Parser& p, const Context& c, Verdict& out) {
  int save = p.pos;
  NounPhrase subject;
  if (!p.definite_np(subject)) return false;
  bool negated = false;
  if (p.at(kIs) || p.at(kAre)) {
    negated = p.val() == 1;
    ++p.pos;
  } else {
    p.pos = save;
    return false;
  }
  if (p.accept(kNot)) negated = !negated;
  Predicate pred;
  pred.negated = negated;
  if (!parse_predicate(p, pred)) {
    p.pos = save;
    return false;
  }
  p.skip_tails();
  if (!p.done()) {
    p.pos = save;
    return false;
  }
  out = eval_definite(c, subject, pred);
  return true;
}

// "there is|are|isn't ...", "I [can] see ...", "the image shows ...", "LOC, there is ...",
// "QNP is LOC | hidden ...", "the grey box hides QNP".
bool parse_existence(Parser& p, const Context& c, Verdict& out) {
  int save = p.pos;
  int front_cell = -1;
  if (p.location(front_cell)) {
    if (!(p.at(kThere) || p.at(kThereIs))) {
      p.pos = save;
      front_cell = -1;
    }
  }
  bool negated = false, intro = false;
  if (p.accept(kThere)) {
    if (!(p.at(kIs) || p.at(kAre))) {
      p.pos = save;
      return false;
    }
    negated = p.val() == 1;
    ++p.pos;
    intro = true;
  } else if (p.accept(kThereIs)) {
    intro = true;
  } else if (p.at(kI) || p.at(kWe)) {
    ++p.pos;
    p.accept(kCan);
    intro = p.accept(kSee);
  } else if ((p.at(kThe) || p.at(kThis)) && p.peek(1) == kImage && p.peek(2) == kShows) {
    p.pos += 3;
    intro = true;
  } else if ((p.at(kThe) || p.at(kThis)) && (p.peek(1) == kBox || (p.peek(1) == kGrey &&
                                                                     p.peek(2) == kBox))) {
    // the [grey] box hides QNP
    int s2 = p.pos;
    p.pos += p.peek(1) == kGrey ? 3 : 2;
    NounPhrase np;
    if (p.accept(kHides) && p.quantified_np(np)) {
      np.hidden = true;
      p.skip_tails();
      if (p.done()) {
        out = eval_existence(c, np, false);
        return true;
      }
    }
    p.pos = s2;
  }
  if (intro) {
    if (p.accept(kNot)) negated = !negated;
    // One noun phrase, or a few joined by commas and "and": "two circles and one star".
    constexpr int kMaxConjuncts = 6;
    NounPhrase nps[kMaxConjuncts];
    int n = 0;
    do {
      if (n == kMaxConjuncts || !p.quantified_np(nps[n])) {
        p.pos = save;
        return false;
      }
      NounPhrase& np = nps[n++];
      if (front_cell >= 0) {
        if (np.cell >= 0 && np.cell != front_cell) {
          p.pos = save;
          return false;
        }
        np.cell = front_cell;
      }
      p.skip_tails();
    } while (p.accept(kAnd) || (!p.done() && p.t.tok[p.pos - 1].comma_after));  // "a, b and c"
    if (!p.done()) {
      p.pos = save;
      return false;
    }
    out = eval_existence(c, nps[0], negated);
    for (int k = 1; k < n; ++k) {  // a conjunction is true when every part is
      Verdict part = eval_existence(c, nps[k], negated);
      out.mentioned |= part.mentioned;
      out.hallucinated |= part.hallucinated;
      out.referents |= part.referents;
      if (part.truth == Truth::kFalse && out.truth == Truth::kTrue) {
        out.truth = Truth::kFalse;
        out.reason = part.reason;
      }
      if (part.kind == ClaimKind::kCount) out.kind = ClaimKind::kCount;
    }
    if (out.truth == Truth::kFalse) out.referents = 0;
    return true;
  }
  p.pos = save;
  // QNP is|are [located] LOC | [hidden] behind the box
  NounPhrase np;
  if (p.at(kThe) || p.at(kThis)) return false;
  if (!p.quantified_np(np)) return false;
  if (!(p.at(kIs) || p.at(kAre))) {
    p.pos = save;
    return false;
  }
  negated = p.val() == 1;
  ++p.pos;
  if (p.accept(kNot)) negated = !negated;
  p.accept(kLocated);
  int cell;
  if (p.location(cell)) {
    if (np.cell >= 0 && np.cell != cell) {
      p.pos = save;
      return false;
    }
    np.cell = cell;
  } else if (p.accept(kHidden)) {
    p.behind_box();
    np.hidden = true;
  } else if (p.behind_box()) {
    np.hidden = true;
  } else {
    p.pos = save;
    return false;
  }
  p.skip_tails();
  if (!p.done()) {
    p.pos = save;
    return false;
  }
  out = eval_existence(c, np, negated);
  return true;
}

bool parse_arithmetic(Parser& p, Verdict& out) {
  int save = p.pos;
  if (!p.at(kNumber)) return false;
  int a = p.val();
  ++p.pos;
  Verdict v;
  v.kind = ClaimKind::kArithmetic;
  if (p.accept(kPlus) || p.accept(kAnd)) {
    if (!p.at(kNumber)) {
      p.pos = save;
      return false;
    }
    int b = p.val();
    ++p.pos;
    bool negated = p.at(kIs) && p.val() == 1;
    if (!(p.accept(kIs) || p.accept(kMakes) || p.accept(kAre))) {
      p.pos = save;
      return false;
    }
    if (p.accept(kNot)) negated = !negated;
    if (!p.at(kNumber)) {
      p.pos = save;
      return false;
    }
    int sum = p.val();
    ++p.pos;
    p.skip_tails();
    if (!p.done()) {
      p.pos = save;
      return false;
    }
    out = result(v, (a + b == sum) != negated, "wrong sum");
    return true;
  }
  if (!p.at(kIs)) {
    p.pos = save;
    return false;
  }
  bool negated = p.val() == 1;
  ++p.pos;
  if (p.accept(kNot)) negated = !negated;
  int cmp;  // 1 more, -1 less, 0 equal
  if (p.accept(kMore)) {
    cmp = 1;
    if (!p.accept(kThan)) cmp = 2;
  } else if (p.accept(kLess)) {
    cmp = -1;
    if (!p.accept(kThan)) cmp = 2;
  } else if (p.accept(kEqual)) {
    cmp = p.accept(kTo) ? 0 : 2;
  } else if (p.accept(kThe) && p.accept(kSame) && p.accept(kAs)) {
    cmp = 0;
  } else {
    cmp = 2;
  }
  if (cmp == 2 || !p.at(kNumber)) {
    p.pos = save;
    return false;
  }
  int b = p.val();
  ++p.pos;
  if (!p.done()) {
    p.pos = save;
    return false;
  }
  bool ok = cmp == 1 ? a > b : cmp == -1 ? a < b : a == b;
  out = result(v, ok != negated, "wrong comparison");
  return true;
}

// [the] answer is VALUE, or a bare VALUE.
bool parse_answer(Parser& p, std::string_view expected, const Verifier& verifier,
                  Verdict& out) {
  int save = p.pos;
  p.accept(kThe);
  if (p.accept(kAnswer)) {
    p.accept(kIs);
  } else {
    p.pos = save;
  }
  AnswerValue value;
  if (!p.answer_value(value, false)) {
    p.pos = save;
    return false;
  }
  Verdict v;
  v.kind = ClaimKind::kAnswer;
  if (expected.empty()) {
    out = unverifiable(v, "answer without an expected answer");
    return true;
  }
  AnswerCheck check = verifier.check_answer(canonical(value), expected);
  out = check.truth == Truth::kUnverifiable ? unverifiable(v, "answer of another kind")
                                            : result(v, check.truth == Truth::kTrue,
                                                     "wrong answer");
  return true;
}

}  // namespace

const char* truth_name(Truth t) {
  switch (t) {
    case Truth::kTrue: return "true";
    case Truth::kFalse: return "false";
    default: return "unverifiable";
  }
}

const char* claim_name(ClaimKind k) {
  static const char* const kNames[] = {"none",     "existence", "count",     "attribute",
                                       "relation", "occlusion", "arithmetic", "answer"};
  return kNames[int(k)];
}

const char* kind_name(int kind) {
  return kind < kNumShapes ? shape_name(Shape(kind)) : foreign_kind_name(kind - kNumShapes);
}

namespace {
std::vector<std::string> names_of(uint32_t mask) {
  std::vector<std::string> out;
  for (int k = 0; k < kNumKinds; ++k)
    if (mask >> k & 1u) out.push_back(kind_name(k));
  return out;
}
}  // namespace

std::vector<std::string> Verdict::mentioned_names() const { return names_of(mentioned); }
std::vector<std::string> Verdict::hallucinated_names() const { return names_of(hallucinated); }

Json Verdict::to_json() const {
  Json refs = Json::array();
  for (int i = 0; i < 32; ++i)
    if (referents >> i & 1u) refs.push_back(i);
  return Json{{"truth", truth_name(truth)},   {"claim", claim_name(kind)},
              {"mentioned", mentioned_names()}, {"hallucinated", hallucinated_names()},
              {"referents", refs},             {"reason", reason}};
}

Verifier::Verifier() : tables_(std::make_shared<Tables>()) {}

void Verifier::add_hedge(std::string_view phrase) {
  auto words = Tables::split_words(phrase);
  if (words.empty()) fail("Verifier::add_hedge: empty phrase");
  tables_->hedges.push_back(std::move(words));
}

Verdict Verifier::verify(const Scene& scene, std::string_view sentence,
                         std::string_view expected_answer) const {
  Tokenized tk(*tables_, sentence);
  const Tokens& t = tk.tokens;
  if (t.n == 0)
    fail("Verifier::verify: empty sentence (expected words, found '", sentence, "')");
  Verdict v;
  if (t.overflow) return unverifiable(v, "sentence too long");
  int begin = 0, end = t.n;
  strip(*tables_, t, begin, end, true);
  Context c{scene};
  for (const Object& o : scene.objects) c.present |= 1u << int(o.shape);
  Parser p{t, begin, end};
  if (parse_existence(p, c, v)) return v;
  p.pos = begin;
  if (parse_definite(p, c, v)) return v;
  p.pos = begin;
  if (parse_arithmetic(p, v)) return v;
  p.pos = begin;
  if (parse_answer(p, expected_answer, *this, v)) return v;
  return unverifiable(Verdict{}, "not in the world's grammar");
}

AnswerCheck Verifier::check_answer(std::string_view response, std::string_view expected) const {
  AnswerValue want;
  if (expected.empty() || !parse_answer_value(*tables_, expected, want, false))
    fail("Verifier::check_answer: expected a canonical answer (yes, no, a colour, shape, size, "
         "number, position, letter or \"I don't know\"), found '", expected, "'");
  AnswerCheck out;
  AnswerValue got;
  if (!parse_answer_value(*tables_, response, got, true)) return out;
  if (want.cat == AnswerCat::kNumber && got.cat == AnswerCat::kNo)
    got = {AnswerCat::kNumber, 0};  // "No." to "How many stars?" means zero
  out.answer = canonical(got);
  out.is_idk = got.cat == AnswerCat::kIdk;
  if (want.cat == AnswerCat::kLetter && got.cat != AnswerCat::kLetter && !out.is_idk)
    return out;  // a value where a letter was asked for: cannot be mapped without the options
  out.truth = got == want ? Truth::kTrue : Truth::kFalse;
  return out;
}

}  // namespace mmb::world
