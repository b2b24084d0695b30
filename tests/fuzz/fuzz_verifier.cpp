// The verifier's sentence parser, on sentences against scenes of the default world, and the
// answer extractor.
#include <vector>

#include "fuzz_util.h"
#include "mmb/verifier.h"
#include "mmb/world.h"

namespace {
const std::vector<mmb::world::Scene>& scenes() {
  static const std::vector<mmb::world::Scene> s = [] {
    std::vector<mmb::world::Scene> out;
    const mmb::world::WorldConfig config;
    for (int64_t i = 0; i < 8; ++i) out.push_back(mmb::world::sample_scene(config, 1234, mmb::world::Split::kTest, i));
    return out;
  }();
  return s;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmb;
  static const world::Verifier verifier;
  if (size == 0) return 0;
  const world::Scene& scene = scenes()[data[0] % scenes().size()];
  const std::string_view text = fuzz::bytes_of(data + 1, size - 1);
  fuzz::expect_clear_error([&] {
    const world::Verdict v = verifier.verify(scene, text, (data[0] & 8) ? "yes" : "");
    if ((v.hallucinated & ~v.mentioned) != 0) std::abort();  // hallucinated kinds are mentioned ones
    if (v.referents >> scene.objects.size()) std::abort();   // referents are objects of the scene
    (void)v.to_json();
  });
  for (const char* expected : {"yes", "C", "three", "red"})
    fuzz::expect_clear_error([&] { (void)verifier.check_answer(text, expected); });
  return 0;
}
