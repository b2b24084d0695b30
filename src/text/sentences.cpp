// Sentence splitter (rules in include/mmb/sentences.h). A single left-to-right scan: no regex,
// no locale, bytes in and byte offsets out, so it is fast enough to run on every generated
// token's text during sentence-level search.
#include "mmb/sentences.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace mmb {
namespace {

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }
bool is_terminator(char c) { return c == '.' || c == '?' || c == '!'; }
bool is_upper(char c) { return std::isupper(static_cast<unsigned char>(c)) != 0; }

// Length of a closing quote or bracket at text[i] (ASCII or the UTF-8 ” ’ »), else 0.
size_t closer_length(std::string_view text, size_t i) {
  const char c = text[i];
  if (c == '"' || c == '\'' || c == ')' || c == ']' || c == '}') return 1;
  if (text.compare(i, 3, "\xE2\x80\x9D") == 0 || text.compare(i, 3, "\xE2\x80\x99") == 0) return 3;
  if (text.compare(i, 2, "\xC2\xBB") == 0) return 2;
  return 0;
}

// Abbreviations that never end a sentence (lower case, without the final '.').
constexpr std::array<std::string_view, 15> kNeverEnd = {
    "e.g", "i.e", "cf", "vs", "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "approx", "fig", "al"};

enum class Abbrev { kNone, kNever, kIfNextUpper };

// Classifies the word that ends just before the '.' at `dot` (the word starts after the last
// space at or after `sentence_begin`).
Abbrev classify_word(std::string_view text, size_t sentence_begin, size_t dot) {
  size_t b = dot;
  while (b > sentence_begin && !is_space(text[b - 1])) --b;
  const bool at_sentence_start = b == sentence_begin;
  while (b < dot && (text[b] == '(' || text[b] == '"' || text[b] == '\'' || text[b] == '[')) ++b;
  if (b == dot) return Abbrev::kNone;
  std::string word(text.substr(b, dot - b));
  std::transform(word.begin(), word.end(), word.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (std::find(kNeverEnd.begin(), kNeverEnd.end(), word) != kNeverEnd.end()) return Abbrev::kNever;
  // "1." opening a sentence is a list number.
  if (at_sentence_start && std::all_of(word.begin(), word.end(),
                                       [](unsigned char c) { return std::isdigit(c); }))
    return Abbrev::kNever;
  if (word == "etc") return Abbrev::kIfNextUpper;
  // Dotted acronym: single letters separated by dots ("u.s", "a.m").
  bool dotted = word.size() >= 3;
  for (size_t k = 0; k < word.size() && dotted; ++k)
    dotted = (k % 2 == 0) ? std::isalpha(static_cast<unsigned char>(word[k])) != 0 : word[k] == '.';
  return dotted ? Abbrev::kIfNextUpper : Abbrev::kNone;
}

}  // namespace

std::vector<SentenceSpan> sentence_spans(std::string_view text, const SentenceSplitOptions& options) {
  std::vector<SentenceSpan> spans;
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    while (i < n && is_space(text[i])) ++i;  // skip to the sentence's first byte
    if (i >= n) break;
    const size_t begin = i;
    SentenceSpan span{begin, n, false};
    while (i < n) {
      const char c = text[i];
      if (c == '\n' && options.split_on_newline) {
        size_t e = i;
        while (e > begin && is_space(text[e - 1])) --e;
        span = {begin, e, true};
        break;
      }
      if (!is_terminator(c)) {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < n && is_terminator(text[j])) ++j;
      const bool single_dot = j == i + 1 && c == '.';
      for (size_t len; j < n && (len = closer_length(text, j)) > 0;) j += len;
      if (j < n && !is_space(text[j])) {  // "3.5", "e.g.x": inside a token
        i = j;
        continue;
      }
      if (single_dot) {
        Abbrev a = classify_word(text, begin, i);
        size_t k = j;
        while (k < n && is_space(text[k])) ++k;
        const bool next_upper_or_end = k >= n || is_upper(text[k]);
        if (a == Abbrev::kNever || (a == Abbrev::kIfNextUpper && !next_upper_or_end)) {
          i = j;
          continue;
        }
      }
      span = {begin, j, true};
      i = j;
      break;
    }
    if (!span.terminated) {  // trailing text: trim its end
      size_t e = n;
      while (e > begin && is_space(text[e - 1])) --e;
      span.end = e;
      i = n;
    }
    spans.push_back(span);
  }
  return spans;
}

std::vector<std::string> split_sentences(std::string_view text, const SentenceSplitOptions& options) {
  std::vector<std::string> out;
  for (const SentenceSpan& s : sentence_spans(text, options))
    out.emplace_back(text.substr(s.begin, s.end - s.begin));
  return out;
}

bool ends_sentence(std::string_view text, const SentenceSplitOptions& options) {
  auto spans = sentence_spans(text, options);
  if (spans.empty() || !spans.back().terminated) return false;
  for (size_t k = spans.back().end; k < text.size(); ++k)
    if (!is_space(text[k])) return false;
  return true;
}

}  // namespace mmb
