// Sentence splitting: the one definition of a "step" shared by every step-level method
// (MMBoundary's step confidences, CSR's sentence-level search, BDHS's per-sentence cuts).
//
// A sentence ends at a run of '.', '?' or '!' (plus closing quotes or brackets) followed by
// whitespace or the end of the text, and — by default — at a line break. Not a sentence end:
//   - a '.' inside a token: decimals "3.5", versions, "e.g.x";
//   - the abbreviations e.g. i.e. cf. vs. mr. mrs. ms. dr. prof. st. jr. sr. approx. fig. al.
//     (case-insensitive), never;
//   - "etc." and dotted acronyms such as "U.S." or "a.m.", unless the next word starts with an
//     upper-case letter (or the text ends);
//   - a list number at the start of a sentence: "1. The red cube" stays one sentence.
// Everything else ending in one of the terminators is an end, including "There are 3." (a '.'
// after a number that the text ends with or that a space follows).
//
// Spans are byte offsets into the original text (UTF-8 is passed through; only ASCII bytes are
// ever terminators or spaces). Whitespace between sentences belongs to no span, so
// text.substr(begin, end - begin) is the trimmed sentence.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace mmb {

struct SentenceSpan {
  size_t begin = 0;  // first byte of the sentence (not whitespace)
  size_t end = 0;    // one past its last byte (after the terminator and closing quotes)
  // True if a terminator or line break ended it; false for trailing text without one.
  bool terminated = false;
};

struct SentenceSplitOptions {
  bool split_on_newline = true;  // a line break ends a sentence even without a terminator
};

// The sentences of `text` in order; empty for empty or all-whitespace text.
std::vector<SentenceSpan> sentence_spans(std::string_view text,
                                         const SentenceSplitOptions& options = {});

// The same as strings (text.substr of each span).
std::vector<std::string> split_sentences(std::string_view text,
                                         const SentenceSplitOptions& options = {});

// True if `text` — a generation so far — has just completed a sentence: its last sentence is
// terminated and only whitespace follows. For stopping generation at a sentence end. A final
// "3." counts as an end (the stop cannot see whether a digit follows, nor can CSR's '.' stop);
// "e.g." does not.
bool ends_sentence(std::string_view text, const SentenceSplitOptions& options = {});

}  // namespace mmb
