// Tokenizer input: arbitrary text through the shipped model's tokenizer (encode with and without
// special strings, decode back), and arbitrary bytes as a tokenizer.model file.
#include <string>

#include "fuzz_util.h"
#include "mmb/tokenizer.h"

namespace {
const mmb::Tokenizer& shipped() {
  static const mmb::Tokenizer tok = mmb::Tokenizer::load(MMB_SOURCE_DIR "/models/base/vlm/tokenizer.model");
  return tok;
}
bool has_special(std::string_view s) {
  for (const char* p : {mmb::kImagePiece, mmb::kBosPiece, mmb::kEosPiece})
    if (s.find(p) != std::string_view::npos) return true;
  return false;
}
// Well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const uint8_t c = uint8_t(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) {
      const uint8_t d = uint8_t(s[i + k]);
      if ((d >> 6) != 2) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n;
  }
  return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmb;
  if (size == 0) return 0;
  const std::string_view bytes = fuzz::bytes_of(data + 1, size - 1);
  if (data[0] & 1) {  // a model file
    fuzz::expect_clear_error([&] {
      Tokenizer tok = Tokenizer::from_serialized(std::string(bytes), "fuzz.model");
      (void)tok.decode(tok.encode("Is there a red circle?"));
    });
    return 0;
  }
  const Tokenizer& tok = shipped();
  const std::vector<int32_t> ids = tok.encode(bytes, true, true);
  for (int32_t id : ids)
    if (id < 0 || (id >= tok.vocab_size() && id != tok.image_id())) std::abort();
  (void)tok.decode(ids);
  const std::vector<int32_t> plain = tok.encode(bytes, false, false);
  // The documented round trip: decode(encode(t, false)) == t for UTF-8 text without special
  // strings (SentencePiece replaces ill-formed bytes with U+FFFD).
  if (valid_utf8(bytes) && !has_special(bytes) && tok.decode(plain) != bytes) std::abort();
  // Ids out of range are a clear error.
  fuzz::expect_clear_error([&] { (void)tok.decode({tok.vocab_size() + 7}); });
  return 0;
}
