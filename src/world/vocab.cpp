// The world's vocabulary: names of shapes, colours, sizes, cells and splits, and the fixed
// structure of the priors (frequency order, co-occurring pairs, typical colours).
#include <cstring>

#include "mmb/error.h"
#include "mmb/world.h"

namespace mmb::world {
namespace {

const char* const kShapeNames[kNumShapes] = {"circle", "square", "triangle", "star", "heart",
                                             "cross",  "diamond", "hexagon", "moon", "ring"};
const char* const kShapePlurals[kNumShapes] = {"circles", "squares", "triangles", "stars",
                                               "hearts",  "crosses", "diamonds",  "hexagons",
                                               "moons",   "rings"};
const char* const kColorNames[kNumColors] = {"red",    "green",  "blue",  "yellow",
                                             "purple", "orange", "white", "cyan"};
// Distinct hues, all bright enough to stand out from the dark backgrounds.
const uint8_t kColorRgb[kNumColors][3] = {{225, 45, 45},  {40, 185, 65},   {55, 100, 240},
                                          {240, 220, 40}, {160, 70, 215},  {250, 140, 20},
                                          {245, 245, 245}, {40, 215, 225}};
const char* const kSizeNames[kNumSizes] = {"small", "medium", "large"};
const char* const kCellNames[kNumCells] = {"top left",    "top",    "top right",
                                           "left",        "center", "right",
                                           "bottom left", "bottom", "bottom right"};
const char* const kCellPhrases[kNumCells] = {
    "at the top left",    "at the top",    "at the top right",
    "on the left",        "in the center", "on the right",
    "at the bottom left", "at the bottom", "at the bottom right"};
const char* const kForeignNames[kNumForeignKinds] = {"dog",   "cat",  "car",    "tree",
                                                     "house", "bird", "flower", "boat"};
const char* const kForeignPlurals[kNumForeignKinds] = {"dogs",   "cats",  "cars",    "trees",
                                                       "houses", "birds", "flowers", "boats"};
const char* const kSplitNames[kNumSplits] = {"train", "val", "test", "shifted"};

template <size_t N>
int find_name(const char* const (&names)[N], std::string_view name) {
  for (size_t i = 0; i < N; ++i)
    if (name == names[i]) return int(i);
  return -1;
}

}  // namespace

const std::array<Shape, kNumShapes> kShapeFrequencyOrder = {
    Shape::kCircle, Shape::kSquare,  Shape::kTriangle, Shape::kStar, Shape::kHeart,
    Shape::kCross,  Shape::kDiamond, Shape::kHexagon,  Shape::kMoon, Shape::kRing};

const std::array<ShapePair, 3> kCooccurringPairs = {{{Shape::kStar, Shape::kMoon},
                                                     {Shape::kHeart, Shape::kDiamond},
                                                     {Shape::kTriangle, Shape::kHexagon}}};

const std::array<int, kNumShapes> kTypicalColor = {
    kNoColor,              // circle
    kNoColor,              // square
    int(Color::kGreen),    // triangle
    int(Color::kYellow),   // star
    int(Color::kRed),      // heart
    kNoColor,              // cross
    int(Color::kBlue),     // diamond
    int(Color::kOrange),   // hexagon
    int(Color::kWhite),    // moon
    kNoColor};             // ring

const char* shape_name(Shape s) { return kShapeNames[int(s)]; }
const char* shape_plural(Shape s) { return kShapePlurals[int(s)]; }
const char* color_name(Color c) { return kColorNames[int(c)]; }
const char* size_name(Size s) { return kSizeNames[int(s)]; }
const char* cell_name(int cell) { return kCellNames[cell]; }
const char* cell_phrase(int cell) { return kCellPhrases[cell]; }
const char* split_name(Split s) { return kSplitNames[int(s)]; }
const char* foreign_kind_name(int k) { return kForeignNames[k]; }
const char* foreign_kind_plural(int k) { return kForeignPlurals[k]; }
std::array<uint8_t, 3> color_rgb(Color c) {
  return {kColorRgb[int(c)][0], kColorRgb[int(c)][1], kColorRgb[int(c)][2]};
}

Shape parse_shape(std::string_view name, const std::string& context) {
  int i = find_name(kShapeNames, name);
  if (i < 0) fail(context, ": unknown shape '", name, "' (expected circle, square, ...)");
  return Shape(i);
}
Color parse_color(std::string_view name, const std::string& context) {
  int i = find_name(kColorNames, name);
  if (i < 0) fail(context, ": unknown colour '", name, "' (expected red, green, ...)");
  return Color(i);
}
Size parse_size(std::string_view name, const std::string& context) {
  int i = find_name(kSizeNames, name);
  if (i < 0) fail(context, ": unknown size '", name, "' (expected small, medium or large)");
  return Size(i);
}
int parse_cell(std::string_view name, const std::string& context) {
  int i = find_name(kCellNames, name);
  if (i < 0) fail(context, ": unknown cell '", name, "' (expected top left, ..., bottom right)");
  return i;
}
Split parse_split(std::string_view name, const std::string& context) {
  int i = find_name(kSplitNames, name);
  if (i < 0) fail(context, ": unknown split '", name, "' (expected train, val, test, shifted)");
  return Split(i);
}

}  // namespace mmb::world
