// PNG/JPEG decoding with stb_image, PNG encoding with stb_image_write. Limits are checked on the
// header (stbi_info_from_memory) before any pixel buffer is allocated.
#include "mmb/image.h"

#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "mmb/atomic_file.h"
#include "mmb/error.h"

#define STB_IMAGE_IMPLEMENTATION
// stb_image 2.27 allocates its JPEG decoder without clearing it, and a scan that names a Huffman
// table no DHT segment defined decodes with whatever that memory held (an out-of-bounds read,
// found by fuzzing). Zeroed memory makes such a table decode nothing, the same on every run.
#define STBI_MALLOC(size) std::calloc(1, size)
#define STBI_REALLOC(p, size) std::realloc(p, size)
#define STBI_FREE(p) std::free(p)
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wsign-compare"
#endif
#include <stb_image.h>
#include <stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace mmb {
namespace {

// stb_image 2.27 (Debian 12's) writes past its Huffman tables when a JPEG's DHT segment declares
// more than 256 codes for one table (fixed upstream in 2.28). Where stb looks for its next marker
// depends on how far it decoded the entropy-coded data before (after a scan it takes the byte
// after the next 0xFF, wherever that is), so no walk of the markers can know which bytes it will
// read as a DHT: every 0xFF 0xC4 of a JPEG file is read as one, and refused when one of its
// tables declares more than 256 codes. Valid entropy-coded data never holds 0xFF 0xC4 (an 0xFF
// there is stuffed as 0xFF 0x00). Returns "" or the reason.
std::string check_jpeg_huffman_tables(std::string_view b) {
  // As stb_image reads: bytes past the end are zeros.
  const auto u8 = [&](size_t i) { return i < b.size() ? uint8_t(b[i]) : uint8_t(0); };
  // stb takes any run of 0xFF then 0xD8 at the start as the SOI marker.
  size_t p = 0;
  while (p < b.size() && u8(p) == 0xFF) ++p;
  if (p == 0 || u8(p) != 0xD8) return "";
  for (size_t m = p; m + 1 < b.size(); ++m) {
    if (u8(m) != 0xFF || u8(m + 1) != 0xC4) continue;
    // DHT: tables of (class/id, 16 counts, the values) while its length is left
    const size_t len = (size_t(u8(m + 2)) << 8) | u8(m + 3);
    int64_t left = int64_t(len) - 2;
    for (size_t q = m + 4; left > 0 && q < b.size();) {
      size_t codes = 0;
      for (size_t i = 1; i <= 16; ++i) codes += u8(q + i);
      if (codes > 256)
        return "a Huffman table at byte " + std::to_string(q) + " declares " + std::to_string(codes) + " codes (at most 256)";
      q += 17 + codes;
      left -= int64_t(17 + codes);
    }
  }
  return "";
}

// stb_image 2.27 copies a zero-length IDAT chunk that comes before any image data into a null
// buffer (memcpy(NULL, p, 0): undefined behaviour), and grows its IDAT buffer to an IDAT chunk's
// declared length before reading it, so a chunk declaring 1 GB in a tiny file allocates 2 GB
// (both found by fuzzing). Walks the chunks as stb does (length, type, data, CRC) and refuses
// such chunks first. Returns "" or the reason.
std::string check_png_chunks(std::string_view b) {
  static const char kSignature[] = "\x89PNG\r\n\x1a\n";
  if (b.size() < 8 || b.compare(0, 8, std::string_view(kSignature, 8)) != 0) return "";
  const auto be32 = [&](size_t at) {
    return (uint32_t(uint8_t(b[at])) << 24) | (uint32_t(uint8_t(b[at + 1])) << 16) |
           (uint32_t(uint8_t(b[at + 2])) << 8) | uint32_t(uint8_t(b[at + 3]));
  };
  bool allocated = false;  // stb's IDAT buffer exists: later empty chunks are harmless
  for (size_t p = 8; p + 8 <= b.size();) {
    const uint32_t len = be32(p);
    const std::string_view type = b.substr(p + 4, 4);
    if (type == "IEND") return "";
    if (type == "IDAT") {
      if (len == 0 && !allocated) return "an empty IDAT chunk at byte " + std::to_string(p) + " before any image data";
      if (uint64_t(len) + 8 > uint64_t(b.size() - p))
        return "an IDAT chunk at byte " + std::to_string(p) + " declares " + std::to_string(len) + " bytes, more than the file holds";
      allocated = allocated || len > 0;
    }
    if (uint64_t(len) + 12 > uint64_t(b.size() - p)) return "";  // stb runs out of data: its error
    p += 12 + size_t(len);
  }
  return "";
}

}  // namespace

Image decode_image(std::string_view bytes, const std::string& name, int want_channels,
                   const ImageLimits& limits) {
  if (want_channels < 1 || want_channels > 4)
    fail("decode_image: want_channels must be 1..4, got ", want_channels);
  if (bytes.empty()) fail("decode_image: ", name, ": empty file");
  if (int64_t(bytes.size()) > limits.max_file_bytes)
    fail("decode_image: ", name, ": ", bytes.size(), " bytes exceeds the limit of ",
         limits.max_file_bytes);
  if (bytes.size() > size_t(INT_MAX)) fail("decode_image: ", name, ": file too large");
  auto data = reinterpret_cast<const stbi_uc*>(bytes.data());
  int len = int(bytes.size());
  int w = 0, h = 0, c = 0;
  // A PNG's size is in its first chunk (IHDR). stb_image refuses one too large to decode as
  // "unknown image type"; read it here so that a decompression bomb is named as such.
  static const char kPngSignature[] = "\x89PNG\r\n\x1a\n";
  if (bytes.size() >= 24 && bytes.compare(0, 8, std::string_view(kPngSignature, 8)) == 0 &&
      bytes.compare(12, 4, "IHDR") == 0) {
    const auto be32 = [&](size_t at) {
      return (uint32_t(uint8_t(bytes[at])) << 24) | (uint32_t(uint8_t(bytes[at + 1])) << 16) |
             (uint32_t(uint8_t(bytes[at + 2])) << 8) | uint32_t(uint8_t(bytes[at + 3]));
    };
    const uint32_t pw = be32(16), ph = be32(20);
    if (pw > uint32_t(limits.max_width) || ph > uint32_t(limits.max_height))
      fail("decode_image: ", name, ": size ", pw, "x", ph, " outside the limit ", limits.max_width,
           "x", limits.max_height);
  }
  if (const std::string bad = check_jpeg_huffman_tables(bytes); !bad.empty())
    fail("decode_image: ", name, ": corrupt JPEG: ", bad);
  if (const std::string bad = check_png_chunks(bytes); !bad.empty())
    fail("decode_image: ", name, ": corrupt PNG: ", bad);
  if (!stbi_info_from_memory(data, len, &w, &h, &c))
    fail("decode_image: ", name, ": not a PNG or JPEG image (", stbi_failure_reason(), ")");
  if (w <= 0 || h <= 0 || w > limits.max_width || h > limits.max_height)
    fail("decode_image: ", name, ": size ", w, "x", h, " outside the limit ", limits.max_width,
         "x", limits.max_height);
  if (int64_t(w) * int64_t(h) > limits.max_pixels)
    fail("decode_image: ", name, ": size ", w, "x", h, " = ", int64_t(w) * int64_t(h),
         " pixels exceeds the limit of ", limits.max_pixels, " (a decompression bomb?)");
  std::unique_ptr<stbi_uc, void (*)(void*)> px(
      stbi_load_from_memory(data, len, &w, &h, &c, want_channels), stbi_image_free);
  if (!px) fail("decode_image: ", name, ": corrupt image (", stbi_failure_reason(), ")");
  Image img(w, h, want_channels);
  std::memcpy(img.pixels.data(), px.get(), img.pixels.size());
  return img;
}

Image read_image(const std::string& path, int want_channels, const ImageLimits& limits) {
  return decode_image(read_file(path), path, want_channels, limits);
}

namespace {
void append_bytes(void* ctx, void* data, int size) {
  static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), size_t(size));
}
}  // namespace

std::string encode_png(const Image& image) {
  if (image.width <= 0 || image.height <= 0 || image.channels < 1 || image.channels > 4 ||
      image.pixels.size() != size_t(image.width) * image.height * image.channels)
    fail("encode_png: inconsistent image ", image.width, "x", image.height, "x", image.channels,
         " with ", image.pixels.size(), " bytes");
  std::string out;
  int ok = stbi_write_png_to_func(append_bytes, &out, image.width, image.height, image.channels,
                                  image.pixels.data(), image.width * image.channels);
  if (!ok) fail("encode_png: stb_image_write failed");
  return out;
}

void write_png(const std::string& path, const Image& image) {
  write_file_atomic(path, encode_png(image));
}

}  // namespace mmb
