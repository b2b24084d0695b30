// The sentence splitter (every step-level method's definition of a step).
#include "fuzz_util.h"
#include "mmb/sentences.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmb;
  const std::string_view text = fuzz::bytes_of(data, size);
  for (bool newline : {true, false}) {
    SentenceSplitOptions opt;
    opt.split_on_newline = newline;
    size_t at = 0;
    for (const SentenceSpan& s : sentence_spans(text, opt)) {
      // Spans are ordered, non-empty, within the text, and start on a non-space byte.
      if (s.begin < at || s.end <= s.begin || s.end > text.size()) std::abort();
      if (text[s.begin] == ' ' || text[s.begin] == '\n' || text[s.begin] == '\t') std::abort();
      at = s.end;
    }
    (void)ends_sentence(text, opt);
  }
  return 0;
}
