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
  // tests/fixtures/red16x8.jpg: 16x8 of rgb(200,30,40), written by stb_image_write (quality 95),
  // a different codebase from the decoder.
  mmb::Image img = mmb::read_image(std::string(MMB_SOURCE_DIR) + "/tests/fixtures/red16x8.jpg");
  EXPECT_EQ(img.width, 16);
  EXPECT_EQ(img.height, 8);
  EXPECT_EQ(img.channels, 3);
  EXPECT_NEAR(img.at(5, 5)[0], 200, 6);
  EXPECT_NEAR(img.at(5, 5)[1], 30, 6);
  EXPECT_NEAR(img.at(5, 5)[2], 40, 6);
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
