// Edits of a response in the world's grammar (include/mmb/pair_builders.h): the corrections of
// `mmb prefs corrected` and BPO's injected errors. Every sentence written here comes from the
// grammar functions of world_tasks.h, never from a template of its own.
#include <algorithm>
#include <cctype>
#include <set>
#include <sstream>

#include "mmb/error.h"
#include "mmb/metrics.h"
#include "mmb/pair_builders.h"
#include "mmb/prefs.h"
#include "mmb/sentences.h"

namespace mmb {
namespace {

using world::Object;
using world::Scene;

// Lower-case words without punctuation: "At the top left, there is" -> "at the top left there is".
std::string plain_words(const std::string& s) {
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    out += std::isalnum(u) || c == '\'' ? char(std::tolower(u)) : ' ';
  }
  return out;
}

struct Candidate {
  std::string text;
  int object = -1;  // scene object it states, -1 for counts and the occluder
};

std::vector<Candidate> grammar_candidates(const Scene& scene) {
  std::vector<Candidate> out;
  for (int i = 0; i < int(scene.objects.size()); ++i) {
    const Object& o = scene.objects[i];
    if (o.occluded) {
      for (auto& s : world::occluder_sentences(o)) out.push_back({s, -1});
      continue;
    }
    for (int k = 0; k < world::kObjectSentenceStyles; ++k) out.push_back({world::object_sentence(o, k), i});
  }
  for (int form = 0; form < 2; ++form) out.push_back({world::object_count_sentence(int(scene.objects.size()), form), -1});
  for (int k = 0; k < world::kNumShapes; ++k) {
    int n = 0;
    for (const Object& o : scene.objects) n += int(o.shape) == k;
    out.push_back({world::shape_count_sentence(n, world::Shape(k)), -1});
  }
  return out;
}

// The response's sentences and the text between them, so that an edit changes only its sentence.
struct Pieces {
  std::string text;
  std::vector<SentenceSpan> spans;
  explicit Pieces(const std::string& t) : text(t), spans(sentence_spans(t)) {}
  std::string sentence(size_t i) const { return text.substr(spans[i].begin, spans[i].end - spans[i].begin); }
  size_t size() const { return spans.size(); }
};

// Rebuilds the text with sentence i replaced (after = "" deletes it with the space before it),
// or, for inserts (insert_after >= -1), `after` added after sentence insert_after.
std::string replace_sentence(const Pieces& p, size_t i, const std::string& after) {
  const SentenceSpan& s = p.spans[i];
  if (!after.empty()) return p.text.substr(0, s.begin) + after + p.text.substr(s.end);
  const size_t from = i > 0 ? p.spans[i - 1].end : s.begin;
  const size_t to = i > 0 ? s.end : (i + 1 < p.size() ? p.spans[i + 1].begin : s.end);
  return p.text.substr(0, from) + p.text.substr(to);
}

std::string insert_sentence(const Pieces& p, int64_t after_index, const std::string& sentence) {
  if (after_index < 0) return sentence + (p.size() > 0 ? " " : "") + p.text.substr(p.size() > 0 ? p.spans[0].begin : 0);
  const size_t at = p.spans[size_t(after_index)].end;
  return p.text.substr(0, at) + " " + sentence + p.text.substr(at);
}

bool is_false(const world::Verifier& v, const Scene& scene, const std::string& s) {
  try {
    return v.verify(scene, s).truth == world::Truth::kFalse;
  } catch (const Error&) {
    return false;
  }
}

// Which visible object and style a sentence is (object_sentence(o, style) == s), or false.
bool object_sentence_of(const Scene& scene, const std::string& s, int& object, int& style) {
  for (int i = 0; i < int(scene.objects.size()); ++i) {
    if (scene.objects[i].occluded) continue;
    for (int k = 0; k < world::kObjectSentenceStyles; ++k)
      if (world::object_sentence(scene.objects[i], k) == s) {
        object = i;
        style = k;
        return true;
      }
  }
  return false;
}

// The first n words of plain words (single spaces between them).
std::string first_words(const std::string& plain, size_t n) {
  std::istringstream in(plain);
  std::string w, out;
  for (size_t i = 0; i < n && in >> w; ++i) out += (i ? " " : "") + w;
  return out;
}

size_t draw(std::mt19937_64& rng, size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); }

}  // namespace

Json EditedResponse::edits_json() const {
  Json out = Json::array();
  for (const auto& e : edits)
    out.push_back({{"sentence", e.sentence}, {"kind", e.kind}, {"before", e.before}, {"after", e.after}});
  return out;
}

std::vector<std::string> true_grammar_sentences(const Scene& scene) {
  std::vector<std::string> out;
  for (auto& c : grammar_candidates(scene)) out.push_back(std::move(c.text));
  return out;
}

EditedResponse correct_response(const world::Verifier& verifier, const Scene& scene, const std::string& text,
                                bool only_hallucinated) {
  const Pieces p(text);
  const std::vector<Candidate> candidates = grammar_candidates(scene);
  // What the response already says truly: its sentences' words, the objects its true sentences name.
  std::set<std::string> said;
  uint32_t named = 0;
  std::vector<bool> wrong(p.size(), false);
  for (size_t i = 0; i < p.size(); ++i) {
    const std::string s = p.sentence(i);
    said.insert(plain_words(s));
    try {
      const world::Verdict v = verifier.verify(scene, s);
      if (v.truth == world::Truth::kTrue) named |= v.referents;
      wrong[i] = v.truth == world::Truth::kFalse && (!only_hallucinated || v.hallucinated != 0);
    } catch (const Error&) {
    }
  }
  EditedResponse out;
  std::vector<std::string> sentences(p.size());
  for (size_t i = 0; i < p.size(); ++i) sentences[i] = p.sentence(i);
  for (size_t i = 0; i < p.size(); ++i) {
    if (!wrong[i]) continue;
    const std::string before = plain_words(sentences[i]);
    double best_cost = 1e18;
    const Candidate* best = nullptr;
    for (const Candidate& c : candidates) {
      const std::string w = plain_words(c.text);
      if (said.count(w)) continue;
      double cost = double(word_edit_distance(before, w));
      if (c.object >= 0 && (named >> c.object & 1u)) cost += 1.0;
      if (cost < best_cost) {
        best_cost = cost;
        best = &c;
      }
    }
    if (!best) continue;  // every true sentence is already said: leave it (the judge still ranks the pair)
    said.insert(plain_words(best->text));
    if (best->object >= 0) named |= 1u << best->object;
    out.edits.push_back({int64_t(i), sentences[i], best->text, "correct"});
    sentences[i] = best->text;
  }
  // Rebuild from the end so earlier spans stay valid.
  out.text = text;
  for (size_t k = out.edits.size(); k-- > 0;) {
    const SentenceSpan& s = p.spans[size_t(out.edits[k].sentence)];
    out.text = out.text.substr(0, s.begin) + out.edits[k].after + out.text.substr(s.end);
  }
  return out;
}

std::string unmentioned_object_sentence(const world::Verifier& verifier, const Scene& scene, const std::string& text,
                                        const std::string& like) {
  std::vector<world::Verdict> verdicts;
  for (const SentenceSpan& s : sentence_spans(text)) {
    try {
      verdicts.push_back(verifier.verify(scene, text.substr(s.begin, s.end - s.begin)));
    } catch (const Error&) {  // an unverifiable sentence mentions nothing
    }
  }
  const double now = mention_recall(scene, verdicts);
  const std::string target = plain_words(like);
  const std::string opening = first_words(target, 3);
  std::string best;
  int64_t best_cost = 0;
  for (const Candidate& c : grammar_candidates(scene)) {
    if (c.object < 0 || first_words(plain_words(c.text), 3) != opening) continue;
    verdicts.push_back(verifier.verify(scene, c.text));
    const bool adds = mention_recall(scene, verdicts) > now + 1e-12;
    verdicts.pop_back();
    if (!adds) continue;
    const int64_t cost = word_edit_distance(target, plain_words(c.text));
    if (best.empty() || cost < best_cost) {
      best = c.text;
      best_cost = cost;
    }
  }
  return best;
}

std::string opposite_yes_no(const std::string& answer) {
  const size_t b = answer.find_first_not_of(" \t\n");
  if (b == std::string::npos) return "";
  const auto starts = [&](const char* w, size_t n) {
    if (answer.size() < b + n) return false;
    for (size_t i = 0; i < n; ++i)
      if (std::tolower(static_cast<unsigned char>(answer[b + i])) != w[i]) return false;
    return answer.size() == b + n || !std::isalpha(static_cast<unsigned char>(answer[b + n]));
  };
  const bool upper = std::isupper(static_cast<unsigned char>(answer[b]));
  if (starts("yes", 3)) return answer.substr(0, b) + (upper ? "No" : "no") + answer.substr(b + 3);
  if (starts("no", 2)) return answer.substr(0, b) + (upper ? "Yes" : "yes") + answer.substr(b + 2);
  return "";
}

const std::vector<std::string>& injected_error_kinds() {
  static const std::vector<std::string> kinds = {"add_object", "delete", "color", "shape", "size", "position", "count"};
  return kinds;
}

bool inject_error(const world::Verifier& verifier, const Scene& scene, const std::string& text,
                  const world::ShapeStats& stats, std::mt19937_64& rng, EditedResponse& out, const std::string& kind) {
  const auto& kinds = injected_error_kinds();
  if (!kind.empty() && std::find(kinds.begin(), kinds.end(), kind) == kinds.end())
    fail("inject_error: unknown kind '", kind, "' (add_object, delete, color, shape, size, position, count)");
  const Pieces p(text);
  if (p.size() == 0) return false;
  // The response's object sentences (object, style) and its object count sentence.
  struct Stated {
    size_t sentence;
    int object, style;
  };
  std::vector<Stated> stated;
  int64_t count_at = -1;
  int count_form = 0;
  const int n_objects = int(scene.objects.size());
  for (size_t i = 0; i < p.size(); ++i) {
    const std::string s = p.sentence(i);
    int o = -1, k = 0;
    if (object_sentence_of(scene, s, o, k)) stated.push_back({i, o, k});
    for (int form = 0; form < 2; ++form)
      if (s == world::object_count_sentence(n_objects, form)) {
        count_at = int64_t(i);
        count_form = form;
      }
  }
  std::vector<bool> present(world::kNumShapes, false);
  for (const Object& o : scene.objects) present[size_t(o.shape)] = true;

  auto try_kind = [&](const std::string& k) -> bool {
    out = EditedResponse{};
    if (k == "add_object") {
      // An absent shape, drawn by co-occurrence with the present ones (a small floor keeps every
      // absent shape possible when the statistics give it nothing).
      std::vector<double> w(world::kNumShapes, 0.0);
      double total = 0;
      for (int b = 0; b < world::kNumShapes; ++b) {
        if (present[size_t(b)]) continue;
        w[size_t(b)] = 1e-3;
        for (int a = 0; a < world::kNumShapes; ++a)
          if (present[size_t(a)]) w[size_t(b)] += stats.cooccur[size_t(a)][size_t(b)];
        total += w[size_t(b)];
      }
      if (total <= 0 || n_objects == 0) return false;
      const int shape = int(std::discrete_distribution<int>(w.begin(), w.end())(rng));
      Object o = scene.objects[draw(rng, size_t(n_objects))];
      o.shape = world::Shape(shape);
      o.occluded = false;
      o.color = scene.objects[draw(rng, size_t(n_objects))].color;
      o.cell = int(draw(rng, world::kNumCells));
      const int style = stated.empty() ? 0 : stated[draw(rng, stated.size())].style;
      const std::string s = world::object_sentence(o, style);
      if (!is_false(verifier, scene, s)) return false;
      const int64_t after = int64_t(draw(rng, p.size() + 1)) - 1;
      out.text = insert_sentence(p, after, s);
      out.edits.push_back({after + 1, "", s, k});
      return true;
    }
    if (k == "delete") {
      if (stated.empty() || p.size() < 2) return false;
      const Stated& d = stated[draw(rng, stated.size())];
      out.text = replace_sentence(p, d.sentence, "");
      out.edits.push_back({int64_t(d.sentence), p.sentence(d.sentence), "", k});
      return true;
    }
    if (k == "count") {
      if (count_at < 0) return false;
      const int wrong = n_objects > 1 && std::bernoulli_distribution(0.5)(rng) ? n_objects - 1 : n_objects + 1;
      const std::string s = world::object_count_sentence(wrong, count_form);
      if (!is_false(verifier, scene, s)) return false;
      out.text = replace_sentence(p, size_t(count_at), s);
      out.edits.push_back({count_at, p.sentence(size_t(count_at)), s, k});
      return true;
    }
    // An attribute of one stated object, changed to each other value in a random order until the
    // sentence is false (a change can make it true of another object).
    if (stated.empty()) return false;
    const Stated& t = stated[draw(rng, stated.size())];
    const Object& o = scene.objects[size_t(t.object)];
    int values = 0;
    if (k == "color") values = world::kNumColors;
    else if (k == "shape") values = world::kNumShapes;
    else if (k == "size") values = world::kNumSizes;
    else values = world::kNumCells;
    std::vector<int> order(static_cast<size_t>(values));
    for (int v = 0; v < values; ++v) order[size_t(v)] = v;
    std::shuffle(order.begin(), order.end(), rng);
    for (int v : order) {
      Object m = o;
      if (k == "color") m.color = world::Color(v);
      else if (k == "shape") m.shape = world::Shape(v);
      else if (k == "size") m.size = world::Size(v);
      else m.cell = v;
      const std::string s = world::object_sentence(m, t.style);
      if (s == p.sentence(t.sentence) || !is_false(verifier, scene, s)) continue;
      out.text = replace_sentence(p, t.sentence, s);
      out.edits.push_back({int64_t(t.sentence), p.sentence(t.sentence), s, k});
      return true;
    }
    return false;
  };

  if (!kind.empty()) return try_kind(kind);
  std::vector<std::string> order = kinds;
  std::shuffle(order.begin(), order.end(), rng);
  for (const auto& k : order)
    if (try_kind(k)) return true;
  return false;
}

}  // namespace mmb
