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
  // The documented round trip: decode(encode(t, false)) == t for text without special strings.
  if (!has_special(bytes) && tok.decode(plain) != bytes) std::abort();
  // Ids out of range are a clear error.
  fuzz::expect_clear_error([&] { (void)tok.decode({tok.vocab_size() + 7}); });
  return 0;
}
