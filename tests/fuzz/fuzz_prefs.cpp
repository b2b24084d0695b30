// Preference JSONL (TRL's format with mmb's verifier counts), line by line.
#include "fuzz_util.h"
#include "mmb/jsonl.h"
#include "mmb/prefs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmb;
  const std::string path = fuzz::write_scratch("pairs.jsonl", fuzz::bytes_of(data, size));
  fuzz::expect_clear_error([&] {
    JsonlReader reader(path);
    Json value;
    while (reader.next(value)) {
      fuzz::expect_clear_error([&] { (void)parse_preference_pair(value, reader.where()); });
      if (value.is_object() && value.contains("chosen_judgement"))
        fuzz::expect_clear_error(
            [&] { (void)ResponseJudgement::from_json(value["chosen_judgement"], reader.where()); });
    }
  });
  return 0;
}
