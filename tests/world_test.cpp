// Tests of the world: scene sampling against the configured priors, rendering, scene files and
// their errors, POPE balance and adversarial negatives, byte-identical generation.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <filesystem>
#include <map>
#include <set>

#include "mmb/atomic_file.h"
#include "mmb/error.h"
#include "mmb/world.h"
#include "mmb/world_tasks.h"

namespace fs = std::filesystem;
using namespace mmb::world;

namespace {

std::string temp_dir(const std::string& name) {
  std::string dir = std::string(MMB_BINARY_DIR) + "/test_tmp/" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::vector<Scene> sample_many(const WorldConfig& c, uint64_t seed, Split split, int n) {
  std::vector<Scene> out;
  for (int i = 0; i < n; ++i) out.push_back(sample_scene(c, seed, split, i));
  return out;
}

template <typename F>
void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected mmb::Error containing '" << needle << "'";
  } catch (const mmb::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(WorldScene, DeterministicAndIndependentOfOrder) {
  WorldConfig c;
  Scene a = sample_scene(c, 42, Split::kTrain, 17);
  sample_scene(c, 42, Split::kTrain, 3);  // another scene in between changes nothing
  Scene b = sample_scene(c, 42, Split::kTrain, 17);
  EXPECT_EQ(scene_to_json(a).dump(), scene_to_json(b).dump());
  Scene other = sample_scene(c, 43, Split::kTrain, 17);
  EXPECT_NE(scene_to_json(a).dump(), scene_to_json(other).dump());
  EXPECT_EQ(a.id, "train_000017");
}

TEST(WorldScene, StructureIsValid) {
  WorldConfig c;
  for (const Scene& s : sample_many(c, 1, Split::kVal, 500)) {
    ASSERT_GE(int(s.objects.size()), c.min_objects);
    ASSERT_LE(int(s.objects.size()), c.max_objects);
    std::set<int> cells;
    for (const Object& o : s.objects) {
      EXPECT_TRUE(cells.insert(o.cell).second) << s.id << ": two objects in one cell";
      EXPECT_GE(o.x - o.radius, 0.0f);
      EXPECT_LE(o.x + o.radius, float(c.image_size));
    }
    EXPECT_LE(s.occluders.size(), 1u);
  }
}

TEST(WorldScene, StatisticsMatchTheKnobs) {
  WorldConfig c;
  const int n = 20000;
  for (Split split : {Split::kTrain, Split::kShifted}) {
    const Priors& p = split == Split::kTrain ? c.priors : c.shifted_priors;
    auto scenes = sample_many(c, 7, split, n);
    ShapeStats st = shape_stats(scenes);
    for (const ShapePair& pair : kCooccurringPairs)
      EXPECT_NEAR(st.cooccur[int(pair.first)][int(pair.second)], p.cooccur_prob, 0.03)
          << split_name(split) << " " << shape_name(pair.first) << "->" << shape_name(pair.second);
    std::array<double, kNumShapes> objects{}, typical{};
    int occluded = 0;
    for (const Scene& s : scenes) {
      occluded += s.has_occluder();
      for (const Object& o : s.objects) {
        objects[int(o.shape)]++;
        typical[int(o.shape)] += int(o.color) == kTypicalColor[int(o.shape)];
      }
    }
    for (int k = 0; k < kNumShapes; ++k) {
      if (kTypicalColor[k] != kNoColor && objects[k] > 300) {
        EXPECT_NEAR(typical[k] / objects[k], p.typical_color_prob, 0.035) << shape_name(Shape(k));
      }
    }
    EXPECT_NEAR(double(occluded) / n, c.occlusion_prob, 0.015);
    // Neutral shapes (in no pair) keep their Zipf ratio: circle is rank 0, square rank 1.
    double ratio = objects[int(Shape::kCircle)] / objects[int(Shape::kSquare)];
    double want = std::pow(2.0, p.shape_zipf >= 0 ? p.shape_zipf : 0);
    if (p.shape_zipf >= 0) {
      EXPECT_NEAR(ratio, want, 0.12 * want);
    } else {
      EXPECT_LT(ratio, 1.0);  // reversed order: circle now rare
    }
  }
}

TEST(WorldScene, ConfigValidationNamesTheField) {
  WorldConfig c;
  c.max_objects = 12;
  expect_error([&] { validate(c); }, "max_objects");
  c = WorldConfig{};
  c.priors.cooccur_prob = 1.5;
  expect_error([&] { validate(c); }, "cooccur_prob");
  c = WorldConfig{};
  mmb::Json j = config_to_json(c);
  EXPECT_EQ(config_to_json(config_from_json(j, "test")).dump(), j.dump());
  j["image_size"] = "big";
  expect_error([&] { config_from_json(j, "world.json"); }, "image_size");
}

TEST(WorldRender, SizeDeterminismAndVisibility) {
  WorldConfig c;
  c.noise_std = 6;  // the noise is seeded too
  int seen_occluded = 0;
  for (int i = 0; i < 200; ++i) {
    Scene s = sample_scene(c, 9, Split::kTest, i);
    Scene t = s;
    mmb::Image a = render_scene(s, 9);
    mmb::Image b = render_scene(t, 9);
    ASSERT_EQ(a.width, c.image_size);
    ASSERT_EQ(a.channels, 3);
    ASSERT_EQ(a.pixels, b.pixels);
    for (const Object& o : s.objects) {
      EXPECT_GE(o.visible_fraction, 0.0f);
      EXPECT_LE(o.visible_fraction, 1.0f);
      if (o.occluded) {
        seen_occluded++;
        EXPECT_LT(o.visible_fraction, 0.01f) << s.id;
        EXPECT_EQ(o.difficulty, 1.0f);
      }
    }
  }
  EXPECT_GT(seen_occluded, 10);
}

TEST(WorldRender, ObjectColourIsDrawnAtItsCentre) {
  WorldConfig c;
  c.noise_std = 0;
  c.occlusion_prob = 0;
  c.contrast_min = 1.0;
  for (int i = 0; i < 100; ++i) {
    Scene s = sample_scene(c, 3, Split::kTrain, i);
    mmb::Image img = render_scene(s, 3);
    for (const Object& o : s.objects) {
      if (o.shape == Shape::kRing || o.shape == Shape::kMoon || o.visible_fraction < 0.999f)
        continue;  // hollow shapes and overlapped objects have no colour at the centre
      const uint8_t* px = img.at(int(o.x), int(o.y));
      auto rgb = color_rgb(o.color);
      for (int ch = 0; ch < 3; ++ch) EXPECT_NEAR(px[ch], rgb[ch], 2) << s.id << " " << shape_name(o.shape);
    }
  }
}

TEST(WorldScenesFile, RoundTripAndErrors) {
  WorldConfig c;
  std::string dir = temp_dir("scenes_file");
  std::string text;
  std::vector<Scene> scenes;
  for (int i = 0; i < 30; ++i) {
    Scene s = sample_scene(c, 5, Split::kVal, i);
    render_scene(s, 5);
    text += scene_to_json(s).dump() + "\n";
    scenes.push_back(s);
  }
  mmb::write_file_atomic(dir + "/scenes.jsonl", text);
  auto back = read_scenes(dir + "/scenes.jsonl");
  ASSERT_EQ(back.size(), scenes.size());
  std::string again;
  for (const Scene& s : back) again += scene_to_json(s).dump() + "\n";
  EXPECT_EQ(again, text);  // byte-identical round trip
  EXPECT_EQ(find_scene(back, "val_000007").index, 7);
  expect_error([&] { find_scene(back, "val_999999"); }, "val_999999");

  mmb::write_file_atomic(dir + "/bad_json.jsonl", scene_to_json(scenes[0]).dump() + "\n{oops\n");
  expect_error([&] { read_scenes(dir + "/bad_json.jsonl"); }, "bad_json.jsonl:2");
  mmb::Json broken = scene_to_json(scenes[0]);
  broken["objects"][0]["shape"] = "blob";
  mmb::write_file_atomic(dir + "/bad_shape.jsonl", "\n" + broken.dump() + "\n");
  expect_error([&] { read_scenes(dir + "/bad_shape.jsonl"); }, "bad_shape.jsonl:2");
  expect_error([&] { read_scenes(dir + "/bad_shape.jsonl"); }, "blob");
  broken = scene_to_json(scenes[0]);
  broken.erase("width");
  mmb::write_file_atomic(dir + "/missing.jsonl", broken.dump() + "\n");
  expect_error([&] { read_scenes(dir + "/missing.jsonl"); }, "width");
  expect_error([&] { read_scenes(dir + "/does_not_exist.jsonl"); }, "does_not_exist");
}

TEST(WorldPope, BalancedAndAdversarialNegativesArePartners) {
  WorldConfig c;
  ShapeStats st = shape_stats(sample_many(c, 11, Split::kTrain, 3000));
  std::map<std::string, std::array<int, 2>> totals;
  int partner_cases = 0;
  for (int i = 0; i < 2000; ++i) {
    Scene s = sample_scene(c, 11, Split::kTest, i);
    SceneTasks t = make_tasks(s, c, st, 11);
    if (s.has_occluder()) {
      EXPECT_TRUE(t.pope.empty());
      continue;
    }
    std::map<std::string, std::array<int, 2>> per;
    std::array<bool, kNumShapes> present{};
    for (const Object& o : s.objects) present[int(o.shape)] = true;
    for (const PopeQuestion& q : t.pope) {
      per[q.category][q.label]++;
      totals[q.category][q.label]++;
      EXPECT_EQ(present[int(q.shape)], q.label) << s.id << " " << q.text;
      EXPECT_EQ(q.text, std::string("Is there a ") + shape_name(q.shape) + " in the image?");
    }
    for (auto& [cat, n] : per) EXPECT_EQ(n[0], n[1]) << s.id << " " << cat;
    // When a configured partner is missing, it is what the adversarial question asks about.
    std::set<int> missing_partners;
    for (const ShapePair& p : kCooccurringPairs)
      if (present[int(p.first)] && !present[int(p.second)]) missing_partners.insert(int(p.second));
    for (const PopeQuestion& q : t.pope) {
      if (q.category != "adversarial" || q.label) continue;
      if (!missing_partners.empty()) {
        partner_cases++;
        EXPECT_TRUE(missing_partners.count(int(q.shape))) << s.id << " " << q.text;
      }
    }
  }
  EXPECT_GT(partner_cases, 30);
  for (const char* cat : {"random", "popular", "adversarial"}) {
    EXPECT_GT(totals[cat][1], 100) << cat;
    EXPECT_EQ(totals[cat][0], totals[cat][1]) << cat;
  }
}

TEST(WorldTasks, SftMixChangesTheTurnsAndNoEvaluationSet) {
  WorldConfig base, mix;
  mix.sft_qa_weights = parse_qa_weights("existence=12,count=0");
  mix.sft_idk_fraction = 0.3;
  mix.qa_turns_per_scene = 8;
  ShapeStats st = shape_stats(sample_many(base, 5, Split::kTrain, 500));
  auto share = [](const std::vector<QA>& qa, const char* category) {
    int n = 0;
    for (const QA& q : qa) n += q.category == category;
    return n;
  };
  int turns[2] = {0, 0}, existence[2] = {0, 0}, count[2] = {0, 0}, unanswerable = 0;
  for (int i = 0; i < 400; ++i) {
    Scene s = sample_scene(base, 5, Split::kTest, i);
    SceneTasks a = make_tasks(s, base, st, 5), b = make_tasks(s, mix, st, 5);
    // Every evaluation task is the same, whatever the SFT mix.
    EXPECT_EQ(a.description, b.description);
    EXPECT_EQ(a.caption, b.caption);
    ASSERT_EQ(a.pope.size(), b.pope.size());
    for (size_t k = 0; k < a.pope.size(); ++k) EXPECT_EQ(a.pope[k].text, b.pope[k].text);
    ASSERT_EQ(a.mc.size(), b.mc.size());
    for (size_t k = 0; k < a.mc.size(); ++k) EXPECT_EQ(a.mc[k].question, b.mc[k].question);
    ASSERT_EQ(a.idk.size(), b.idk.size());
    for (size_t k = 0; k < a.idk.size(); ++k) EXPECT_EQ(a.idk[k].question, b.idk[k].question);
    ASSERT_EQ(a.reasoning.size(), b.reasoning.size());
    EXPECT_EQ(b.qa.size(), 8u);
    const SceneTasks* both[2] = {&a, &b};
    for (int m = 0; m < 2; ++m) {
      for (const QA& q : both[m]->qa) (q.answerable ? turns[m] : unanswerable) += 1;
      existence[m] += share(both[m]->qa, "existence");
      count[m] += share(both[m]->qa, "count");
    }
  }
  // Default mix: existence 3 of 12.5 (scenes with an occluder have none); the new one 12 of 21.
  EXPECT_NEAR(existence[0] / double(turns[0]), 0.24 * 0.85, 0.05);
  EXPECT_NEAR(existence[1] / double(turns[1]), 12.0 / 21 * 0.85, 0.06);
  EXPECT_GT(count[0], 50);
  EXPECT_LT(count[1], count[0] / 3);  // only the fallback of scenes that refuse every other type
  EXPECT_GT(unanswerable, 400 * 8 * 0.3 * 0.8);

  // The spec names what it changes; bad specs name the problem.
  QaWeights w = parse_qa_weights("existence=9,color=0");
  EXPECT_EQ(w.weight[0], 9);
  EXPECT_EQ(w.weight[1], 0);
  EXPECT_EQ(w.weight[2], QaWeights{}.weight[2]);
  EXPECT_EQ(format_qa_weights(parse_qa_weights(format_qa_weights(mix.sft_qa_weights))),
            format_qa_weights(mix.sft_qa_weights));
  expect_error([] { parse_qa_weights("existance=9"); }, "unknown question type \"existance\"");
  expect_error([] { parse_qa_weights("existence"); }, "is not type=weight");
  expect_error([] { parse_qa_weights("existence=-1"); }, "weight of existence");
  expect_error([] { parse_qa_weights("existence=9x"); }, "weight of existence");
  WorldConfig zero;
  zero.sft_qa_weights = parse_qa_weights(
      "existence=0,color=0,shape=0,size=0,position=0,count=0,relation=0");
  expect_error([&] { validate(zero); }, "sft_qa_weights are all 0");
  mmb::Json j = config_to_json(mix);
  EXPECT_EQ(config_from_json(j, "w").sft_qa_weights.weight, mix.sft_qa_weights.weight);
  j["sft_qa_weights"]["colour"] = 1;
  expect_error([&] { config_from_json(j, "world.json"); }, "unknown question type \"colour\"");
}

namespace {

// Presence-only SFT conversations (no colours, no IDK) for the balance tests.
WorldConfig presence_only() {
  WorldConfig c;
  c.sft_qa_weights = parse_qa_weights("existence=1,color=0,shape=0,size=0,position=0,count=0,relation=0");
  c.sft_idk_fraction = 0;
  c.qa_turns_per_scene = 8;
  return c;
}

// [shape] = {no, yes} over the SFT presence questions without a colour of 1500 train scenes.
// Every balance leaves the evaluation sets as `uniform` makes them (checked here).
using PresenceAnswers = std::array<std::array<int, 2>, kNumShapes>;
PresenceAnswers presence_answers(const WorldConfig& c, const WorldConfig& uniform, const ShapeStats& st) {
  PresenceAnswers answers{};
  for (int i = 0; i < 1500; ++i) {
    Scene s = sample_scene(uniform, 5, Split::kTrain, i);
    SceneTasks a = make_tasks(s, uniform, st, 5), b = make_tasks(s, c, st, 5);
    EXPECT_EQ(a.pope.size(), b.pope.size());
    for (size_t k = 0; k < std::min(a.pope.size(), b.pope.size()); ++k) EXPECT_EQ(a.pope[k].text, b.pope[k].text);
    EXPECT_EQ(a.idk.size(), b.idk.size());
    for (size_t k = 0; k < std::min(a.idk.size(), b.idk.size()); ++k) EXPECT_EQ(a.idk[k].question, b.idk[k].question);
    for (const QA& q : b.qa) {
      if (q.category != std::string("existence")) continue;
      bool coloured = false;
      for (int col = 0; col < kNumColors; ++col)
        coloured |= q.question.find(std::string(" ") + color_name(Color(col)) + " ") != std::string::npos;
      if (coloured) continue;
      int shape = -1;
      for (int k = 0; k < kNumShapes; ++k) {
        std::string name = std::string(" ") + shape_name(Shape(k));
        size_t at = q.question.find(name);
        if (at != std::string::npos && !std::isalpha(q.question[at + name.size()])) shape = k;
      }
      EXPECT_GE(shape, 0) << q.question;
      if (shape >= 0) answers[shape][q.canonical == "yes"] += 1;
    }
  }
  return answers;
}

// The lowest and highest share of "yes" over the shapes.
std::pair<double, double> yes_rate_range(const PresenceAnswers& answers) {
  double lo = 1, hi = 0;
  for (int k = 0; k < kNumShapes; ++k) {
    const int n = answers[k][0] + answers[k][1];
    EXPECT_GT(n, 100) << shape_name(Shape(k));
    const double yes = answers[k][1] / double(std::max(n, 1));
    lo = std::min(lo, yes);
    hi = std::max(hi, yes);
  }
  return {lo, hi};
}

}  // namespace

TEST(WorldTasks, BalancedNegativesAnswerEveryShapeYesAsOftenAsNo) {
  WorldConfig uniform = presence_only(), balanced = presence_only();
  balanced.sft_balanced_negatives = 1;
  ShapeStats st = shape_stats(sample_many(uniform, 5, Split::kTrain, 2000));
  auto [lo0, hi0] = yes_rate_range(presence_answers(uniform, uniform, st));
  auto [lo1, hi1] = yes_rate_range(presence_answers(balanced, uniform, st));
  // Uniform negatives: the most frequent shape is mostly "yes", the rarest mostly "no".
  EXPECT_GT(hi0, 0.75);
  EXPECT_LT(lo0, 0.25);
  // Balanced: every shape is near one half.
  EXPECT_GT(lo1, 0.35);
  EXPECT_LT(hi1, 0.65);

  WorldConfig bad;
  bad.sft_balanced_negatives = 1.5;
  expect_error([&] { validate(bad); }, "sft_balanced_negatives");
  EXPECT_EQ(config_from_json(config_to_json(balanced), "w").sft_balanced_negatives, 1.0);
}

TEST(WorldTasks, BalancedPositivesAskAboutRareShapesMoreOften) {
  WorldConfig uniform = presence_only(), balanced = presence_only();
  balanced.sft_balanced_positives = 1;
  ShapeStats st = shape_stats(sample_many(uniform, 5, Split::kTrain, 2000));
  const PresenceAnswers a = presence_answers(uniform, uniform, st), b = presence_answers(balanced, uniform, st);
  int rarest = 0, commonest = 0;
  for (int k = 1; k < kNumShapes; ++k) {
    if (st.frequency[k] < st.frequency[rarest]) rarest = k;
    if (st.frequency[k] > st.frequency[commonest]) commonest = k;
  }
  // Weights 1 / f: the rarest shape gets far more "yes" turns, the commonest fewer; "no" turns
  // (uniform over the absent shapes) stay about as many.
  EXPECT_GT(b[rarest][1], 1.5 * a[rarest][1]) << shape_name(Shape(rarest));
  EXPECT_LT(b[commonest][1], 0.85 * a[commonest][1]) << shape_name(Shape(commonest));
  auto [lo0, hi0] = yes_rate_range(a);
  auto [lo1, hi1] = yes_rate_range(b);
  EXPECT_GT(lo1, lo0 + 0.05);
  EXPECT_LT(hi1, hi0);

  WorldConfig bad;
  bad.sft_balanced_positives = -0.1;
  expect_error([&] { validate(bad); }, "sft_balanced_positives");
  EXPECT_EQ(config_from_json(config_to_json(balanced), "w").sft_balanced_positives, 1.0);
}

TEST(WorldGenerate, ByteIdenticalWhateverTheThreads) {
  WorldConfig c;
  c.train_scenes = 20;
  c.val_scenes = 4;
  c.test_scenes = 10;
  c.shifted_scenes = 6;
  std::string a = temp_dir("gen_a"), b = temp_dir("gen_b");
  c.threads = 1;
  GenerateSummary sa = generate_world(c, 77, a, false);
  c.threads = 3;
  generate_world(c, 77, b, false);
  EXPECT_EQ(sa.scenes, 40);
  EXPECT_GT(sa.samples, 400);
  int files = 0;
  for (const auto& e : fs::recursive_directory_iterator(a)) {
    if (!e.is_regular_file()) continue;
    std::string rel = fs::relative(e.path(), a).string();
    ASSERT_TRUE(fs::exists(b + "/" + rel)) << rel;
    EXPECT_EQ(mmb::read_file(e.path().string()), mmb::read_file(b + "/" + rel)) << rel;
    files++;
  }
  EXPECT_EQ(files, 40 + 3 + 4 * 6);  // images, scenes/stats/world.json, 6 files per split
  for (const char* f : {"scenes.jsonl", "stats.json", "world.json", "train/llava.json",
                        "test/pope.jsonl", "shifted/mc.jsonl", "val/reasoning.jsonl",
                        "train/idk.jsonl", "train/captions.jsonl"})
    EXPECT_TRUE(fs::exists(a + "/" + f)) << f;
  // The files parse, and the statistics read back match the ones written.
  auto llava = mmb::Json::parse(mmb::read_file(a + "/train/llava.json"));
  ASSERT_TRUE(llava.is_array());
  EXPECT_EQ(llava[0]["conversations"][0]["value"].get<std::string>().rfind("<image>\n", 0), 0u);
  EXPECT_EQ(compute_stats(a).dump(), sa.stats.dump());
  EXPECT_FALSE(format_stats(sa.stats).empty());
  // A different seed gives a different world.
  std::string d = temp_dir("gen_d");
  c.val_scenes = c.test_scenes = c.shifted_scenes = 0;
  generate_world(c, 78, d, false);
  EXPECT_NE(mmb::read_file(a + "/train/llava.json"), mmb::read_file(d + "/train/llava.json"));
}

TEST(WorldTasks, HintedTurnsEndWithTheHintAndAreMoreOftenUnanswerable) {
  WorldConfig base, hinted;
  base.sft_idk_fraction = hinted.sft_idk_fraction = 0.01;
  hinted.sft_hint_fraction = 0.2;
  hinted.sft_hint_idk_fraction = 0.5;
  ShapeStats st = shape_stats(sample_many(base, 5, Split::kTrain, 300));
  const std::string suffix = std::string(" ") + mmb::world::kIdkHint;
  int plain = 0, plain_idk = 0, hint = 0, hint_idk = 0, same_before_first_hint = 0, before_first_hint = 0;
  for (int i = 0; i < 400; ++i) {
    Scene s = sample_scene(base, 5, Split::kTrain, i);
    SceneTasks a = make_tasks(s, base, st, 5), b = make_tasks(s, hinted, st, 5);
    ASSERT_EQ(a.qa.size(), b.qa.size());
    // The evaluation sets do not depend on the SFT turns.
    EXPECT_EQ(a.description, b.description);
    ASSERT_EQ(a.pope.size(), b.pope.size());
    for (size_t k = 0; k < a.pope.size(); ++k) EXPECT_EQ(a.pope[k].text, b.pope[k].text);
    ASSERT_EQ(a.mc.size(), b.mc.size());
    for (size_t k = 0; k < a.mc.size(); ++k) EXPECT_EQ(a.mc[k].question, b.mc[k].question);
    bool hinted_yet = false;
    for (size_t k = 0; k < b.qa.size(); ++k) {
      const QA& q = b.qa[k];
      const bool h = q.question.size() > suffix.size() &&
                     q.question.compare(q.question.size() - suffix.size(), suffix.size(), suffix) == 0;
      (h ? hint : plain) += 1;
      (h ? hint_idk : plain_idk) += !q.answerable;
      hinted_yet |= h;
      if (!hinted_yet) {  // up to the first hinted turn, the conversation is the default world's
        ++before_first_hint;
        same_before_first_hint += q.question == a.qa[k].question;
      }
    }
  }
  EXPECT_NEAR(hint / double(hint + plain), 0.2, 0.03);
  EXPECT_NEAR(hint_idk / double(hint), 0.5, 0.06);
  EXPECT_LT(plain_idk / double(plain), 0.03);
  EXPECT_EQ(same_before_first_hint, before_first_hint);
  EXPECT_GT(before_first_hint, 400);
  expect_error(
      [] {
        WorldConfig c;
        c.sft_hint_fraction = 1.5;
        validate(c);
      },
      "sft_hint_fraction");
  EXPECT_EQ(config_from_json(config_to_json(hinted), "w").sft_hint_idk_fraction, 0.5);
}

TEST(WorldGenerate, AWriteErrorIsAnErrorNotATerminate) {
  // A file-size limit makes the writer fail while the workers render the next chunk (as a full
  // disk does); the world generator must join them and throw, not std::terminate.
  const std::string dir = temp_dir("gen_full");
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim {};
    lim.rlim_cur = lim.rlim_max = 256 << 10;
    ::setrlimit(RLIMIT_FSIZE, &lim);
    WorldConfig c;
    c.train_scenes = 3000;
    c.val_scenes = c.test_scenes = c.shifted_scenes = 0;
    c.threads = 4;
    try {
      generate_world(c, 3, dir, false);
    } catch (const mmb::Error&) {
      ::_exit(42);
    }
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the generator died of signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WEXITSTATUS(status), 42) << "a write error must be thrown as mmb::Error";
  EXPECT_FALSE(fs::exists(dir + "/world.json")) << "a failed world is not marked complete";
}
