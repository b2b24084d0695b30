// JSON and JSON Lines files as mmb reads them: JsonlReader line by line, read_json_file whole,
// and each value as a scene (the world's scenes.jsonl).
#include "fuzz_util.h"
#include "mmb/json.h"
#include "mmb/jsonl.h"
#include "mmb/world.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmb;
  const std::string path = fuzz::write_scratch("fuzz.jsonl", fuzz::bytes_of(data, size));
  fuzz::expect_clear_error([&] {
    JsonlReader reader(path);
    Json value;
    while (reader.next(value)) {
      if (reader.line_number() < 1) std::abort();
      fuzz::expect_clear_error([&] { (void)world::scene_from_json(value, reader.where()); });
    }
  });
  fuzz::expect_clear_error([&] { (void)read_json_file(path); });
  return 0;
}
