// The world: procedural scenes with exact truth (scene graphs), their configuration and renderer.
//
// A scene is 1–6 coloured shapes on a 3×3 grid (at most one object per cell) drawn on a dark
// background, optionally with one grey checkered box ("occluder") hiding an object completely.
// Everything is deterministic from (seed, split, index): each scene draws from its own engine, so
// scenes can be generated in any order and on any number of threads with identical results.
//
// The statistics are biased on purpose (see docs/world.md): shape frequencies follow a Zipf law,
// some shapes co-occur (P(B | A) high), most shapes have a typical colour. The "shifted" split uses
// different priors and serves as the out-of-distribution test.
//
// Related headers: world_tasks.h (questions, answers, export, stats), verifier.h (sentence truth).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mmb/image.h"
#include "mmb/json.h"

namespace mmb::world {

// ---- vocabulary ----------------------------------------------------------------------------
enum class Shape : uint8_t { kCircle, kSquare, kTriangle, kStar, kHeart, kCross, kDiamond,
                             kHexagon, kMoon, kRing };
enum class Color : uint8_t { kRed, kGreen, kBlue, kYellow, kPurple, kOrange, kWhite, kCyan };
enum class Size : uint8_t { kSmall, kMedium, kLarge };
enum class Split : uint8_t { kTrain, kVal, kTest, kShifted };

constexpr int kNumShapes = 10;
constexpr int kNumColors = 8;
constexpr int kNumSizes = 3;
constexpr int kNumSplits = 4;
constexpr int kGrid = 3;                    // the grid is kGrid × kGrid cells
constexpr int kNumCells = kGrid * kGrid;    // cell = row * 3 + col, row 0 = top, col 0 = left
constexpr int kNoColor = -1;                // "no typical colour" in kTypicalColor

// Names as the world's language spells them ("circle", "circles", "red", "top left", "train").
const char* shape_name(Shape s);
const char* shape_plural(Shape s);
const char* color_name(Color c);
const char* size_name(Size s);
const char* cell_name(int cell);    // "top left", "top", ..., "center", ..., "bottom right"
const char* cell_phrase(int cell);  // "at the top left", "on the left", "in the center", ...
const char* split_name(Split s);
std::array<uint8_t, 3> color_rgb(Color c);  // the pure colour before contrast and noise

// Object kinds that never appear in a scene ("dog", "car", ...): questions about them are
// unanswerable, and a description that mentions one hallucinates it.
constexpr int kNumForeignKinds = 8;
const char* foreign_kind_name(int k);    // "dog"
const char* foreign_kind_plural(int k);  // "dogs"

// Name → value; throw mmb::Error naming `context` and the bad name.
Shape parse_shape(std::string_view name, const std::string& context);
Color parse_color(std::string_view name, const std::string& context);
Size parse_size(std::string_view name, const std::string& context);
int parse_cell(std::string_view name, const std::string& context);
Split parse_split(std::string_view name, const std::string& context);

// ---- fixed structure of the priors (the knobs that scale them are in WorldConfig) ----------
// Shapes from most to least frequent: rank r has weight 1 / (r + 1)^shape_zipf.
extern const std::array<Shape, kNumShapes> kShapeFrequencyOrder;
// Co-occurring pairs: when `first` is in a scene, `second` is too with probability
// cooccur_prob (POPE "adversarial" negatives are these partners). Pairs are disjoint.
struct ShapePair { Shape first, second; };
extern const std::array<ShapePair, 3> kCooccurringPairs;
// Typical colour per shape (index = Shape), or kNoColor: a star is yellow with probability
// typical_color_prob, otherwise one of the other colours uniformly.
extern const std::array<int, kNumShapes> kTypicalColor;

// ---- configuration -------------------------------------------------------------------------
// The "I don't know" hint: appended after a space to hinted SFT questions, and `mmb eval`'s IDK
// prompt variant (EvalOptions::idk_hint).
inline constexpr const char* kIdkHint = "If you are not sure, say I don't know.";

// The statistics that differ between the normal splits and the shifted one.
struct Priors {
  double shape_zipf = 1.0;            // Zipf exponent of shape frequencies; 0 = uniform,
                                      // negative = the frequency order reversed
  double cooccur_prob = 0.85;         // P(second present | first present) for kCooccurringPairs
  double typical_color_prob = 0.8;    // P(colour = typical colour | shape has one)
};

// Relative weights of the answerable question types in the SFT conversations
// (WorldConfig::sft_qa_weights). The SFT turns draw from a random stream of their own and
// idk.jsonl's answerable questions always use the defaults, so the SFT mix changes no evaluation
// set.
struct QaWeights {
  static constexpr int kTypes = 7;
  static const char* const kNames[kTypes];  // existence color shape size position count relation
  std::array<double, kTypes> weight{3.0, 2.0, 2.0, 1.0, 1.5, 1.5, 1.5};  // in kNames order
  bool operator==(const QaWeights& o) const { return weight == o.weight; }
};
// "existence=9,count=1": names the weights to change; the others keep their values. Throws
// mmb::Error naming an unknown type or a value that is not a number >= 0.
QaWeights parse_qa_weights(const std::string& spec, QaWeights base = {});
std::string format_qa_weights(const QaWeights& w);  // all seven, "existence=3,color=2,..."

struct WorldConfig {
  // Sizes
  int image_size = 64;                // width = height, pixels (the ViT uses 8×8 patches)
  int64_t train_scenes = 20000;       // scenes (= images) per split
  int64_t val_scenes = 1000;
  int64_t test_scenes = 2000;
  int64_t shifted_scenes = 2000;
  int min_objects = 1;                // objects per scene, uniform in [min, max], max ≤ 9
  int max_objects = 6;
  // Appearance and difficulty
  double small_radius = 0.09;         // object radius as a fraction of image_size, per size
  double medium_radius = 0.13;
  double large_radius = 0.17;
  double position_jitter = 0.15;      // max offset of an object from its cell centre, in cells;
                                      // larger values make neighbours overlap more
  double max_rotation_deg = 0.0;      // random rotation in [-max, max] degrees (0 = upright)
  double occlusion_prob = 0.15;       // probability that a scene hides one object behind a box
  double contrast_min = 0.7;          // object colour = bg + c·(colour − bg), c ~ U[contrast_min, 1]
  double noise_std = 0.0;             // per-pixel Gaussian noise, 0–255 units (off by default:
                                      // even std 1 makes the PNGs ~7x larger)
  double background_gradient = 12.0;  // max brightness change across the background, 0–255 units
  // Biased statistics: train/val/test use `priors`, the shifted split `shifted_priors`.
  Priors priors;
  Priors shifted_priors{-1.0, 0.15, 0.125};
  // Tasks (see world_tasks.h)
  int pope_pairs_per_scene = 1;       // per POPE category: this many "yes" and as many "no" questions
  double adversarial_min_cooccur = 0.5;  // POPE adversarial asks only about an absent shape B with
                                      // P(B | A) >= this for some A in the scene (train statistics)
  int qa_turns_per_scene = 6;         // question-answer turns in a scene's SFT conversation
  double sft_idk_fraction = 0.05;     // share of SFT turns that are unanswerable ("I don't know.")
  QaWeights sft_qa_weights;           // mix of the answerable SFT turns
  double sft_hint_fraction = 0;       // share of SFT turns whose question ends with kIdkHint ("If you
                                      // are not sure, say I don't know."), as LLaVA-1.5's instruction
                                      // data tells VizWiz's unanswerable questions apart
  double sft_hint_idk_fraction = 0.2;  // share of those hinted turns that are unanswerable
  double sft_balanced_negatives = 0;  // share of SFT presence questions whose absent shape is drawn
                                      // so that each shape is answered "yes" as often as "no"
                                      // (weight f / (1 - f), f its train frequency), not uniformly
  double sft_balanced_positives = 0;  // share of SFT "yes" presence questions whose present object is
                                      // drawn with weight 1 / f (its shape's train frequency), not
                                      // uniformly: rare shapes get more "yes" turns (not as many as
                                      // common ones: most scenes hold no rare shape; docs/world.md)
  int idk_per_scene = 2;              // questions per scene in idk.jsonl
  double idk_answerable_fraction = 0.5;  // share of answerable questions mixed into idk.jsonl
  int mc_per_scene = 1;               // multiple-choice questions per scene
  int reasoning_per_scene = 1;        // reasoning-chain questions per scene
  // Execution (does not change the output)
  int threads = 0;  // render/encode/write threads; 0 = two per available core
};

// Throws mmb::Error naming the field when a value is out of range.
void validate(const WorldConfig& config);
Json config_to_json(const WorldConfig& config);
// Inverse of config_to_json; missing keys keep their defaults. Throws on wrong types.
WorldConfig config_from_json(const Json& j, const std::string& context);

// ---- scenes --------------------------------------------------------------------------------
struct Object {
  Shape shape = Shape::kCircle;
  Color color = Color::kRed;
  Size size = Size::kMedium;
  int cell = 4;                       // grid cell, row * 3 + col
  float x = 0, y = 0;                 // centre in pixels (x right, y down)
  float radius = 0;                   // pixels
  float rotation_deg = 0;
  float contrast = 1;                 // 1 = pure colour, smaller = closer to the background
  std::array<uint8_t, 3> rgb{};       // the drawn colour (after contrast, before noise)
  float visible_fraction = 1;         // share of its area not covered (filled in by render_scene)
  bool occluded = false;              // hidden behind an occluder: colour and shape unknowable
  float difficulty = 0;               // 0 easy … 1 hard: small, low contrast, covered, noisy

  int row() const { return cell / kGrid; }
  int col() const { return cell % kGrid; }
};

// A grey checkered box drawn over everything, hiding `object` completely.
struct Occluder {
  int object = 0;                     // index into Scene::objects
  float x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // pixels, inclusive-exclusive box
};

struct Scene {
  std::string id;                     // "<split>_<index, 6 digits>", e.g. "train_000042"
  Split split = Split::kTrain;
  int64_t index = 0;
  int width = 64, height = 64;
  std::array<uint8_t, 3> background{};  // base colour (a vertical gradient is added)
  float gradient = 0;                 // brightness change from top to bottom, 0–255 units
  float noise_std = 0;
  std::vector<Object> objects;
  std::vector<Occluder> occluders;    // at most one in generated scenes

  std::string image_path() const { return "images/" + id + ".png"; }  // relative to the world dir
  bool has_occluder() const { return !occluders.empty(); }
};

// "<split>_<index>", zero-padded to 6 digits.
std::string scene_id(Split split, int64_t index);

// Samples the scene graph of (seed, split, index) with the split's priors. Does not render;
// visible_fraction and difficulty are filled in by render_scene.
Scene sample_scene(const WorldConfig& config, uint64_t seed, Split split, int64_t index);

// Rasterises a scene (anti-aliased signed-distance shapes, gradient background, noise seeded
// from (seed, split, index)) and fills in visible_fraction and difficulty of each object.
Image render_scene(Scene& scene, uint64_t seed);

// ---- scene files ---------------------------------------------------------------------------
Json scene_to_json(const Scene& scene);
// Throws mmb::Error naming `context` (e.g. "scenes.jsonl:12") and the bad key.
Scene scene_from_json(const Json& j, const std::string& context);

// Reads scenes.jsonl (one scene per line). Malformed lines throw "<path>:<line>: ...".
std::vector<Scene> read_scenes(const std::string& path);

// Finds a scene by id; throws mmb::Error naming the id and the number of scenes searched.
const Scene& find_scene(const std::vector<Scene>& scenes, const std::string& id);

}  // namespace mmb::world
