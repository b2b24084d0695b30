// Confidence elicitation (the calibration study's letter method, yes/no probability, sequence confidence,
// verbalised confidence). Departures from the calibration study: letters are matched in both SentencePiece
// forms ("A", "▁A"), since our template encodes the response as its own chunk; the confidence is
// the softmax over the full vocabulary of the logits the greedy step chose from (the image token
// is masked there, as in every generation step).
#include "mmb/elicitation.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "mmb/confidence.h"
#include "mmb/error.h"

namespace mmb {
namespace {

const char* const kWordStart = "\xE2\x96\x81";  // "▁"

void add_unique(std::vector<int64_t>& v, int64_t id) {
  if (id >= 0 && std::find(v.begin(), v.end(), id) == v.end()) v.push_back(id);
}

// Records, per row, the first greedy step whose argmax is a letter; then ends that row (EOS).
class LetterRecorder : public LogitsProcessor {
 public:
  LetterRecorder(const LetterTokens& letters, int64_t eos, int64_t rows, bool keep_logits, double temperature)
      : letters_(letters), eos_(eos), keep_logits_(keep_logits), temperature_(temperature), answers_(size_t(rows)) {}

  void process(torch::Tensor& logits, const torch::Tensor& generated) override {
    const int64_t B = logits.size(0);
    auto argmax = logits.argmax(-1).cpu();  // (B,)
    auto am = argmax.accessor<int64_t, 1>();
    const int step = int(generated.size(1));
    std::vector<int64_t> rows;
    for (int64_t b = 0; b < B; ++b) {
      if (answers_[b].letter >= 0) continue;
      if (letters_.letter_of(am[b]) >= 0) rows.push_back(b);
    }
    if (!rows.empty()) {
      auto idx = torch::tensor(rows, torch::kLong).to(logits.device());
      auto sel = logits.index_select(0, idx).to(torch::kFloat32).cpu();  // (R, V)
      auto probs = torch::softmax(sel / temperature_, -1);
      auto raw = temperature_ == 1.0 ? probs : torch::softmax(sel, -1);
      auto pa = probs.accessor<float, 2>();
      auto ra = raw.accessor<float, 2>();
      for (size_t r = 0; r < rows.size(); ++r) {
        auto& a = answers_[rows[r]];
        const int64_t tok = am[rows[r]];
        a.letter = letters_.letter_of(tok);
        a.confidence = pa[r][tok];
        a.raw_confidence = ra[r][tok];
        a.step = step;
        double total = 0;
        for (int l = 0; l < kMaxOptions; ++l) {
          double p = 0;
          for (auto id : letters_.ids[l]) p += pa[r][id];
          a.letter_probs[l] = p;
          total += p;
        }
        for (auto& p : a.letter_probs) p = total > 0 ? p / total : 0.0;
        if (keep_logits_) a.logits = sel[r].clone();
      }
    }
    // Rows with an answer stop: only EOS remains possible.
    for (int64_t b = 0; b < B; ++b) {
      if (answers_[b].letter < 0) continue;
      logits[b].fill_(-std::numeric_limits<float>::infinity());
      logits[b][eos_] = 0.0f;
    }
  }

  std::vector<LetterAnswer> take() { return std::move(answers_); }

 private:
  const LetterTokens& letters_;
  int64_t eos_;
  bool keep_logits_;
  double temperature_;
  std::vector<LetterAnswer> answers_;
};

}  // namespace

// ---- letters ------------------------------------------------------------------------------------

int LetterTokens::letter_of(int64_t id) const {
  for (int l = 0; l < kMaxOptions; ++l)
    if (std::find(ids[l].begin(), ids[l].end(), id) != ids[l].end()) return l;
  return -1;
}

LetterTokens letter_tokens(const Tokenizer& tok) {
  LetterTokens t;
  for (int l = 0; l < kMaxOptions; ++l) {
    const std::string letter(1, char('A' + l));
    add_unique(t.ids[l], tok.piece_to_id(letter));
    add_unique(t.ids[l], tok.piece_to_id(kWordStart + letter));
    if (t.ids[l].empty())
      fail("letter_tokens: the tokenizer has no piece for option letter '", letter, "' (nor '▁", letter, "')");
  }
  return t;
}

std::string calibration_study_mc_prompt(const std::string& question, const std::vector<std::string>& options) {
  if (options.empty() || options.size() > size_t(kMaxOptions))
    fail("calibration_study_mc_prompt: expected 1..", kMaxOptions, " options, got ", options.size());
  std::string p = question;
  for (size_t i = 0; i < options.size(); ++i) p += std::string("\n") + char('A' + i) + ". " + options[i];
  return p + "\nPlease provide the option letter directly.";
}

std::vector<LetterAnswer> letter_answers(Vlm& vlm, const std::vector<std::string>& prompts,
                                         const std::vector<const Image*>& images, const LetterOptions& options) {
  if (options.max_steps < 1) fail("letter_answers: max_steps must be >= 1, got ", options.max_steps);
  if (!(options.temperature > 0) || !std::isfinite(options.temperature))
    fail("letter_answers: temperature must be finite and > 0, got ", options.temperature);
  torch::NoGradGuard ng;
  const LetterTokens letters = letter_tokens(vlm.tokenizer());
  std::vector<int64_t> prefix;
  if (!options.response_prefix.empty())
    for (auto id : vlm.tokenizer().encode(options.response_prefix, /*add_bos=*/false, /*parse_special=*/false))
      prefix.push_back(id);
  auto in = vlm.encode_prompts(prompts, images);
  const int64_t B = in.input_ids.size(0);
  auto state = prefill(vlm.model(), in, int64_t(prefix.size()) + options.max_steps + 1);
  if (!prefix.empty()) {
    auto ids = torch::tensor(prefix, torch::kLong).unsqueeze(0).repeat({B, 1}).to(in.input_ids.device());
    extend(vlm.model(), state, ids);
  }
  LetterRecorder recorder(letters, vlm.tokenizer().eos_id(), B, options.keep_logits, options.temperature);
  SampleOptions s;
  s.stop = vlm.default_stop(options.max_steps);
  generate(vlm.model(), state, s, {&recorder});
  return recorder.take();
}

// ---- yes / no -------------------------------------------------------------------------------------

YesNoTokens yes_no_tokens(const Tokenizer& tok) {
  YesNoTokens t;
  for (const char* w : {"Yes", "yes", "YES"}) {
    auto ids = tok.encode(w, false, false);
    if (!ids.empty()) add_unique(t.yes, ids.front());
    add_unique(t.yes, tok.piece_to_id(w));
    add_unique(t.yes, tok.piece_to_id(std::string(kWordStart) + w));
  }
  for (const char* w : {"No", "no", "NO"}) {
    auto ids = tok.encode(w, false, false);
    if (!ids.empty()) add_unique(t.no, ids.front());
    add_unique(t.no, tok.piece_to_id(w));
    add_unique(t.no, tok.piece_to_id(std::string(kWordStart) + w));
  }
  // A token that starts both (a bare "▁" when a small vocabulary spells "YES" as "▁", "Y", ...)
  // tells nothing: drop it from both sides.
  std::vector<int64_t> shared;
  for (auto id : t.yes)
    if (std::find(t.no.begin(), t.no.end(), id) != t.no.end()) shared.push_back(id);
  for (auto id : shared) {
    t.yes.erase(std::find(t.yes.begin(), t.yes.end(), id));
    t.no.erase(std::find(t.no.begin(), t.no.end(), id));
  }
  if (t.yes.empty() || t.no.empty())
    fail("yes_no_tokens: the tokenizer has no token that starts only \"yes\" or only \"no\" (",
         tok.source(), " spells both from the same first piece; a larger vocabulary has \"▁Yes\" / \"▁No\")");
  return t;
}

std::vector<double> yes_probability(const torch::Tensor& logits, const YesNoTokens& tokens, double temperature) {
  if (logits.dim() != 2) fail("yes_probability: expected logits (B, V), got ", logits.dim(), " dimensions");
  if (!(temperature > 0) || !std::isfinite(temperature))
    fail("yes_probability: temperature must be finite and > 0, got ", temperature);
  auto probs = torch::softmax(logits.to(torch::kFloat64) / temperature, -1).cpu();  // (B, V)
  const int64_t V = probs.size(1);
  for (auto ids : {&tokens.yes, &tokens.no})
    for (auto id : *ids)
      if (id >= V) fail("yes_probability: token ", id, " outside the vocabulary of ", V);
  auto yes = probs.index_select(1, torch::tensor(tokens.yes, torch::kLong)).sum(1);
  auto no = probs.index_select(1, torch::tensor(tokens.no, torch::kLong)).sum(1);
  std::vector<double> out(size_t(probs.size(0)));
  auto ya = yes.accessor<double, 1>(), na = no.accessor<double, 1>();
  for (size_t b = 0; b < out.size(); ++b) {
    const double total = ya[b] + na[b];
    out[b] = total > 0 ? ya[b] / total : 0.5;
  }
  return out;
}

// ---- one answer -----------------------------------------------------------------------------------

AnswerConfidence answer_confidence(Vlm& vlm, const std::string& prompt, const Image* image,
                                   const Generation& generation, const ConfidenceTemperatures& temperatures) {
  if (generation.tokens.empty()) fail("answer_confidence: the generation has no tokens");
  AnswerConfidence out;
  const int64_t first = generation.tokens.front();
  auto contains = [](const std::vector<int64_t>& v, int64_t id) {
    return std::find(v.begin(), v.end(), id) != v.end();
  };
  YesNoTokens yn;
  bool have_yes_no = true;
  try {
    yn = yes_no_tokens(vlm.tokenizer());
  } catch (const Error&) {
    have_yes_no = false;  // a vocabulary without distinct yes/no pieces: no yes/no method
  }
  LetterTokens letters;
  bool have_letters = true;
  try {
    letters = letter_tokens(vlm.tokenizer());
  } catch (const Error&) {
    have_letters = false;
  }
  const bool is_yes_no = have_yes_no && (contains(yn.yes, first) || contains(yn.no, first));
  const bool is_letter = have_letters && letters.letter_of(first) >= 0;
  if (!is_yes_no && !is_letter) {
    out.method = "sequence";
    out.confidence = sequence_confidence(generation.logprobs);
    return out;
  }
  torch::NoGradGuard ng;
  auto state = prefill(vlm.model(), vlm.encode_prompt(prompt, image), 1);
  if (is_yes_no) {
    out.method = "yes_no";
    out.temperature = temperatures.yes_no;
    const double p_yes = yes_probability(state.last_logits, yn, temperatures.yes_no)[0];
    out.confidence = contains(yn.yes, first) ? p_yes : 1 - p_yes;
  } else {
    out.method = "letter";
    out.temperature = temperatures.mc;
    auto probs = torch::softmax(state.last_logits[0].to(torch::kFloat64) / temperatures.mc, -1);
    out.confidence = probs[first].item<double>();
  }
  return out;
}

// ---- sequence -------------------------------------------------------------------------------------

double sequence_confidence(const std::vector<float>& logprobs) {
  if (logprobs.empty()) fail("sequence_confidence: no tokens");
  double s = 0;
  for (float lp : logprobs) s += lp;
  return std::exp(s / double(logprobs.size()));
}

double mean_entropy(const std::vector<float>& entropies) {
  if (entropies.empty()) fail("mean_entropy: no tokens");
  double s = 0;
  for (float e : entropies) s += e;
  return s / double(entropies.size());
}

// ---- verbalised -----------------------------------------------------------------------------------

const std::vector<std::pair<std::string, double>>& verbal_confidence_phrases() {
  static const std::vector<std::pair<std::string, double>> kPhrases = ConfidencePhrases::builtin().table();
  return kPhrases;
}

namespace {

std::vector<std::string> words_of(std::string_view text) {
  std::string norm;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text.compare(i, 3, "\xE2\x80\x99") == 0) {  // ’
      norm += '\'';
      i += 2;
    } else {
      norm += char(std::tolower(static_cast<unsigned char>(text[i])));
    }
  }
  std::vector<std::string> words;
  std::string w;
  for (char c : norm) {
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '\'') {
      w += c;
    } else if (!w.empty()) {
      words.push_back(w);
      w.clear();
    }
  }
  if (!w.empty()) words.push_back(w);
  return words;
}

}  // namespace

VerbalConfidence parse_verbal_confidence(std::string_view text) {
  VerbalConfidence out;
  // Numbers: scan every number, keep the last one with a probability reading.
  const std::string s(text);
  for (size_t i = 0; i < s.size();) {
    if (!std::isdigit(static_cast<unsigned char>(s[i])) ||
        (i > 0 && (std::isalnum(static_cast<unsigned char>(s[i - 1])) || s[i - 1] == '.'))) {
      ++i;
      continue;
    }
    size_t j = i;
    bool has_dot = false;
    while (j < s.size() &&
           (std::isdigit(static_cast<unsigned char>(s[j])) ||
            (s[j] == '.' && !has_dot && j + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[j + 1]))))) {
      has_dot |= s[j] == '.';
      ++j;
    }
    const double v = std::strtod(s.substr(i, j - i).c_str(), nullptr);
    size_t k = j;
    while (k < s.size() && s[k] == ' ') ++k;
    auto lower_at = [&](size_t pos, const char* w) {
      const size_t n = std::char_traits<char>::length(w);
      if (pos + n > s.size()) return false;
      for (size_t q = 0; q < n; ++q)
        if (std::tolower(static_cast<unsigned char>(s[pos + q])) != w[q]) return false;
      return true;
    };
    double value = -1;
    size_t end = j;
    if (k < s.size() && s[k] == '%') {
      value = v / 100.0;
      end = k + 1;
    } else if (lower_at(k, "percent")) {
      value = v / 100.0;
      end = k + 7;
    } else if (k < s.size() && s[k] == '/') {
      size_t m = k + 1;
      while (m < s.size() && s[m] == ' ') ++m;
      size_t e = m;
      while (e < s.size() && std::isdigit(static_cast<unsigned char>(s[e]))) ++e;
      if (e > m) {
        const double d = std::strtod(s.substr(m, e - m).c_str(), nullptr);
        if (d > 0) value = v / d;
        end = e;
      }
    } else if (lower_at(k, "out of ")) {
      size_t m = k + 7;
      size_t e = m;
      while (e < s.size() && std::isdigit(static_cast<unsigned char>(s[e]))) ++e;
      if (e > m) {
        const double d = std::strtod(s.substr(m, e - m).c_str(), nullptr);
        if (d > 0) value = v / d;
        end = e;
      }
    } else if (has_dot) {
      value = v;
    }
    if (value >= 0 && value <= 1) {
      out.found = true;
      out.numeric = true;
      out.value = value;
      out.matched = s.substr(i, end - i);
    }
    i = std::max(j, i + 1);
  }
  if (out.found) return out;
  // Phrases: the longest (in words) that occurs as whole words.
  const auto words = words_of(text);
  size_t best_len = 0;
  for (const auto& [phrase, p] : verbal_confidence_phrases()) {
    const auto pw = words_of(phrase);
    if (pw.size() <= best_len || pw.size() > words.size()) continue;
    for (size_t i = 0; i + pw.size() <= words.size(); ++i) {
      if (std::equal(pw.begin(), pw.end(), words.begin() + long(i))) {
        best_len = pw.size();
        out = {true, p, phrase, false};
        break;
      }
    }
  }
  return out;
}

}  // namespace mmb

namespace mmb {

std::string claim_key(std::string_view sentence) {
  auto words = words_of(sentence);
  for (bool changed = true; changed;) {
    changed = false;
    size_t best = 0;
    for (const auto& [phrase, p] : verbal_confidence_phrases()) {
      (void)p;
      const auto pw = words_of(phrase);
      if (pw.size() <= best || pw.size() >= words.size()) continue;
      if (std::equal(pw.begin(), pw.end(), words.end() - long(pw.size()))) best = pw.size();
    }
    if (best > 0) {
      words.resize(words.size() - best);
      changed = true;
    }
  }
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

}  // namespace mmb
