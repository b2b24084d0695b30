// A model directory's chat_template.json, then a conversation rendered and tokenized with it.
#include <filesystem>

#include "fuzz_util.h"
#include "mmb/chat_template.h"
#include "mmb/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmb;
  static const Tokenizer tok = Tokenizer::load(MMB_SOURCE_DIR "/models/base/vlm/tokenizer.model");
  const std::string dir = fuzz::scratch_dir() + "/model";
  std::filesystem::create_directories(dir);
  fuzz::write_scratch("model/chat_template.json", fuzz::bytes_of(data, size));
  fuzz::expect_clear_error([&] {
    const ChatTemplate tmpl = chat_template_for(dir);
    const std::vector<ChatTurn> turns = {{"Is there a star?", "Yes."}, {"What colour is it?", "Red."}};
    const ChatExample ex = tokenize_chat(tok, tmpl, turns, true);
    if (ex.ids.size() != ex.loss_mask.size() || ex.response_begin > ex.ids.size()) std::abort();
    (void)tokenize_prompt(tok, tmpl, {{"Describe the image.", ""}}, true);
  });
  return 0;
}
