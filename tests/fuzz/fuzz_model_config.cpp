// config.json of a model directory (LLaVA and CLIP), strict and lenient.
#include "fuzz_util.h"
#include "mmb/json.h"
#include "mmb/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmb;
  const Json j = Json::parse(fuzz::bytes_of(data, size), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  for (bool strict : {true, false}) {
    fuzz::expect_clear_error([&] { (void)llava_config_from_json(j, "config.json", strict); });
    fuzz::expect_clear_error([&] { (void)clip_config_from_json(j, "config.json", strict); });
  }
  return 0;
}
