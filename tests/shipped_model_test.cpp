// The shipped base model (models/base): it loads, its files are complete, and it reproduces the
// evaluation recorded with it (models/base/eval/slice.json, written by scripts/ship_base) on the
// same slice of its world within 0.02 on each headline number (floats differ between CPUs).
#include <filesystem>
#include <fstream>

#include "mmb/json.h"
#include "mmb/safetensors.h"
#include "test_util.h"

namespace {

const std::string kShipped = std::string(MMB_SOURCE_DIR) + "/models/base";
const std::string kMmb = std::string(MMB_BINARY_DIR) + "/mmb";

double number_at(const mmb::Json& j, const std::string& path) {
  const mmb::Json* p = &j;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t slash = path.find('/', start);
    const std::string key = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (!p->is_object() || !p->contains(key)) throw std::runtime_error("no " + path);
    p = &(*p)[key];
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (!p->is_number()) throw std::runtime_error(path + " is not a number");
  return p->get<double>();
}

}  // namespace

TEST(ShippedModel, FilesAreCompleteAndSmall) {
  namespace fs = std::filesystem;
  uintmax_t bytes = 0;
  for (const char* dir : {"vlm", "clip"})
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.model"}) {
      const fs::path p = fs::path(kShipped) / dir / f;
      ASSERT_TRUE(fs::is_regular_file(p)) << p;
      bytes += fs::file_size(p);
    }
  EXPECT_LE(bytes, uintmax_t(40) << 20) << "the shipped checkpoint must stay within 40 MB";
  for (const char* f : {"world.toml", "recipe.toml", "manifest.json", "eval/test.json", "eval/test_seed7.json",
                        "eval/calibrate.json", "eval/slice.json", "eval/shifted.json"})
    EXPECT_TRUE(fs::is_regular_file(fs::path(kShipped) / f)) << f;
  EXPECT_FALSE(fs::exists(fs::path(kShipped) / "vlm/calibration.json")) << "the shipped model is uncalibrated";
}

TEST(ShippedModel, ReproducesItsRecordedSlice) {
  mmb::testing::TempDir tmp;
  int status = 0;
  // The commands of scripts/ship_base's slice, word for word.
  std::string out =
      mmb::testing::run_capture(kMmb + " world generate --config " + kShipped +
                                    "/world.toml --val 0 --test 200 --shifted 0 --quiet --out " + tmp.file("world"),
                                &status);
  ASSERT_EQ(status, 0) << out;
  out = mmb::testing::run_capture(kMmb + " eval --model " + kShipped + "/vlm --data " + tmp.file("world") +
                                      " --suite pope,chair,mc,reasoning,idk --limit 200 --uncalibrated --no-progress"
                                      " --out " +
                                      tmp.file("eval"),
                                  &status);
  ASSERT_EQ(status, 0) << out;
  const mmb::Json got = mmb::read_json_file(tmp.file("eval/results.json"));
  const mmb::Json want = mmb::read_json_file(kShipped + "/eval/slice.json");
  for (const char* key :
       {"pope/random/accuracy", "pope/popular/accuracy", "pope/adversarial/accuracy", "chair/chair_i", "chair/chair_s",
        "chair/object_recall", "chair/verifiable_share", "mc/accuracy", "reasoning/step_accuracy",
        "idk/plain/idk_recall", "idk/hint/idk_recall", "idk/plain/accuracy_answerable"})
    EXPECT_NEAR(number_at(got, key), number_at(want, key), 0.02) << key;
}
