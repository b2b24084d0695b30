// Confidence phrases per level (MMBoundary's verbal confidence; include/mmb/confidence.h). The
// default pools are data/confidence_phrases.json, compiled in at configure time.
#include <algorithm>
#include <cctype>
#include <cstring>

#include "mmb/confidence.h"
#include "mmb/error.h"

namespace mmb {
namespace confidence_detail {
extern const char* const kBuiltinPhrasesJson;
}

namespace {

std::vector<std::string> phrase_list(const Json& level, const char* key, const std::string& where, bool required) {
  if (!level.contains(key)) {
    if (required) fail(where, ": missing key \"", key, "\"");
    return {};
  }
  const Json& a = level.at(key);
  if (!a.is_array()) fail(where, ": \"", key, "\" must be an array of strings");
  std::vector<std::string> out;
  for (const auto& p : a) {
    if (!p.is_string() || p.get<std::string>().empty())
      fail(where, ": \"", key, "\" must hold non-empty strings, found ", p.dump());
    std::string s = p.get<std::string>();
    for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    out.push_back(std::move(s));
  }
  if (required && out.empty()) fail(where, ": \"", key, "\" is empty");
  return out;
}

}  // namespace

ConfidencePhrases ConfidencePhrases::from_json(const Json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("levels") || !j["levels"].is_array())
    fail(where, ": expected {\"levels\": [...]}");
  ConfidencePhrases out;
  double last = 0;
  for (size_t i = 0; i < j["levels"].size(); ++i) {
    const Json& l = j["levels"][i];
    const std::string w = where + " levels[" + std::to_string(i) + "]";
    if (!l.is_object()) fail(w, ": expected an object");
    ConfidenceLevel level;
    level.level = json_get<int>(l, "level", w);
    level.confidence = json_get<double>(l, "confidence", w);
    if (level.level != int(i) + 1) fail(w, ": expected level ", i + 1, ", found ", level.level);
    if (!(level.confidence > last && level.confidence < 1))
      fail(w, ": confidence must increase with the level and lie in (0, 1), found ", level.confidence);
    last = level.confidence;
    level.pool = phrase_list(l, "pool", w, true);
    level.variants = phrase_list(l, "variants", w, false);
    out.levels.push_back(std::move(level));
  }
  if (out.levels.size() != 5) fail(where, ": expected 5 levels, found ", out.levels.size());
  return out;
}

ConfidencePhrases ConfidencePhrases::load(const std::string& path) {
  return from_json(read_json_file(path), path);
}

const ConfidencePhrases& ConfidencePhrases::builtin() {
  static const ConfidencePhrases kBuiltin =
      from_json(Json::parse(confidence_detail::kBuiltinPhrasesJson), "data/confidence_phrases.json");
  return kBuiltin;
}

const ConfidenceLevel& ConfidencePhrases::at(int level) const {
  if (level < 1 || level > int(levels.size())) fail("ConfidencePhrases: level ", level, " outside 1..", levels.size());
  return levels[size_t(level - 1)];
}

const std::string& ConfidencePhrases::sample(int level, std::mt19937_64& rng) const {
  const auto& pool = at(level).pool;
  return pool[std::uniform_int_distribution<size_t>(0, pool.size() - 1)(rng)];
}

std::vector<std::pair<std::string, double>> ConfidencePhrases::table() const {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& l : levels) {
    for (const auto& p : l.pool) out.emplace_back(p, l.confidence);
    for (const auto& p : l.variants) out.emplace_back(p, l.confidence);
  }
  return out;
}

std::string attach_phrase(const std::string& sentence, const std::string& phrase) {
  size_t end = sentence.size();
  while (end > 0 && std::isspace(static_cast<unsigned char>(sentence[end - 1]))) --end;
  size_t body = end;
  while (body > 0 && std::strchr(".?!\"')]", sentence[body - 1]) != nullptr) --body;
  std::string tail = sentence.substr(body, end - body);
  if (tail.empty()) tail = ".";
  std::string p = phrase;
  // "i" and "i'm" as words are capitalised.
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] == 'i' && (i == 0 || p[i - 1] == ' ') && (i + 1 == p.size() || p[i + 1] == ' ' || p[i + 1] == '\''))
      p[i] = 'I';
  return sentence.substr(0, body) + ", " + p + tail;
}

size_t claim_length(std::string_view sentence, const ConfidencePhrases& phrases) {
  std::string lower(sentence);
  for (char& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
  size_t end = lower.size();
  while (end > 0 && (std::isspace(static_cast<unsigned char>(lower[end - 1])) ||
                     std::strchr(".?!\"')]", lower[end - 1]) != nullptr))
    --end;
  size_t best = 0;
  for (const auto& [phrase, p] : phrases.table()) {
    (void)p;
    if (phrase.size() <= best || phrase.size() >= end) continue;
    const size_t at = end - phrase.size();
    if (lower.compare(at, phrase.size(), phrase) != 0) continue;
    size_t before = at;  // the phrase must follow a comma (attach_phrase's form)
    while (before > 0 && std::isspace(static_cast<unsigned char>(lower[before - 1]))) --before;
    if (before == at || before == 0 || lower[before - 1] != ',') continue;
    best = phrase.size();
  }
  if (best == 0) return sentence.size();
  size_t claim = end - best;
  while (claim > 0 && (std::isspace(static_cast<unsigned char>(lower[claim - 1])) || lower[claim - 1] == ',')) --claim;
  return claim == 0 ? sentence.size() : claim;
}

}  // namespace mmb
