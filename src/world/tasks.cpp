// Task generators: every question's answer is computed from the scene graph, and every
// declarative sentence (descriptions, reasoning steps) is one fact in the grammar verifier.cpp
// parses. Templates give paraphrases; the choice among them is drawn from the sample's task
// stream, so the text is deterministic from (seed, split, index).
//
// References ("the red circle", "the object at the top left") always name exactly one object of
// the scene (hidden one included), so every answer is exact.
#include <algorithm>
#include <cctype>
#include <functional>

#include "mmb/world_tasks.h"
#include "rng.h"

namespace mmb::world {
namespace {

const char* const kNumberWords[] = {"zero", "one", "two",   "three", "four", "five",
                                    "six",  "seven", "eight", "nine",  "ten"};
constexpr int kMaxNumberWord = 10;
const char* const kIdk = "I don't know";

std::string number_word(int n) {
  return n >= 0 && n <= kMaxNumberWord ? kNumberWords[n] : std::to_string(n);
}

std::string cap(std::string s) {
  if (!s.empty()) s[0] = char(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

// "a" or "an" for the word that follows.
const char* article(const std::string& next) {
  return !next.empty() && std::string("aeiou").find(next[0]) != std::string::npos ? "an" : "a";
}

template <size_t N>
const char* pick(Rng& rng, const char* const (&options)[N]) {
  return options[rng.below(int(N))];
}

// Replaces each "{}" in `tmpl` by the next argument.
std::string fill(const char* tmpl, std::initializer_list<std::string> args) {
  std::string out;
  auto it = args.begin();
  for (const char* p = tmpl; *p; ++p) {
    if (p[0] == '{' && p[1] == '}' && it != args.end()) {
      out += *it++;
      ++p;
    } else {
      out += *p;
    }
  }
  return out;
}

std::string full_np(const Object& o) {
  return std::string(size_name(o.size)) + " " + color_name(o.color) + " " + shape_name(o.shape);
}

// ---- referring expressions ----
struct RefSpec {
  bool size, color, shape, pos;
};

bool matches(const Object& a, const Object& b, RefSpec f) {
  return (!f.size || a.size == b.size) && (!f.color || a.color == b.color) &&
         (!f.shape || a.shape == b.shape) && (!f.pos || a.cell == b.cell);
}

std::string ref_text(const Object& o, RefSpec f) {
  std::string s = "the";
  if (f.size) s += std::string(" ") + size_name(o.size);
  if (f.color) s += std::string(" ") + color_name(o.color);
  s += f.shape ? std::string(" ") + shape_name(o.shape) : std::string(" object");
  if (f.pos) s += std::string(" ") + cell_phrase(o.cell);
  return s;
}

// A definite description of objects[i] built from `specs` (shortest first) that no other object
// of the scene matches. Usually the shortest one, sometimes a longer one. Empty if none is unique.
std::string unique_ref(const Scene& scene, int i, const std::vector<RefSpec>& specs, Rng& rng) {
  std::vector<std::string> unique;
  for (const RefSpec& f : specs) {
    int n = 0;
    for (const Object& o : scene.objects) n += matches(o, scene.objects[i], f);
    if (n == 1) unique.push_back(ref_text(scene.objects[i], f));
  }
  if (unique.empty()) return "";
  if (unique.size() == 1 || rng.bernoulli(0.6)) return unique.front();
  return unique[rng.below(int(unique.size()))];
}

const std::vector<RefSpec> kRefNoColor = {{0, 0, 1, 0}, {1, 0, 1, 0}, {0, 0, 1, 1}, {0, 0, 0, 1}};
const std::vector<RefSpec> kRefNoShape = {{0, 1, 0, 0}, {1, 1, 0, 0}, {0, 0, 0, 1}, {0, 1, 0, 1}};
const std::vector<RefSpec> kRefNoSize = {{0, 0, 1, 0}, {0, 1, 1, 0}, {0, 0, 1, 1}, {0, 0, 0, 1}};
const std::vector<RefSpec> kRefNoPos = {{0, 0, 1, 0}, {0, 1, 1, 0}, {1, 0, 1, 0}, {1, 1, 1, 0}};
const std::vector<RefSpec> kRefAny = {{0, 0, 1, 0}, {0, 1, 1, 0}, {1, 1, 1, 0}, {0, 0, 1, 1},
                                      {0, 0, 0, 1}};

std::vector<int> visible_objects(const Scene& s) {
  std::vector<int> v;
  for (int i = 0; i < int(s.objects.size()); ++i)
    if (!s.objects[i].occluded) v.push_back(i);
  return v;
}

int random_of(const std::vector<int>& v, Rng& rng) { return v[rng.below(int(v.size()))]; }

bool has_shape(const Scene& s, Shape shape) {
  for (const Object& o : s.objects)
    if (o.shape == shape) return true;
  return false;
}

// "There are two circles." / "There is one star." / "There are no stars."
std::string count_sentence(int n, const std::string& singular, const std::string& plural) {
  if (n == 0) return "There are no " + plural + ".";
  if (n == 1) return "There is one " + singular + ".";
  return "There are " + number_word(n) + " " + plural + ".";
}

QA make_qa(std::string q, std::string answer, std::string canonical, const char* category,
           bool answerable = true) {
  return QA{std::move(q), std::move(answer), std::move(canonical), category, answerable};
}

QA yes_no(std::string q, bool yes, const char* category) {
  return make_qa(std::move(q), yes ? "Yes." : "No.", yes ? "yes" : "no", category);
}

// ---- answerable questions; each returns false when the scene does not allow it ----
// How an SFT presence question picks the shape it asks about (WorldConfig::sft_balanced_*).
struct ExistenceBalance {
  const ShapeStats* stats = nullptr;  // the train split's shape frequencies f
  double negatives = 0;  // share of "no" turns whose absent shape has weight f / (1 - f)
  double positives = 0;  // share of "yes" turns whose present object has weight 1 / f
};

double shape_frequency(const ExistenceBalance& b, Shape k) {
  return std::clamp(b.stats->frequency[int(k)], 1e-6, 1 - 1e-6);
}

bool existence_question(const Scene& s, Rng& rng, QA& out, const ExistenceBalance& balance) {
  if (s.has_occluder()) return false;  // a hidden object could be anything: "no" is unknowable
  static const char* const kTemplates[] = {
      "Is there {} {} in the image?", "Is there {} {} in the image?", "Is there {} {}?",
      "Do you see {} {}?", "Does the image contain {} {}?", "Can you see {} {} in the image?"};
  const char* tmpl = pick(rng, kTemplates);
  bool with_color = rng.bernoulli(0.3);
  bool yes = rng.bernoulli(0.5);
  std::string np;
  if (yes) {
    // Uniform draws name a shape as often as it occurs, so a rare shape gets few "yes" turns to
    // learn its look from; weights 1 / f ask about the scene's rarest shapes instead.
    int pick_index;
    if (balance.stats && balance.positives > 0 && rng.bernoulli(balance.positives)) {
      std::vector<double> w;
      for (const Object& o : s.objects) w.push_back(1 / shape_frequency(balance, o.shape));
      pick_index = rng.weighted(w.data(), int(w.size()));
    } else {
      pick_index = rng.below(int(s.objects.size()));
    }
    const Object& o = s.objects[pick_index];
    np = with_color ? std::string(color_name(o.color)) + " " + shape_name(o.shape)
                    : shape_name(o.shape);
  } else if (with_color) {
    // A present shape in a colour it does not have: the colour-prior trap.
    const Object& o = s.objects[rng.below(int(s.objects.size()))];
    std::vector<int> colors;
    for (int c = 0; c < kNumColors; ++c) {
      bool taken = false;
      for (const Object& p : s.objects) taken |= p.shape == o.shape && int(p.color) == c;
      if (!taken) colors.push_back(c);
    }
    np = std::string(color_name(Color(random_of(colors, rng)))) + " " + shape_name(o.shape);
  } else {
    std::vector<int> absent;
    for (int k = 0; k < kNumShapes; ++k)
      if (!has_shape(s, Shape(k))) absent.push_back(k);
    if (absent.empty()) return false;
    // Uniform draws ask about a rare shape mostly when it is absent, so "no" becomes its answer
    // whatever the image. A "yes" names shape k about as often as f_k and k is absent with
    // probability 1 - f_k, so weights f_k / (1 - f_k) give each shape as many "no" as "yes".
    if (balance.stats && balance.negatives > 0 && rng.bernoulli(balance.negatives)) {
      std::vector<double> w;
      for (int k : absent) {
        const double f = shape_frequency(balance, Shape(k));
        w.push_back(f / (1 - f));
      }
      np = shape_name(Shape(absent[rng.weighted(w.data(), int(w.size()))]));
    } else {
      np = shape_name(Shape(random_of(absent, rng)));
    }
  }
  out = yes_no(fill(tmpl, {article(np), np}), yes, "existence");
  return true;
}

bool existence_question(const Scene& s, Rng& rng, QA& out) {
  return existence_question(s, rng, out, ExistenceBalance{});
}

bool color_question(const Scene& s, Rng& rng, QA& out) {
  auto vis = visible_objects(s);
  if (vis.empty()) return false;
  int i = random_of(vis, rng);
  std::string ref = unique_ref(s, i, kRefNoColor, rng);
  if (ref.empty()) return false;
  static const char* const kT[] = {"What colour is {}?", "What color is {}?",
                                   "What is the colour of {}?", "Which colour does {} have?"};
  const char* c = color_name(s.objects[i].color);
  out = make_qa(fill(pick(rng, kT), {ref}), cap(c) + ".", c, "color");
  return true;
}

bool shape_question(const Scene& s, Rng& rng, QA& out) {
  auto vis = visible_objects(s);
  if (vis.empty()) return false;
  int i = random_of(vis, rng);
  std::string ref = unique_ref(s, i, kRefNoShape, rng);
  if (ref.empty()) return false;
  static const char* const kT[] = {"What shape is {}?", "What kind of shape is {}?",
                                   "Which shape is {}?"};
  std::string shape = shape_name(s.objects[i].shape);
  out = make_qa(fill(pick(rng, kT), {ref}), cap(article(shape)) + " " + shape + ".", shape,
                "shape");
  return true;
}

bool size_question(const Scene& s, Rng& rng, QA& out) {
  auto vis = visible_objects(s);
  if (vis.empty()) return false;
  int i = random_of(vis, rng);
  std::string ref = unique_ref(s, i, kRefNoSize, rng);
  if (ref.empty()) return false;
  static const char* const kT[] = {"What size is {}?", "How big is {}?",
                                   "Is {} small, medium or large?"};
  const char* sz = size_name(s.objects[i].size);
  out = make_qa(fill(pick(rng, kT), {ref}), cap(sz) + ".", sz, "size");
  return true;
}

bool position_question(const Scene& s, Rng& rng, QA& out) {
  auto vis = visible_objects(s);
  if (vis.empty()) return false;
  int i = random_of(vis, rng);
  std::string ref = unique_ref(s, i, kRefNoPos, rng);
  if (ref.empty()) return false;
  static const char* const kT[] = {"Where is {}?", "Where is {} located?",
                                   "In which part of the image is {}?"};
  int cell = s.objects[i].cell;
  out = make_qa(fill(pick(rng, kT), {ref}), cap(cell_phrase(cell)) + ".", cell_name(cell),
                "position");
  return true;
}

bool count_question(const Scene& s, Rng& rng, QA& out) {
  int kind = s.has_occluder() ? 0 : rng.below(3);  // hidden objects make shape/colour counts unknowable
  int n = 0;
  std::string q;
  if (kind == 0) {
    static const char* const kT[] = {"How many objects are there in the image?",
                                     "How many objects are in the image?",
                                     "How many shapes can you see?"};
    q = pick(rng, kT);
    n = int(s.objects.size());
  } else if (kind == 1) {
    Shape shape = rng.bernoulli(0.7) ? s.objects[rng.below(int(s.objects.size()))].shape
                                     : Shape(rng.below(kNumShapes));
    for (const Object& o : s.objects) n += o.shape == shape;
    static const char* const kT[] = {"How many {} are there?", "How many {} are in the image?",
                                     "How many {} can you see?"};
    q = fill(pick(rng, kT), {shape_plural(shape)});
  } else {
    Color color = rng.bernoulli(0.7) ? s.objects[rng.below(int(s.objects.size()))].color
                                     : Color(rng.below(kNumColors));
    for (const Object& o : s.objects) n += o.color == color;
    static const char* const kT[] = {"How many {} objects are there?",
                                     "How many {} objects are in the image?"};
    q = fill(pick(rng, kT), {color_name(color)});
  }
  out = make_qa(q, cap(number_word(n)) + ".", number_word(n), "count");
  return true;
}

enum Relation { kLeftOf, kRightOf, kAbove, kBelow };
const char* const kRelationPhrases[] = {"to the left of", "to the right of", "above", "below"};

bool relation_holds(const Object& a, const Object& b, int rel) {
  switch (rel) {
    case kLeftOf: return a.col() < b.col();
    case kRightOf: return a.col() > b.col();
    case kAbove: return a.row() < b.row();
    default: return a.row() > b.row();
  }
}

// Two distinct visible objects with unique references from `specs`, and a relation chosen so
// that "yes" and "no" are about equally likely.
bool pick_relation(const Scene& s, Rng& rng, const std::vector<RefSpec>& specs, int& a, int& b,
                   std::string& ref_a, std::string& ref_b, int& rel) {
  auto vis = visible_objects(s);
  if (vis.size() < 2) return false;
  rng.shuffle(vis.data(), int(vis.size()));
  a = vis[0];
  b = vis[1];
  ref_a = unique_ref(s, a, specs, rng);
  ref_b = unique_ref(s, b, specs, rng);
  if (ref_a.empty() || ref_b.empty()) return false;
  bool want = rng.bernoulli(0.5);
  std::vector<int> rels;
  for (int r = 0; r < 4; ++r)
    if (relation_holds(s.objects[a], s.objects[b], r) == want) rels.push_back(r);
  rel = random_of(rels, rng);  // never empty: some relation is false for any pair
  return true;
}

bool relation_question(const Scene& s, Rng& rng, QA& out) {
  int a, b, rel;
  std::string ra, rb;
  if (!pick_relation(s, rng, kRefAny, a, b, ra, rb, rel)) return false;
  bool yes = relation_holds(s.objects[a], s.objects[b], rel);
  out = yes_no("Is " + ra + " " + kRelationPhrases[rel] + " " + rb + "?", yes, "relation");
  return true;
}

// ---- unanswerable questions ----
bool occluded_question(const Scene& s, Rng& rng, QA& out) {
  if (!s.has_occluder()) return false;
  static const char* const kT[] = {"What colour is the object behind the grey box?",
                                   "What color is the hidden object?",
                                   "What shape is hidden behind the grey box?",
                                   "What is the shape of the object behind the grey box?",
                                   "What colour is the hidden object?"};
  out = make_qa(pick(rng, kT), std::string(kIdk) + ".", kIdk, "occluded", false);
  return true;
}

bool nonvisual_question(const Scene& s, Rng& rng, QA& out) {
  auto vis = visible_objects(s);
  if (vis.empty()) return false;
  std::string ref = unique_ref(s, random_of(vis, rng), kRefAny, rng);
  if (ref.empty()) return false;
  static const char* const kT[] = {
      "What is the weight of {}?", "How heavy is {}?",          "How old is {}?",
      "What is {} made of?",       "What is the price of {}?",  "Who drew {}?",
      "What is the name of {}?",   "What is the temperature of {}?", "What does {} smell like?"};
  out = make_qa(fill(pick(rng, kT), {ref}), std::string(kIdk) + ".", kIdk, "nonvisual", false);
  return true;
}

bool unknown_kind_question(const Scene&, Rng& rng, QA& out) {
  static const char* const kT[] = {"What colour is the {}?", "Where is the {}?",
                                   "How big is the {}?", "What is the {} doing?"};
  std::string kind = foreign_kind_name(rng.below(kNumForeignKinds));
  out = make_qa(fill(pick(rng, kT), {kind}), std::string(kIdk) + ".", kIdk, "unknown_kind",
                false);
  return true;
}

using Generator = bool (*)(const Scene&, Rng&, QA&);

// Draws question types by weight until try_type(type, qa) accepts the scene (count_question
// always does).
template <typename Try>
QA draw_question(const Scene& s, Rng& rng, const double* weights, int n, Try&& try_type) {
  QA qa;
  for (int attempt = 0; attempt < 16; ++attempt)
    if (try_type(rng.weighted(weights, n), qa)) return qa;
  count_question(s, rng, qa);
  return qa;
}

// In QaWeights::kNames order.
QA answerable_question(const Scene& s, Rng& rng, const QaWeights& mix = {},
                      const ExistenceBalance& balance = {}) {
  static const Generator kGens[QaWeights::kTypes] = {
      existence_question, color_question, shape_question,   size_question,
      position_question,  count_question, relation_question};
  // kGens[0] with the balance (shares of 0 draw nothing extra: the default world is unchanged).
  return draw_question(s, rng, mix.weight.data(), QaWeights::kTypes, [&](int k, QA& qa) {
    return k == 0 ? existence_question(s, rng, qa, balance) : kGens[k](s, rng, qa);
  });
}

QA unanswerable_question(const Scene& s, Rng& rng) {
  static const Generator kGens[] = {occluded_question, nonvisual_question, unknown_kind_question};
  const double weights[] = {s.has_occluder() ? 3.0 : 0.0, 1.0, 1.0};
  QA qa;
  for (int attempt = 0; attempt < 16; ++attempt)
    if (kGens[rng.weighted(weights, 3)](s, rng, qa)) return qa;
  unknown_kind_question(s, rng, qa);
  return qa;
}

// ---- descriptions ----
void describe(const Scene& s, Rng& rng, SceneTasks& t) {
  static const char* const kPrompts[] = {
      "Describe the image in detail.", "Describe this image.", "What do you see in the image?",
      "Describe all the objects in the picture.", "Give a detailed description of the image."};
  t.description_prompt = pick(rng, kPrompts);
  std::vector<int> order(s.objects.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int(i);
  std::sort(order.begin(), order.end(),
            [&](int a, int b) { return s.objects[a].cell < s.objects[b].cell; });
  const int n = int(s.objects.size());
  if (rng.bernoulli(0.5)) t.description.push_back(object_count_sentence(n, rng.bernoulli(0.5) ? 0 : 1));
  std::vector<std::string> caption_parts;
  const int style = rng.below(kObjectSentenceStyles);
  for (int i : order) {
    const Object& o = s.objects[i];
    if (o.occluded) {
      for (std::string& line : occluder_sentences(o)) t.description.push_back(std::move(line));
      caption_parts.push_back(std::string("a grey box ") + cell_phrase(o.cell));
      continue;
    }
    // mostly one style per description
    const int which = rng.bernoulli(0.7) ? style : rng.below(kObjectSentenceStyles);
    t.description.push_back(object_sentence(o, which));
    const std::string np = full_np(o);
    caption_parts.push_back(article(np) + (" " + np) + " " + cell_phrase(o.cell));
  }
  for (size_t i = 0; i < caption_parts.size(); ++i) {
    if (i > 0) t.caption += i + 1 == caption_parts.size() ? " and " : ", ";
    t.caption += caption_parts[i];
  }
  t.caption += ".";
}

// ---- POPE ----
void pope(const Scene& s, const WorldConfig& config, const ShapeStats& stats, Rng& rng,
          SceneTasks& t) {
  if (s.has_occluder() || config.pope_pairs_per_scene <= 0) return;
  std::vector<int> present, absent;
  for (int k = 0; k < kNumShapes; ++k) (has_shape(s, Shape(k)) ? present : absent).push_back(k);
  int m = std::min({config.pope_pairs_per_scene, int(present.size()), int(absent.size())});
  if (m == 0) return;
  rng.shuffle(present.data(), int(present.size()));
  auto by_frequency = [&](int a, int b) {
    if (stats.frequency[a] != stats.frequency[b]) return stats.frequency[a] > stats.frequency[b];
    return a < b;
  };
  auto partner_score = [&](int b) {
    double best = 0;
    for (int a : present) best = std::max(best, stats.cooccur[a][b]);
    return best;
  };
  for (const char* category : {"random", "popular", "adversarial"}) {
    std::vector<int> neg = absent;
    std::string cat = category;
    if (cat == "random") {
      rng.shuffle(neg.data(), int(neg.size()));
    } else if (cat == "popular") {
      std::sort(neg.begin(), neg.end(), by_frequency);
    } else {
      std::sort(neg.begin(), neg.end(), [&](int a, int b) {
        double sa = partner_score(a), sb = partner_score(b);
        return sa != sb ? sa > sb : by_frequency(a, b);
      });
      // Only strong partners make adversarial questions; other scenes contribute none.
      neg.erase(std::remove_if(neg.begin(), neg.end(),
                               [&](int b) {
                                 return partner_score(b) < config.adversarial_min_cooccur;
                               }),
                neg.end());
    }
    int k = std::min(m, int(neg.size()));
    std::vector<PopeQuestion> qs;
    for (int i = 0; i < k; ++i) {
      for (bool label : {true, false}) {
        Shape shape = Shape(label ? present[i] : neg[i]);
        qs.push_back(PopeQuestion{std::string("Is there ") + article(shape_name(shape)) + " " +
                                      shape_name(shape) + " in the image?",
                                  label, category, shape});
      }
    }
    rng.shuffle(qs.data(), int(qs.size()));
    for (auto& q : qs) t.pope.push_back(std::move(q));
  }
}

// ---- multiple choice ----
bool multiple_choice(const Scene& s, Rng& rng, McQuestion& out) {
  static const Generator kGens[] = {color_question, shape_question, position_question,
                                    count_question};
  static const double kWeights[] = {1, 1, 1, 1};
  QA qa;
  int g = -1;
  for (int attempt = 0; attempt < 16 && g < 0; ++attempt) {
    int c = rng.weighted(kWeights, 4);
    if (kGens[c](s, rng, qa)) g = c;
  }
  if (g < 0) return false;
  std::vector<std::string> values;
  if (g == 0)
    for (int c = 0; c < kNumColors; ++c) values.push_back(color_name(Color(c)));
  if (g == 1)
    for (int k = 0; k < kNumShapes; ++k) values.push_back(shape_name(Shape(k)));
  if (g == 2)
    for (int c = 0; c < kNumCells; ++c) values.push_back(cell_name(c));
  if (g == 3)
    for (int n = 0; n <= 9; ++n) values.push_back(number_word(n));
  values.erase(std::find(values.begin(), values.end(), qa.canonical));
  rng.shuffle(values.data(), int(values.size()));
  out.question = qa.question;
  out.category = qa.category;
  out.answer = rng.below(5);
  for (int i = 0, v = 0; i < 5; ++i) out.options[i] = i == out.answer ? qa.canonical : values[v++];
  return true;
}

// ---- reasoning chains ----
bool total_count_chain(const Scene& s, Rng& rng, ReasoningChain& c) {
  if (s.has_occluder()) return false;
  auto pick_shape = [&] {
    return rng.bernoulli(0.75) ? int(s.objects[rng.below(int(s.objects.size()))].shape)
                               : rng.below(kNumShapes);
  };
  int a = pick_shape(), b = pick_shape();
  if (a == b) return false;
  int na = 0, nb = 0;
  for (const Object& o : s.objects) {
    na += int(o.shape) == a;
    nb += int(o.shape) == b;
  }
  c.category = "total_count";
  c.question = fill("How many {} and {} are there in total?",
                    {shape_plural(Shape(a)), shape_plural(Shape(b))});
  c.perception = {count_sentence(na, shape_name(Shape(a)), shape_plural(Shape(a))),
                  count_sentence(nb, shape_name(Shape(b)), shape_plural(Shape(b)))};
  c.reasoning = {cap(number_word(na)) + " plus " + number_word(nb) + " is " +
                 number_word(na + nb) + "."};
  c.canonical = number_word(na + nb);
  return true;
}

bool compare_count_chain(const Scene& s, Rng& rng, ReasoningChain& c) {
  if (s.has_occluder()) return false;
  auto pick_color = [&] {
    return rng.bernoulli(0.75) ? int(s.objects[rng.below(int(s.objects.size()))].color)
                               : rng.below(kNumColors);
  };
  int a = pick_color(), b = pick_color();
  if (a == b) return false;
  int na = 0, nb = 0;
  for (const Object& o : s.objects) {
    na += int(o.color) == a;
    nb += int(o.color) == b;
  }
  std::string ca = color_name(Color(a)), cb = color_name(Color(b));
  c.category = "compare_count";
  c.question = "Are there more " + ca + " objects than " + cb + " objects?";
  c.perception = {count_sentence(na, ca + " object", ca + " objects"),
                  count_sentence(nb, cb + " object", cb + " objects")};
  std::string wa = cap(number_word(na)), wb = number_word(nb);
  c.reasoning = {na > nb   ? wa + " is more than " + wb + "."
                 : na < nb ? wa + " is less than " + wb + "."
                           : wa + " is equal to " + wb + "."};
  c.canonical = na > nb ? "yes" : "no";
  return true;
}

bool relation_chain(const Scene& s, Rng& rng, ReasoningChain& c) {
  int a, b, rel;
  std::string ra, rb;
  if (!pick_relation(s, rng, kRefNoPos, a, b, ra, rb, rel)) return false;
  bool yes = relation_holds(s.objects[a], s.objects[b], rel);
  c.category = "relation";
  c.question = "Is " + ra + " " + kRelationPhrases[rel] + " " + rb + "?";
  c.perception = {cap(ra) + " is " + cell_phrase(s.objects[a].cell) + ".",
                  cap(rb) + " is " + cell_phrase(s.objects[b].cell) + "."};
  c.reasoning = {cap(ra) + (yes ? " is " : " is not ") + kRelationPhrases[rel] + " " + rb + "."};
  c.canonical = yes ? "yes" : "no";
  return true;
}

bool reasoning_chain(const Scene& s, Rng& rng, ReasoningChain& c) {
  static const decltype(&relation_chain) kGens[] = {total_count_chain, compare_count_chain,
                                                    relation_chain};
  for (int attempt = 0; attempt < 16; ++attempt) {
    c = ReasoningChain{};
    if (kGens[rng.below(3)](s, rng, c)) {
      c.final_step = "So, the answer is " + c.canonical + ".";
      return true;
    }
  }
  return false;
}

}  // namespace

// ---- the description grammar (world_tasks.h) ----
std::string object_sentence(const Object& o, int style) {
  static const char* const kVisible[kObjectSentenceStyles] = {
      "There is {} {} {}.", "{} {} is {}.", "I can see {} {} {}.", "{}, there is {} {}.", "The image shows {} {} {}."};
  if (style < 0 || style >= kObjectSentenceStyles) style = 0;
  const std::string np = full_np(o), a = article(np), pos = cell_phrase(o.cell);
  switch (style) {
    case 1: return fill(kVisible[1], {cap(a), np, pos});
    case 3: return fill(kVisible[3], {cap(pos), a, np});
    default: return fill(kVisible[style], {a, np, pos});
  }
}

std::string object_count_sentence(int n, int form) {
  if (n == 1) return form == 0 ? "There is one object in the image." : "The image shows one object.";
  return fill(form == 0 ? "There are {} objects in the image." : "The image shows {} objects.", {number_word(n)});
}

std::vector<std::string> occluder_sentences(const Object& box) {
  return {std::string("There is a grey box ") + cell_phrase(box.cell) + ".", "An object is hidden behind the grey box."};
}

std::string shape_count_sentence(int n, Shape shape) {
  return count_sentence(n, shape_name(shape), shape_plural(shape));
}

std::string McQuestion::prompt() const {
  std::string p = question;
  for (int i = 0; i < 5; ++i) p += std::string("\n") + char('A' + i) + ". " + options[i];
  p += "\nAnswer with the option's letter from the given choices directly.";
  return p;
}

std::string McQuestion::study_prompt() const {
  // The calibration study's wording, as mmb::calibration_study_mc_prompt (src/eval/elicitation.cpp) builds it at
  // evaluation.
  std::string p = question;
  for (int i = 0; i < 5; ++i) p += std::string("\n") + char('A' + i) + ". " + options[i];
  return p + "\nPlease provide the option letter directly.";
}

std::string ReasoningChain::text() const {
  std::string t;
  for (const auto* steps : {&perception, &reasoning})
    for (const auto& step : *steps) t += step + " ";
  return t + final_step;
}

int64_t SceneTasks::sample_count() const {
  return 1 + int64_t(qa.size() + pope.size() + mc.size() + reasoning.size() + idk.size());
}

ShapeStats shape_stats(const std::vector<Scene>& scenes) {
  ShapeStats st;
  std::array<double, kNumShapes> with{};
  std::array<std::array<double, kNumShapes>, kNumShapes> both{};
  for (const Scene& s : scenes) {
    std::array<bool, kNumShapes> in{};
    for (const Object& o : s.objects) in[int(o.shape)] = true;
    for (int a = 0; a < kNumShapes; ++a) {
      if (!in[a]) continue;
      with[a] += 1;
      for (int b = 0; b < kNumShapes; ++b) both[a][b] += in[b];
    }
  }
  for (int a = 0; a < kNumShapes; ++a) {
    st.frequency[a] = scenes.empty() ? 0 : with[a] / double(scenes.size());
    for (int b = 0; b < kNumShapes; ++b) st.cooccur[a][b] = with[a] > 0 ? both[a][b] / with[a] : 0;
  }
  return st;
}

SceneTasks make_tasks(const Scene& scene, const WorldConfig& config, const ShapeStats& train_stats,
                      uint64_t seed) {
  Rng rng = Rng::for_sample(seed, int(scene.split), scene.index, Stream::kTasks);
  SceneTasks t;
  if (scene.objects.empty()) return t;
  describe(scene, rng, t);
  Rng turns = Rng::for_sample(seed, int(scene.split), scene.index, Stream::kSftTurns);
  // Whether a turn is hinted comes from its own stream: with sft_hint_fraction 0 the world is
  // unchanged, and with hints a conversation is the default one up to its first hinted turn.
  Rng hints = Rng::for_sample(seed, int(scene.split), scene.index, Stream::kSftHint);
  for (int i = 0; i < config.qa_turns_per_scene; ++i) {
    const bool hinted = config.sft_hint_fraction > 0 && hints.bernoulli(config.sft_hint_fraction);
    QA qa = turns.bernoulli(hinted ? config.sft_hint_idk_fraction : config.sft_idk_fraction)
                ? unanswerable_question(scene, turns)
                : answerable_question(scene, turns, config.sft_qa_weights,
                                      {&train_stats, config.sft_balanced_negatives, config.sft_balanced_positives});
    if (hinted) qa.question += std::string(" ") + kIdkHint;
    t.qa.push_back(std::move(qa));
  }
  pope(scene, config, train_stats, rng, t);
  for (int i = 0; i < config.mc_per_scene; ++i) {
    McQuestion mc;
    if (multiple_choice(scene, rng, mc)) t.mc.push_back(std::move(mc));
  }
  for (int i = 0; i < config.reasoning_per_scene; ++i) {
    ReasoningChain c;
    if (reasoning_chain(scene, rng, c)) t.reasoning.push_back(std::move(c));
  }
  for (int i = 0; i < config.idk_per_scene; ++i)
    t.idk.push_back(rng.bernoulli(config.idk_answerable_fraction) ? answerable_question(scene, rng)
                                                                  : unanswerable_question(scene, rng));
  return t;
}

}  // namespace mmb::world
