// A hand-made scene shared by the verifier's and the judge's tests.
#pragma once
#include "mmb/world.h"

namespace mmb::testing {

// A red large circle at the top left, a small yellow star in the centre, a blue medium square
// at the bottom right hidden behind the grey box.
inline world::Scene hand_scene() {
  using namespace mmb::world;
  Scene s;
  s.id = "test_000000";
  s.split = Split::kTest;
  auto add = [&](Shape sh, Color c, Size z, int cell, bool occluded) {
    Object o;
    o.shape = sh;
    o.color = c;
    o.size = z;
    o.cell = cell;
    o.occluded = occluded;
    s.objects.push_back(o);
  };
  add(Shape::kCircle, Color::kRed, Size::kLarge, 0, false);
  add(Shape::kStar, Color::kYellow, Size::kSmall, 4, false);
  add(Shape::kSquare, Color::kBlue, Size::kMedium, 8, true);
  s.occluders.push_back(Occluder{2, 40, 40, 64, 64});
  return s;
}

}  // namespace mmb::testing
