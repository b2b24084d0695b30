#include "mmb/image.h"

#include "mmb/atomic_file.h"
#include "test_util.h"

using mmb::testing::TempDir;

namespace {
mmb::Image gradient(int w, int h) {
  mmb::Image img(w, h, 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = img.at(x, y);
      p[0] = uint8_t(x * 4);
      p[1] = uint8_t(y * 4);
      p[2] = uint8_t((x + y) * 2);
    }
  return img;
}
}  // namespace

TEST(Image, PngRoundTripIsExact) {
  TempDir d;
  mmb::Image img = gradient(37, 21);
  mmb::write_png(d.file("g.png"), img);
  mmb::Image back = mmb::read_image(d.file("g.png"));
  EXPECT_EQ(back.width, 37);
  EXPECT_EQ(back.height, 21);
  EXPECT_EQ(back.pixels, img.pixels);
  EXPECT_EQ(mmb::encode_png(img), mmb::encode_png(img)) << "encoding must be deterministic";
}

TEST(Image, ReadsJpeg) {
  // A 1x1 baseline JPEG (grey), from the smallest-valid-JPEG corpus.
  const unsigned char jpg[] = {
      0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x43, 0x00, 0x03, 0x02, 0x02, 0x02, 0x02, 0x02, 0x03, 0x02, 0x02,
      0x02, 0x03, 0x03, 0x03, 0x03, 0x04, 0x06, 0x04, 0x04, 0x04, 0x04, 0x04, 0x08, 0x06, 0x06, 0x05,
      0x06, 0x09, 0x08, 0x0A, 0x0A, 0x09, 0x08, 0x09, 0x09, 0x0A, 0x0C, 0x0F, 0x0C, 0x0A, 0x0B, 0x0E,
      0x0B, 0x09, 0x09, 0x0D, 0x11, 0x0D, 0x0E, 0x0F, 0x10, 0x10, 0x11, 0x10, 0x0A, 0x0C, 0x12, 0x13,
      0x12, 0x10, 0x13, 0x0F, 0x10, 0x10, 0x10, 0xFF, 0xC9, 0x00, 0x0B, 0x08, 0x00, 0x01, 0x00, 0x01,
      0x01, 0x01, 0x11, 0x00, 0xFF, 0xCC, 0x00, 0x06, 0x00, 0x10, 0x10, 0x05, 0xFF, 0xDA, 0x00, 0x08,
      0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0xD2, 0xCF, 0x20, 0xFF, 0xD9};
  mmb::Image img = mmb::decode_image(std::string_view(reinterpret_cast<const char*>(jpg), sizeof jpg),
                                     "tiny.jpg");
  EXPECT_EQ(img.width, 1);
  EXPECT_EQ(img.height, 1);
  EXPECT_EQ(img.channels, 3);
}

TEST(Image, CorruptFilesGiveClearErrors) {
  TempDir d;
  std::string png = mmb::encode_png(gradient(16, 16));
  mmb::write_file_atomic(d.file("trunc.png"), png.substr(0, png.size() / 2));
  mmb::testing::expect_throw_with([&] { mmb::read_image(d.file("trunc.png")); }, "trunc.png");
  std::string garbled = png;
  for (size_t i = 40; i < garbled.size() - 12; ++i) garbled[i] = char(garbled[i] ^ 0x5a);
  mmb::write_file_atomic(d.file("garbled.png"), garbled);
  mmb::testing::expect_throw_with([&] { mmb::read_image(d.file("garbled.png")); }, "corrupt image");
  mmb::write_file_atomic(d.file("text.jpg"), "this is not an image at all");
  mmb::testing::expect_throw_with([&] { mmb::read_image(d.file("text.jpg")); }, "not a PNG or JPEG");
  mmb::write_file_atomic(d.file("bad.jpg"), std::string("\xFF\xD8\xFF\xE0\x00\x10JFIF\x00", 11));
  mmb::testing::expect_throw_with([&] { mmb::read_image(d.file("bad.jpg")); }, "bad.jpg");
  mmb::write_file_atomic(d.file("empty.png"), "");
  mmb::testing::expect_throw_with([&] { mmb::read_image(d.file("empty.png")); }, "empty file");
  mmb::testing::expect_throw_with([&] { mmb::read_image(d.file("missing.png")); }, "missing.png");
}

TEST(Image, SizeLimitsAreEnforcedBeforeDecoding) {
  std::string png = mmb::encode_png(gradient(64, 32));
  mmb::ImageLimits small;
  small.max_width = 32;
  mmb::testing::expect_throw_with([&] { mmb::decode_image(png, "wide.png", 3, small); }, "outside the limit");
  mmb::ImageLimits tiny_file;
  tiny_file.max_file_bytes = 10;
  mmb::testing::expect_throw_with([&] { mmb::decode_image(png, "big.png", 3, tiny_file); }, "exceeds the limit");
}
