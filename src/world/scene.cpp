// Scene sampling: how many objects, which shapes (Zipf frequencies, then co-occurring pairs
// enforced), which colours (typical colour per shape), sizes, cells, exact positions, contrast,
// background and the occluder. Rendering and visibility are in render.cpp.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "mmb/error.h"
#include "mmb/world.h"
#include "rng.h"

namespace mmb::world {
namespace {

// Dark backgrounds so that every object colour (white included) stands out.
const uint8_t kBackgrounds[][3] = {{18, 18, 22}, {28, 32, 48}, {40, 28, 24}, {22, 40, 30},
                                   {44, 44, 50}, {36, 24, 44}};
constexpr int kNumBackgrounds = sizeof(kBackgrounds) / sizeof(kBackgrounds[0]);

bool in_any_pair(Shape s) {
  for (const ShapePair& p : kCooccurringPairs)
    if (p.first == s || p.second == s) return true;
  return false;
}

// Weight of each shape (index = Shape) under a Zipf law over kShapeFrequencyOrder.
std::array<double, kNumShapes> zipf_weights(double exponent) {
  std::array<double, kNumShapes> w{};
  for (int r = 0; r < kNumShapes; ++r) {
    double rank = exponent >= 0 ? r + 1 : kNumShapes - r;  // negative: the order reversed
    w[int(kShapeFrequencyOrder[r])] = std::pow(rank, -std::fabs(exponent));
  }
  return w;
}

Shape sample_neutral(Rng& rng, const std::array<double, kNumShapes>& weights) {
  std::array<double, kNumShapes> w = weights;
  for (int s = 0; s < kNumShapes; ++s)
    if (in_any_pair(Shape(s))) w[s] = 0;
  return Shape(rng.weighted(w.data(), kNumShapes));
}

// Rounds to 1/100 so that a scene survives a round trip through its JSON text unchanged.
float centi(double v) { return float(std::round(v * 100.0) / 100.0); }

bool contains(const std::vector<Shape>& shapes, Shape s) {
  return std::find(shapes.begin(), shapes.end(), s) != shapes.end();
}

// Zipf draws, then each co-occurring pair decided once per scene: if `first` is present, with
// probability cooccur_prob `second` is made present, otherwise absent. Replacements use neutral
// shapes (in no pair) so that one pair's decision never undoes another's.
std::vector<Shape> sample_shapes(Rng& rng, int n, int max_objects, const Priors& priors) {
  const auto weights = zipf_weights(priors.shape_zipf);
  std::vector<Shape> shapes(n);
  for (auto& s : shapes) s = Shape(rng.weighted(weights.data(), kNumShapes));
  for (const ShapePair& pair : kCooccurringPairs) {
    if (!contains(shapes, pair.first)) continue;
    bool want = rng.bernoulli(priors.cooccur_prob);
    if (want && !contains(shapes, pair.second)) {
      std::vector<int> neutral;
      for (int i = 0; i < int(shapes.size()); ++i)
        if (!in_any_pair(shapes[i])) neutral.push_back(i);
      if (!neutral.empty()) {
        shapes[neutral[rng.below(int(neutral.size()))]] = pair.second;
      } else if (int(shapes.size()) < max_objects) {
        shapes.push_back(pair.second);
      } else {
        std::vector<int> other;
        for (int i = 0; i < int(shapes.size()); ++i)
          if (shapes[i] != pair.first) other.push_back(i);
        if (!other.empty()) shapes[other[rng.below(int(other.size()))]] = pair.second;
      }
    } else if (!want) {
      for (auto& s : shapes)
        if (s == pair.second) s = sample_neutral(rng, weights);
    }
  }
  return shapes;
}

Color sample_color(Rng& rng, Shape shape, const Priors& priors) {
  int typical = kTypicalColor[int(shape)];
  if (typical == kNoColor) return Color(rng.below(kNumColors));
  if (rng.bernoulli(priors.typical_color_prob)) return Color(typical);
  int c = rng.below(kNumColors - 1);
  return Color(c >= typical ? c + 1 : c);
}

void check_prob(double v, const char* name) {
  if (!(v >= 0.0 && v <= 1.0)) fail("WorldConfig: ", name, " must be in [0, 1], found ", v);
}

}  // namespace

const char* const QaWeights::kNames[QaWeights::kTypes] = {
    "existence", "color", "shape", "size", "position", "count", "relation"};

namespace {
// Index of a question type in QaWeights::kNames; kTypes when unknown.
int qa_type_index(const std::string& name) {
  int k = 0;
  while (k < QaWeights::kTypes && name != QaWeights::kNames[k]) ++k;
  return k;
}
}  // namespace

QaWeights parse_qa_weights(const std::string& spec, QaWeights w) {
  size_t pos = 0;
  while (pos <= spec.size()) {
    size_t end = std::min(spec.find(',', pos), spec.size());
    std::string item = spec.substr(pos, end - pos);
    pos = end + 1;
    if (item.empty()) {
      if (end == spec.size()) break;
      fail("QA weights \"", spec, "\": empty item");
    }
    size_t eq = item.find('=');
    if (eq == std::string::npos) fail("QA weights \"", spec, "\": \"", item, "\" is not type=weight");
    std::string name = item.substr(0, eq), value = item.substr(eq + 1);
    const int k = qa_type_index(name);
    if (k == QaWeights::kTypes)
      fail("QA weights \"", spec, "\": unknown question type \"", name, "\" (types: ",
           format_qa_weights(QaWeights{}), ")");
    char* stop = nullptr;
    double v = std::strtod(value.c_str(), &stop);
    if (value.empty() || *stop != '\0' || !(v >= 0 && v <= 1e6))
      fail("QA weights \"", spec, "\": weight of ", name, " must be a number in [0, 1e6], found \"",
           value, "\"");
    w.weight[k] = v;
  }
  return w;
}

std::string format_qa_weights(const QaWeights& w) {
  std::string out;
  for (int k = 0; k < QaWeights::kTypes; ++k) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", w.weight[k]);
    out += (k ? "," : "") + std::string(QaWeights::kNames[k]) + "=" + buf;
  }
  return out;
}

void validate(const WorldConfig& c) {
  if (c.image_size < 16 || c.image_size > 1024)
    fail("WorldConfig: image_size must be in [16, 1024], found ", c.image_size);
  if (c.min_objects < 1 || c.max_objects > kNumCells || c.min_objects > c.max_objects)
    fail("WorldConfig: need 1 <= min_objects <= max_objects <= 9, found ", c.min_objects, " and ",
         c.max_objects);
  for (int64_t n : {c.train_scenes, c.val_scenes, c.test_scenes, c.shifted_scenes})
    if (n < 0 || n > 999999) fail("WorldConfig: scenes per split must be in [0, 999999], found ", n);
  if (!(c.small_radius > 0 && c.small_radius <= c.medium_radius &&
        c.medium_radius <= c.large_radius && c.large_radius <= 0.25))
    fail("WorldConfig: need 0 < small_radius <= medium_radius <= large_radius <= 0.25");
  if (!(c.position_jitter >= 0 && c.position_jitter <= 0.5))
    fail("WorldConfig: position_jitter must be in [0, 0.5], found ", c.position_jitter);
  check_prob(c.occlusion_prob, "occlusion_prob");
  check_prob(c.contrast_min, "contrast_min");
  check_prob(c.sft_idk_fraction, "sft_idk_fraction");
  check_prob(c.sft_hint_fraction, "sft_hint_fraction");
  check_prob(c.sft_hint_idk_fraction, "sft_hint_idk_fraction");
  check_prob(c.sft_balanced_negatives, "sft_balanced_negatives");
  check_prob(c.sft_balanced_positives, "sft_balanced_positives");
  double qa_total = 0;
  for (double w : c.sft_qa_weights.weight) {
    if (!(w >= 0 && w <= 1e6)) fail("WorldConfig: sft_qa_weights must be in [0, 1e6], found ", w);
    qa_total += w;
  }
  if (!(qa_total > 0)) fail("WorldConfig: sft_qa_weights are all 0: no answerable SFT turn");
  check_prob(c.adversarial_min_cooccur, "adversarial_min_cooccur");
  check_prob(c.idk_answerable_fraction, "idk_answerable_fraction");
  for (const Priors* p : {&c.priors, &c.shifted_priors}) {
    check_prob(p->cooccur_prob, "cooccur_prob");
    check_prob(p->typical_color_prob, "typical_color_prob");
    if (std::fabs(p->shape_zipf) > 8) fail("WorldConfig: |shape_zipf| must be <= 8");
  }
  if (c.noise_std < 0 || c.noise_std > 64) fail("WorldConfig: noise_std must be in [0, 64]");
  if (c.background_gradient < 0 || c.background_gradient > 128)
    fail("WorldConfig: background_gradient must be in [0, 128]");
  for (int n : {c.pope_pairs_per_scene, c.qa_turns_per_scene, c.idk_per_scene, c.mc_per_scene,
                c.reasoning_per_scene})
    if (n < 0 || n > 64) fail("WorldConfig: per-scene task counts must be in [0, 64], found ", n);
}

namespace {
Json qa_weights_json(const QaWeights& w) {
  Json j = Json::object();
  for (int k = 0; k < QaWeights::kTypes; ++k) j[QaWeights::kNames[k]] = w.weight[k];
  return j;
}
}  // namespace

Json config_to_json(const WorldConfig& c) {
  auto priors = [](const Priors& p) {
    return Json{{"shape_zipf", p.shape_zipf}, {"cooccur_prob", p.cooccur_prob},
                {"typical_color_prob", p.typical_color_prob}};
  };
  return Json{{"image_size", c.image_size},
              {"train_scenes", c.train_scenes},
              {"val_scenes", c.val_scenes},
              {"test_scenes", c.test_scenes},
              {"shifted_scenes", c.shifted_scenes},
              {"min_objects", c.min_objects},
              {"max_objects", c.max_objects},
              {"small_radius", c.small_radius},
              {"medium_radius", c.medium_radius},
              {"large_radius", c.large_radius},
              {"position_jitter", c.position_jitter},
              {"max_rotation_deg", c.max_rotation_deg},
              {"occlusion_prob", c.occlusion_prob},
              {"contrast_min", c.contrast_min},
              {"noise_std", c.noise_std},
              {"background_gradient", c.background_gradient},
              {"priors", priors(c.priors)},
              {"shifted_priors", priors(c.shifted_priors)},
              {"pope_pairs_per_scene", c.pope_pairs_per_scene},
              {"adversarial_min_cooccur", c.adversarial_min_cooccur},
              {"qa_turns_per_scene", c.qa_turns_per_scene},
              {"sft_idk_fraction", c.sft_idk_fraction},
              {"sft_hint_fraction", c.sft_hint_fraction},
              {"sft_hint_idk_fraction", c.sft_hint_idk_fraction},
              {"sft_qa_weights", qa_weights_json(c.sft_qa_weights)},
              {"sft_balanced_negatives", c.sft_balanced_negatives},
              {"sft_balanced_positives", c.sft_balanced_positives},
              {"idk_per_scene", c.idk_per_scene},
              {"idk_answerable_fraction", c.idk_answerable_fraction},
              {"mc_per_scene", c.mc_per_scene},
              {"reasoning_per_scene", c.reasoning_per_scene}};
}

WorldConfig config_from_json(const Json& j, const std::string& ctx) {
  WorldConfig c;
  auto get = [&](const Json& o, const char* key, auto& field, const std::string& where) {
    field = json_get_or(o, key, field, where);
  };
  get(j, "image_size", c.image_size, ctx);
  get(j, "train_scenes", c.train_scenes, ctx);
  get(j, "val_scenes", c.val_scenes, ctx);
  get(j, "test_scenes", c.test_scenes, ctx);
  get(j, "shifted_scenes", c.shifted_scenes, ctx);
  get(j, "min_objects", c.min_objects, ctx);
  get(j, "max_objects", c.max_objects, ctx);
  get(j, "small_radius", c.small_radius, ctx);
  get(j, "medium_radius", c.medium_radius, ctx);
  get(j, "large_radius", c.large_radius, ctx);
  get(j, "position_jitter", c.position_jitter, ctx);
  get(j, "max_rotation_deg", c.max_rotation_deg, ctx);
  get(j, "occlusion_prob", c.occlusion_prob, ctx);
  get(j, "contrast_min", c.contrast_min, ctx);
  get(j, "noise_std", c.noise_std, ctx);
  get(j, "background_gradient", c.background_gradient, ctx);
  for (auto [key, p] : {std::pair<const char*, Priors*>{"priors", &c.priors},
                        std::pair<const char*, Priors*>{"shifted_priors", &c.shifted_priors}}) {
    if (!j.contains(key)) continue;
    std::string where = ctx + ": " + key;
    get(j[key], "shape_zipf", p->shape_zipf, where);
    get(j[key], "cooccur_prob", p->cooccur_prob, where);
    get(j[key], "typical_color_prob", p->typical_color_prob, where);
  }
  get(j, "pope_pairs_per_scene", c.pope_pairs_per_scene, ctx);
  get(j, "adversarial_min_cooccur", c.adversarial_min_cooccur, ctx);
  get(j, "qa_turns_per_scene", c.qa_turns_per_scene, ctx);
  get(j, "sft_idk_fraction", c.sft_idk_fraction, ctx);
  get(j, "sft_hint_fraction", c.sft_hint_fraction, ctx);
  get(j, "sft_hint_idk_fraction", c.sft_hint_idk_fraction, ctx);
  if (j.contains("sft_qa_weights")) {
    const Json& q = j["sft_qa_weights"];
    std::string where = ctx + ": sft_qa_weights";
    if (!q.is_object()) fail(where, ": expected an object {type: weight}");
    for (auto it = q.begin(); it != q.end(); ++it) {
      const int k = qa_type_index(it.key());
      if (k == QaWeights::kTypes) fail(where, ": unknown question type \"", it.key(), "\"");
      get(q, it.key().c_str(), c.sft_qa_weights.weight[k], where);
    }
  }
  get(j, "sft_balanced_negatives", c.sft_balanced_negatives, ctx);
  get(j, "sft_balanced_positives", c.sft_balanced_positives, ctx);
  get(j, "idk_per_scene", c.idk_per_scene, ctx);
  get(j, "idk_answerable_fraction", c.idk_answerable_fraction, ctx);
  get(j, "mc_per_scene", c.mc_per_scene, ctx);
  get(j, "reasoning_per_scene", c.reasoning_per_scene, ctx);
  validate(c);
  return c;
}

std::string scene_id(Split split, int64_t index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s_%06lld", split_name(split), static_cast<long long>(index));
  return buf;
}

Scene sample_scene(const WorldConfig& config, uint64_t seed, Split split, int64_t index) {
  Rng rng = Rng::for_sample(seed, int(split), index, Stream::kScene);
  const Priors& priors = split == Split::kShifted ? config.shifted_priors : config.priors;
  Scene scene;
  scene.id = scene_id(split, index);
  scene.split = split;
  scene.index = index;
  scene.width = scene.height = config.image_size;

  const uint8_t* bg = kBackgrounds[rng.below(kNumBackgrounds)];
  for (int ch = 0; ch < 3; ++ch) scene.background[ch] = uint8_t(bg[ch] + rng.below(9));
  scene.gradient = centi(rng.uniform(-1, 1) * config.background_gradient);
  scene.noise_std = centi(config.noise_std);

  int n = config.min_objects + rng.below(config.max_objects - config.min_objects + 1);
  std::vector<Shape> shapes = sample_shapes(rng, n, config.max_objects, priors);
  std::array<int, kNumCells> cells{};
  for (int i = 0; i < kNumCells; ++i) cells[i] = i;
  rng.shuffle(cells.data(), kNumCells);

  const double cell_px = double(config.image_size) / kGrid;
  const double radius_frac[kNumSizes] = {config.small_radius, config.medium_radius,
                                         config.large_radius};
  for (size_t i = 0; i < shapes.size(); ++i) {
    Object o;
    o.shape = shapes[i];
    o.color = sample_color(rng, o.shape, priors);
    o.size = Size(rng.below(kNumSizes));
    o.cell = cells[i];
    o.radius = centi(radius_frac[int(o.size)] * config.image_size * rng.uniform(0.95, 1.05));
    double jx = rng.uniform(-1, 1) * config.position_jitter * cell_px;
    double jy = rng.uniform(-1, 1) * config.position_jitter * cell_px;
    double lo = o.radius + 1.0, hi = config.image_size - o.radius - 1.0;
    o.x = centi(std::clamp((o.col() + 0.5) * cell_px + jx, lo, hi));
    o.y = centi(std::clamp((o.row() + 0.5) * cell_px + jy, lo, hi));
    o.rotation_deg = centi(rng.uniform(-1, 1) * config.max_rotation_deg);
    o.contrast = centi(rng.uniform(config.contrast_min, 1.0));
    auto pure = color_rgb(o.color);
    for (int ch = 0; ch < 3; ++ch)
      o.rgb[ch] = uint8_t(std::lround(scene.background[ch] +
                                      o.contrast * (double(pure[ch]) - scene.background[ch])));
    scene.objects.push_back(o);
  }
  if (rng.bernoulli(config.occlusion_prob)) {
    int k = rng.below(int(scene.objects.size()));
    Object& o = scene.objects[k];
    o.occluded = true;
    const float margin = 2.0f;
    Occluder box;
    box.object = k;
    box.x0 = std::max(0.0f, std::floor(o.x - o.radius * 1.2f - margin));
    box.y0 = std::max(0.0f, std::floor(o.y - o.radius * 1.2f - margin));
    box.x1 = std::min(float(config.image_size), std::ceil(o.x + o.radius * 1.2f + margin));
    box.y1 = std::min(float(config.image_size), std::ceil(o.y + o.radius * 1.2f + margin));
    scene.occluders.push_back(box);
  }
  return scene;
}

}  // namespace mmb::world
