// Images: PNG and JPEG reading (stb_image), PNG writing. 8-bit, interleaved, row-major.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mmb {

struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;             // 1 (grey), 3 (RGB) or 4 (RGBA)
  std::vector<uint8_t> pixels;  // height * width * channels bytes, row-major, interleaved

  Image() = default;
  Image(int w, int h, int c) : width(w), height(h), channels(c), pixels(size_t(w) * h * c, 0) {}
  uint8_t* at(int x, int y) { return &pixels[(size_t(y) * width + x) * channels]; }
  const uint8_t* at(int x, int y) const { return &pixels[(size_t(y) * width + x) * channels]; }
};

struct ImageLimits {
  int max_width = 16384;            // pixels
  int max_height = 16384;           // pixels
  int64_t max_file_bytes = 256 << 20;  // refuse larger files before decoding
  // Pixels (width x height) of the declared size: a small file can declare a huge image (a
  // decompression bomb), and the decoder allocates for the declared size before it reads the
  // data. 2^25 (8K video, 7680x4320, fits) bounds one decode to about 0.5 GB at worst (16-bit
  // RGBA as read, then the output).
  int64_t max_pixels = int64_t(1) << 25;
};

// Decodes PNG or JPEG bytes into an image with `want_channels` channels (3 = RGB).
// `name` is used in error messages. Throws mmb::Error on corrupt data or limits exceeded.
Image decode_image(std::string_view bytes, const std::string& name, int want_channels = 3,
                   const ImageLimits& limits = {});

// Reads and decodes an image file. Throws mmb::Error naming the path.
Image read_image(const std::string& path, int want_channels = 3, const ImageLimits& limits = {});

// Encodes an image as PNG bytes (deterministic for identical pixels).
std::string encode_png(const Image& image);

// Writes a PNG atomically.
void write_png(const std::string& path, const Image& image);

}  // namespace mmb
