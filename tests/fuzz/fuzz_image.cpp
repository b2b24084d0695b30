// Image bytes (PNG, JPEG, BMP, ... as stb_image reads them) under the default limits.
#include "fuzz_util.h"
#include "mmb/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmb;
  for (int channels : {1, 3}) {
    fuzz::expect_clear_error([&] {
      const Image img = decode_image(fuzz::bytes_of(data, size), "fuzz.png", channels);
      if (img.width <= 0 || img.height <= 0 ||
          img.pixels.size() != size_t(img.width) * size_t(img.height) * size_t(channels))
        std::abort();
    });
  }
  return 0;
}
