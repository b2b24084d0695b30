// Tests of the verifier: hand-made cases, every ground-truth sentence of every task true over
// thousands of scenes, systematically perturbed sentences false, answers, bad input.
#include <gtest/gtest.h>

#include <cctype>
#include <cstdio>

#include "mmb/error.h"
#include "mmb/verifier.h"
#include "mmb/world_tasks.h"
#include "world_test_util.h"

using namespace mmb::world;

using mmb::testing::hand_scene;

namespace {

const Verifier& verifier() {
  static const Verifier v;
  return v;
}

Truth truth(const std::string& sentence, const std::string& expected = "") {
  return verifier().verify(hand_scene(), sentence, expected).truth;
}

// Replaces the first whole-word occurrence of `from` (any case of its first letter).
bool replace_word(std::string& s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; pos + from.size() <= s.size(); ++pos) {
    bool same = true;
    for (size_t k = 0; k < from.size() && same; ++k)
      same = std::tolower(static_cast<unsigned char>(s[pos + k])) == from[k];
    if (!same) continue;
    bool left = pos == 0 || !std::isalpha(static_cast<unsigned char>(s[pos - 1]));
    bool right = pos + from.size() == s.size() ||
                 !std::isalpha(static_cast<unsigned char>(s[pos + from.size()]));
    if (left && right) {
      s = s.substr(0, pos) + to + s.substr(pos + from.size());
      return true;
    }
  }
  return false;
}

const char* const kNumbers[] = {"zero", "one", "two", "three", "four", "five",
                                "six",  "seven", "eight", "nine", "ten"};

}  // namespace

TEST(Verifier, HandMadeCases) {
  EXPECT_EQ(truth("There is a large red circle at the top left."), Truth::kTrue);
  EXPECT_EQ(truth("there is a large red circle at the top left, but I'm not sure"), Truth::kTrue);
  EXPECT_EQ(truth("THERE IS A LARGE RED CIRCLE AT THE TOP LEFT WITH TOTAL CERTAINTY!!!"),
            Truth::kTrue);
  EXPECT_EQ(truth("So, a small yellow star is in the center, and it needs checking."),
            Truth::kTrue);
  EXPECT_EQ(truth("At the top left, there is a large red circle."), Truth::kTrue);
  EXPECT_EQ(truth("I can see a red circle and I believe this is right."), Truth::kTrue);
  EXPECT_EQ(truth("The image shows a star."), Truth::kTrue);
  EXPECT_EQ(truth("There is a blue circle."), Truth::kFalse);
  EXPECT_EQ(truth("There is a large red circle at the top right."), Truth::kFalse);
  EXPECT_EQ(truth("There is no moon."), Truth::kTrue);
  EXPECT_EQ(truth("There are no stars."), Truth::kFalse);
  EXPECT_EQ(truth("There is one star."), Truth::kTrue);
  EXPECT_EQ(truth("There are two circles."), Truth::kFalse);
  EXPECT_EQ(truth("There are three objects in the image."), Truth::kTrue);
  EXPECT_EQ(truth("The image shows four objects."), Truth::kFalse);
  EXPECT_EQ(truth("There is one yellow object."), Truth::kTrue);
  EXPECT_EQ(truth("The circle is red."), Truth::kTrue);
  EXPECT_EQ(truth("The circle is not red."), Truth::kFalse);
  EXPECT_EQ(truth("The red object is a circle."), Truth::kTrue);
  EXPECT_EQ(truth("The star is large."), Truth::kFalse);
  EXPECT_EQ(truth("The star is in the middle."), Truth::kTrue);
  EXPECT_EQ(truth("The circle is to the left of the star."), Truth::kTrue);
  EXPECT_EQ(truth("The star is above the circle."), Truth::kFalse);
  EXPECT_EQ(truth("The star is below the circle."), Truth::kTrue);
  EXPECT_EQ(truth("The star is not to the right of the red circle."), Truth::kFalse);
  EXPECT_EQ(truth("The moon is white."), Truth::kFalse);
  EXPECT_EQ(truth("There is a grey box at the bottom right."), Truth::kTrue);
  EXPECT_EQ(truth("There is a grey box at the top."), Truth::kFalse);
  EXPECT_EQ(truth("An object is hidden behind the grey box."), Truth::kTrue);
  EXPECT_EQ(truth("The grey box hides an object."), Truth::kTrue);
  EXPECT_EQ(truth("The object behind the grey box is blue."), Truth::kUnverifiable);
  EXPECT_EQ(truth("The hidden object is a square."), Truth::kUnverifiable);
  EXPECT_EQ(truth("The object behind the grey box is at the bottom right."), Truth::kTrue);
  EXPECT_EQ(truth("Two plus one is three."), Truth::kTrue);
  EXPECT_EQ(truth("Two plus two is five."), Truth::kFalse);
  EXPECT_EQ(truth("Two is more than one."), Truth::kTrue);
  EXPECT_EQ(truth("One is equal to two."), Truth::kFalse);
  EXPECT_EQ(truth("So, the answer is three.", "three"), Truth::kTrue);
  EXPECT_EQ(truth("So, the answer is two.", "three"), Truth::kFalse);
  EXPECT_EQ(truth("So, the answer is two."), Truth::kUnverifiable);
  EXPECT_EQ(truth("Yes.", "yes"), Truth::kTrue);
  EXPECT_EQ(truth("I don't know.", "I don't know"), Truth::kTrue);
  EXPECT_EQ(truth("There are two circles and one star."), Truth::kFalse);
  EXPECT_EQ(truth("There is one circle and one star."), Truth::kTrue);
  EXPECT_EQ(truth("I see a red circle at the top left and a small yellow star in the center."),
            Truth::kTrue);
  EXPECT_EQ(truth("There is a red circle and a moon."), Truth::kFalse);
  EXPECT_EQ(truth("The sky is blue."), Truth::kUnverifiable);
  EXPECT_EQ(truth("Purple elephants dance."), Truth::kUnverifiable);
}

TEST(Verifier, MentionsAndHallucinations) {
  Scene s = hand_scene();
  Verdict v = verifier().verify(s, "There is a moon at the top.");
  EXPECT_EQ(v.truth, Truth::kFalse);
  EXPECT_EQ(v.mentioned_names(), std::vector<std::string>{"moon"});
  EXPECT_EQ(v.hallucinated_names(), std::vector<std::string>{"moon"});
  v = verifier().verify(s, "There is a blue star.");
  EXPECT_EQ(v.truth, Truth::kFalse);
  EXPECT_EQ(v.mentioned_names(), std::vector<std::string>{"star"});
  EXPECT_TRUE(v.hallucinated_names().empty());  // wrong colour, but stars exist
  v = verifier().verify(s, "There is a red circle, a star and a moon.");
  EXPECT_EQ(v.truth, Truth::kFalse);
  EXPECT_EQ(v.mentioned_names(), (std::vector<std::string>{"circle", "star", "moon"}));
  EXPECT_EQ(v.hallucinated_names(), std::vector<std::string>{"moon"});
  v = verifier().verify(s, "There is no moon.");
  EXPECT_EQ(v.mentioned, 0u);
  v = verifier().verify(s, "There is a dog.");
  EXPECT_EQ(v.truth, Truth::kFalse);
  EXPECT_EQ(v.hallucinated_names(), std::vector<std::string>{"dog"});
  v = verifier().verify(s, "The heart is to the left of the star.");
  EXPECT_EQ(v.truth, Truth::kFalse);
  EXPECT_EQ(v.hallucinated_names(), std::vector<std::string>{"heart"});
  v = verifier().verify(s, "The circle is red.");
  EXPECT_EQ(v.referents, 1u);
  EXPECT_EQ(v.kind, ClaimKind::kAttribute);
  EXPECT_EQ(v.to_json()["truth"], "true");
  // The hidden square is in the scene: mentioning a square is not a hallucination.
  v = verifier().verify(s, "There is a square.");
  EXPECT_EQ(v.truth, Truth::kTrue);
  EXPECT_EQ(v.hallucinated, 0u);
}

TEST(Verifier, AmbiguousReference) {
  Scene s = hand_scene();
  s.objects[1].shape = Shape::kCircle;  // two circles now: red and yellow
  EXPECT_EQ(verifier().verify(s, "The circle is red.").truth, Truth::kUnverifiable);
  EXPECT_EQ(verifier().verify(s, "The circles are red.").truth, Truth::kFalse);
  EXPECT_EQ(verifier().verify(s, "The yellow circle is small.").truth, Truth::kTrue);
}

TEST(Verifier, CheckAnswer) {
  const Verifier& v = verifier();
  EXPECT_EQ(v.check_answer("Yes, there is a star.", "yes").truth, Truth::kTrue);
  EXPECT_EQ(v.check_answer("No.", "yes").truth, Truth::kFalse);
  AnswerCheck idk = v.check_answer("I don't know.", "yes");
  EXPECT_EQ(idk.truth, Truth::kFalse);
  EXPECT_TRUE(idk.is_idk);
  EXPECT_EQ(v.check_answer("i do not know", "I don't know").truth, Truth::kTrue);
  EXPECT_EQ(v.check_answer("B", "B").truth, Truth::kTrue);
  EXPECT_EQ(v.check_answer("(c)", "B").truth, Truth::kFalse);
  EXPECT_EQ(v.check_answer("A.", "A").truth, Truth::kTrue);
  EXPECT_EQ(v.check_answer("The answer is C.", "C").answer, "C");
  EXPECT_EQ(v.check_answer("At the top left.", "top left").truth, Truth::kTrue);
  EXPECT_EQ(v.check_answer("top left", "top left").truth, Truth::kTrue);
  EXPECT_EQ(v.check_answer("On the left.", "top left").truth, Truth::kFalse);
  EXPECT_EQ(v.check_answer("A circle.", "circle").truth, Truth::kTrue);
  EXPECT_EQ(v.check_answer("Three.", "three").truth, Truth::kTrue);
  EXPECT_EQ(v.check_answer("3", "three").truth, Truth::kTrue);
  EXPECT_EQ(v.check_answer("No.", "zero").truth, Truth::kTrue);
  EXPECT_EQ(v.check_answer("Red, but I'm not sure.", "red").truth, Truth::kTrue);
  EXPECT_EQ(v.check_answer("There are two circles. So, the answer is two.", "two").truth,
            Truth::kTrue);
  EXPECT_EQ(v.check_answer("blah blah", "red").truth, Truth::kUnverifiable);
}

TEST(Verifier, BadInputGivesClearErrors) {
  Scene s = hand_scene();
  for (const char* empty : {"", "   ", " .,!? "}) {
    try {
      verifier().verify(s, empty);
      ADD_FAILURE() << "no error for '" << empty << "'";
    } catch (const mmb::Error& e) {
      EXPECT_NE(std::string(e.what()).find("empty sentence"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(verifier().check_answer("Yes.", ""), mmb::Error);
  EXPECT_THROW(verifier().check_answer("Yes.", "maybe so"), mmb::Error);
  std::string long_sentence;
  for (int i = 0; i < 500; ++i) long_sentence += "very ";
  EXPECT_EQ(verifier().verify(s, long_sentence).truth, Truth::kUnverifiable);
}

TEST(Verifier, CustomHedge) {
  Verifier v;
  Scene s = hand_scene();
  EXPECT_EQ(v.verify(s, "There is a star, as far as I can tell.").truth, Truth::kUnverifiable);
  v.add_hedge("as far as I can tell");
  EXPECT_EQ(v.verify(s, "There is a star, as far as I can tell.").truth, Truth::kTrue);
}

// The Done-when of the world: every ground-truth sentence of every task verifies true, and
// perturbed ones (colour, shape, position, count, added object, wrong answer) verify false.
TEST(VerifierWorld, GroundTruthTrueAndPerturbationsFalse) {
  WorldConfig c;
  std::vector<Scene> train;
  for (int i = 0; i < 1000; ++i) train.push_back(sample_scene(c, 21, Split::kTrain, i));
  ShapeStats st = shape_stats(train);
  const Verifier& v = verifier();
  int64_t checked = 0, perturbed = 0;
  for (int i = 0; i < 2000; ++i) {
    Scene s = sample_scene(c, 21, Split(i % kNumSplits), i);
    SceneTasks t = make_tasks(s, c, st, 21);
    auto expect = [&](const std::string& sentence, Truth want, const std::string& expected = "") {
      Verdict r = v.verify(s, sentence, expected);
      EXPECT_EQ(r.truth, want) << s.id << ": '" << sentence << "' (" << r.reason << ")";
      (want == Truth::kTrue ? checked : perturbed)++;
    };
    std::array<bool, kNumCells> occupied{};
    std::array<bool, kNumShapes> present{};
    for (const Object& o : s.objects) {
      occupied[o.cell] = true;
      present[int(o.shape)] = true;
    }
    for (const std::string& d : t.description) {
      expect(d, Truth::kTrue);
      // Perturb the object sentences: find the object by its position phrase.
      for (const Object& o : s.objects) {
        if (o.occluded) continue;
        std::string np = std::string(size_name(o.size)) + " " + color_name(o.color) + " " +
                         shape_name(o.shape);
        if (d.find(np) == std::string::npos) continue;
        std::string lower = d;
        for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
        // "at the top" is a prefix of "at the top left": match the phrase with what follows.
        std::string phrase = cell_phrase(o.cell);
        size_t at = lower.find(phrase + ".");
        if (at == std::string::npos) at = lower.find(phrase + ",");
        if (at == std::string::npos) continue;
        std::string w = d;
        replace_word(w, color_name(o.color), color_name(Color((int(o.color) + 1) % kNumColors)));
        expect(w, Truth::kFalse);
        w = d;
        replace_word(w, shape_name(o.shape), shape_name(Shape((int(o.shape) + 3) % kNumShapes)));
        expect(w, Truth::kFalse);
        w = d;
        replace_word(w, size_name(o.size), size_name(Size((int(o.size) + 1) % kNumSizes)));
        expect(w, Truth::kFalse);
        for (int cell = 0; cell < kNumCells; ++cell) {
          if (occupied[cell]) continue;
          w = lower;
          w.replace(at, phrase.size(), cell_phrase(cell));
          expect(w, Truth::kFalse);
          break;
        }
      }
      for (int n = 1; n <= kNumCells; ++n) {  // counts: "There are four objects" → five
        std::string w = d;
        if (replace_word(w, kNumbers[n], kNumbers[n + 1])) {
          expect(w, Truth::kFalse);
          break;
        }
      }
    }
    // An added object in an empty cell: false, and its kind hallucinated when absent.
    for (int cell = 0; cell < kNumCells; ++cell) {
      if (occupied[cell]) continue;
      int shape = (i * 7) % kNumShapes;
      std::string added = std::string("There is a small red ") + shape_name(Shape(shape)) + " " +
                          cell_phrase(cell) + ".";
      Verdict r = v.verify(s, added);
      EXPECT_EQ(r.truth, Truth::kFalse) << added;
      EXPECT_EQ(r.hallucinated != 0, !present[shape]) << added;
      perturbed++;
      break;
    }
    for (const ReasoningChain& r : t.reasoning) {
      for (const auto& step : r.perception) expect(step, Truth::kTrue);
      for (const auto& step : r.reasoning) expect(step, Truth::kTrue);
      expect(r.final_step, Truth::kTrue, r.canonical);
      EXPECT_EQ(v.check_answer(r.text(), r.canonical).truth, Truth::kTrue) << r.text();
      for (const auto& step : r.perception) {  // "There are two circles." → three
        std::string w = step;
        for (int n = 0; n < 10; ++n)
          if (replace_word(w, kNumbers[n], kNumbers[n + 1])) break;
        if (replace_word(w, "no", "three") || w != step) expect(w, Truth::kFalse);
      }
      for (const auto& step : r.reasoning) {
        std::string w = step;
        if (replace_word(w, "is not", "is") || replace_word(w, "is", "is not")) {
          expect(w, Truth::kFalse);
        }
      }
      std::string wrong = r.canonical == "yes" ? "no" : r.canonical == "no" ? "yes" : "ten";
      expect("So, the answer is " + wrong + ".", Truth::kFalse, r.canonical);
    }
    for (const std::vector<QA>* list : {&t.qa, &t.idk}) {
      for (const QA& q : *list) {
        AnswerCheck a = v.check_answer(q.answer, q.canonical);
        EXPECT_EQ(a.truth, Truth::kTrue) << s.id << ": " << q.question << " " << q.answer;
        EXPECT_EQ(a.answer, q.canonical);
        EXPECT_EQ(a.is_idk, !q.answerable);
        checked++;
        if (q.answerable) {
          EXPECT_EQ(v.check_answer("I don't know.", q.canonical).truth, Truth::kFalse);
          perturbed++;
        }
      }
    }
    for (const McQuestion& m : t.mc) {
      std::string right(1, char('A' + m.answer)), wrong(1, char('A' + (m.answer + 1) % 5));
      EXPECT_EQ(v.check_answer(right + ".", right).truth, Truth::kTrue);
      EXPECT_EQ(v.check_answer(wrong, right).truth, Truth::kFalse);
      EXPECT_EQ(m.options[m.answer], v.check_answer(m.options[m.answer], m.options[m.answer]).answer);
    }
  }
  std::printf("[          ] %lld ground-truth checks, %lld perturbed checks\n",
              static_cast<long long>(checked), static_cast<long long>(perturbed));
  EXPECT_GT(checked, 30000);
  EXPECT_GT(perturbed, 20000);
}

namespace {

// An oracle for the generated questions, independent of the task generators: it reads the
// reference out of the question text (colour, size, shape, position words) and computes the
// answer from the scene graph.
struct Reference {
  int color = -1, size = -1, shape = -1, cell = -1;
  bool matches(const Object& o) const {
    return (color < 0 || int(o.color) == color) && (size < 0 || int(o.size) == size) &&
           (shape < 0 || int(o.shape) == shape) && (cell < 0 || o.cell == cell);
  }
};

bool has_word(const std::string& text, const std::string& word) {
  std::string t = text;
  return replace_word(t, word, word);
}

Reference parse_reference(std::string q) {
  for (auto& ch : q) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  Reference r;
  size_t best = 0;
  for (int c = 0; c < kNumCells; ++c) {  // the longest position phrase ("at the top left" > "at the top")
    const std::string p = cell_phrase(c);
    if (p.size() > best && q.find(p) != std::string::npos) best = p.size(), r.cell = c;
  }
  // A word kind named more than once lists choices ("small, medium or large?"), not the reference.
  auto pick = [&](int n, auto&& named) {
    int found = -1, count = 0;
    for (int k = 0; k < n; ++k)
      if (named(k)) found = k, count++;
    return count == 1 ? found : -1;
  };
  r.color = pick(kNumColors, [&](int k) { return has_word(q, color_name(Color(k))); });
  r.size = pick(kNumSizes, [&](int k) { return has_word(q, size_name(Size(k))); });
  r.shape =
      pick(kNumShapes, [&](int k) { return has_word(q, shape_name(Shape(k))) || has_word(q, shape_plural(Shape(k))); });
  return r;
}

std::string lower(std::string s) {
  for (auto& ch : s) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

}  // namespace

TEST(VerifierWorld, QuestionAnswersAgreeWithAnIndependentOracle) {
  WorldConfig c;
  std::vector<Scene> train;
  for (int i = 0; i < 500; ++i) train.push_back(sample_scene(c, 33, Split::kTrain, i));
  ShapeStats st = shape_stats(train);
  const Verifier& v = verifier();
  std::map<std::string, int64_t> checked;
  for (int i = 0; i < 1500; ++i) {
    Scene s = sample_scene(c, 33, Split(i % kNumSplits), i);
    SceneTasks t = make_tasks(s, c, st, 33);
    auto referents = [&](const Reference& r) {
      std::vector<const Object*> out;
      for (const Object& o : s.objects)
        if (!o.occluded && r.matches(o)) out.push_back(&o);
      return out;
    };
    for (const QA& q : t.qa) {
      SCOPED_TRACE(s.id + ": " + q.question + " -> " + q.answer);
      const Reference r = parse_reference(q.question);
      const auto objs = referents(r);
      const std::string& a = q.canonical;
      if (!q.answerable) {  // the honest answer is "I don't know", for a reason the scene shows
        EXPECT_EQ(a, "I don't know");
        bool hidden = false;
        for (const Object& o : s.objects) hidden = hidden || o.occluded;
        if (q.category == "occluded") EXPECT_TRUE(hidden) << "nothing is hidden";
        else if (q.category == "unknown_kind") EXPECT_EQ(r.shape, -1) << "asks about a kind the world has";
        else if (q.category == "nonvisual") EXPECT_FALSE(objs.empty()) << "no visible referent";
        else ADD_FAILURE() << "unknown category " << q.category;
        checked["idk/" + q.category]++;
        continue;
      }
      if (q.category == "existence") {
        bool any = false;  // hidden objects count: the scene has them
        for (const Object& o : s.objects) any = any || r.matches(o);
        EXPECT_EQ(a, any ? "yes" : "no");
      } else if (q.category == "count") {
        int n = 0;
        for (const Object& o : s.objects) n += r.matches(o);
        EXPECT_EQ(a, kNumbers[n]);
      } else if (q.category == "relation") {
        // "Is <a> above <b>?" -> "<a> is above <b>." judged by the verifier against the scene.
        std::string d = q.question.substr(3, q.question.size() - 4);
        for (const char* rel : {"to the left of", "to the right of", "above", "below"}) {
          const size_t at = d.find(std::string(" ") + rel + " ");
          if (at != std::string::npos) {
            d = d.substr(0, at) + " is" + d.substr(at) + ".";
            break;
          }
        }
        EXPECT_EQ(v.verify(s, d).truth, a == "yes" ? Truth::kTrue : Truth::kFalse) << d;
      } else {
        ASSERT_FALSE(objs.empty()) << "no visible referent";
        for (const Object* o : objs) {
          if (q.category == "color") EXPECT_EQ(a, color_name(o->color));
          else if (q.category == "shape") EXPECT_EQ(a, shape_name(o->shape));
          else if (q.category == "size") EXPECT_EQ(a, size_name(o->size));
          else if (q.category == "position") EXPECT_EQ(a, cell_name(o->cell));
          else ADD_FAILURE() << "unknown category " << q.category;
        }
      }
      checked[q.category]++;
    }
    for (const McQuestion& m : t.mc) {
      SCOPED_TRACE(s.id + ": " + m.question + " -> " + m.options[m.answer]);
      const Reference r = parse_reference(m.question);
      const std::string right = lower(m.options[m.answer]);
      int n = 0;
      for (const Object& o : s.objects) n += r.matches(o);
      const auto objs = referents(r);
      int truthful = 0;  // options that are true of the scene: exactly the keyed one
      for (const auto& opt : m.options) {
        const std::string o = lower(opt);
        bool is_true = false;
        if (m.category == "count") {
          is_true = o == kNumbers[n] || o == std::to_string(n);
        } else {
          ASSERT_FALSE(objs.empty()) << "no visible referent";
          for (const Object* ob : objs)
            is_true = is_true || (m.category == "color" && o == color_name(ob->color)) ||
                      (m.category == "shape" &&
                       (o == shape_name(ob->shape) || o == std::string("a ") + shape_name(ob->shape) ||
                        o == std::string("an ") + shape_name(ob->shape))) ||
                      (m.category == "position" && o == cell_name(ob->cell)) ||
                      (m.category == "size" && o == size_name(ob->size));
        }
        truthful += is_true;
        if (o == right) {
          EXPECT_TRUE(is_true) << "the keyed option is false of the scene";
        }
      }
      EXPECT_EQ(truthful, 1) << "options: " << m.options[0] << " / " << m.options[1] << " / " << m.options[2] << " / "
                             << m.options[3] << " / " << m.options[4];
      checked["mc/" + m.category]++;
    }
  }
  for (const auto& [k, n] : checked)
    std::printf("[          ] %-14s %lld answers checked against the scene\n", k.c_str(), static_cast<long long>(n));
  for (const char* k : {"existence", "count", "relation", "color", "shape", "size", "position"})
    EXPECT_GT(checked[k], 50) << k;
}
