// Incremental statistics of a world (private to src/world): generate_world feeds scenes and
// POPE questions as it writes them; compute_stats feeds what it reads back.
#pragma once
#include <array>
#include <cstdint>

#include "mmb/json.h"
#include "mmb/world.h"

namespace mmb::world {

class StatsAccumulator {
 public:
  void add_scene(const Scene& scene);
  // category: 0 random, 1 popular, 2 adversarial.
  void add_pope(Split split, int category, bool label);
  Json to_json() const;

 private:
  struct PerSplit {
    int64_t scenes = 0, objects = 0, occluded_scenes = 0;
    std::array<int64_t, kNumCells + 1> objects_per_scene{};
    std::array<int64_t, kNumShapes> shape_objects{}, shape_scenes{};
    std::array<std::array<int64_t, kNumShapes>, kNumShapes> both{};        // scenes with A and B
    std::array<std::array<int64_t, kNumColors>, kNumShapes> shape_color{};  // objects
    std::array<int64_t, kNumColors> color_objects{};
    std::array<int64_t, kNumSizes> size_objects{};
    std::array<std::array<int64_t, 2>, 3> pope{};                          // [category][label]
  };
  std::array<PerSplit, kNumSplits> splits_{};
};

}  // namespace mmb::world
