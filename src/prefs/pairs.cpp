// TRL preference JSONL (include/mmb/prefs.h).
#include "mmb/prefs.h"

#include "mmb/error.h"
#include "mmb/jsonl.h"

namespace mmb {
namespace {

const char* const kFn = "read_preference_pairs";

std::string strip_image_markers(std::string s) {
  for (const std::string m : {"<image>\n", "\n<image>", "<image>"})
    for (auto p = s.find(m); p != std::string::npos; p = s.find(m)) s.erase(p, m.size());
  return s;
}

// A message content: a string or TRL's list of {"type": "text" | "image", ...} parts.
std::string content_text(const Json& c, const std::string& where) {
  if (c.is_string()) return strip_image_markers(c.get<std::string>());
  if (!c.is_array()) fail(kFn, ": ", where, ": a content must be a string or a list of parts, found ", c.type_name());
  std::string text;
  for (const Json& part : c) {
    const std::string type = json_get<std::string>(part, "type", where + " (content part)");
    if (type == "text") {
      text += json_get<std::string>(part, "text", where + " (text part)");
    } else if (type != "image") {
      fail(kFn, ": ", where, ": unknown content part type '", type, "' (text, image)");
    }
  }
  return strip_image_markers(text);
}

// A response: a string or a list with one assistant message.
std::string response_text(const Json& j, const std::string& key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end()) fail(kFn, ": ", where, ": missing key '", key, "'");
  std::string text;
  if (it->is_string()) {
    text = strip_image_markers(it->get<std::string>());
  } else if (it->is_array()) {
    if (it->size() != 1) fail(kFn, ": ", where, ": '", key, "' must hold one assistant message, found ", it->size());
    const Json& m = (*it)[0];
    const std::string role = json_get<std::string>(m, "role", where + " (" + key + ")");
    if (role != "assistant") fail(kFn, ": ", where, ": '", key, "' message has role '", role, "', expected assistant");
    text = content_text(json_get<Json>(m, "content", where + " (" + key + ")"), where);
  } else {
    fail(kFn, ": ", where, ": '", key, "' must be a string or a message list, found ", it->type_name());
  }
  if (text.find_first_not_of(" \t\n") == std::string::npos) fail(kFn, ": ", where, ": '", key, "' is empty");
  return text;
}

std::vector<ChatTurn> prompt_turns(const Json& p, const std::string& where) {
  if (p.is_string()) {
    const std::string q = strip_image_markers(p.get<std::string>());
    if (q.find_first_not_of(" \t\n") == std::string::npos) fail(kFn, ": ", where, ": 'prompt' is empty");
    return {{q, ""}};
  }
  if (!p.is_array()) fail(kFn, ": ", where, ": 'prompt' must be a string or a message list, found ", p.type_name());
  std::vector<ChatTurn> turns;
  bool open = false;  // the last turn's question has no answer yet
  for (size_t i = 0; i < p.size(); ++i) {
    const std::string ctx = where + " (prompt message " + std::to_string(i) + ")";
    const std::string role = json_get<std::string>(p[i], "role", ctx);
    const std::string text = content_text(json_get<Json>(p[i], "content", ctx), ctx);
    if (role == "system") {
      if (i != 0) fail(kFn, ": ", ctx, ": a system message must come first");
    } else if (role == "user") {
      if (open) fail(kFn, ": ", ctx, ": two user messages in a row");
      turns.push_back({text, ""});
      open = true;
    } else if (role == "assistant") {
      if (!open) fail(kFn, ": ", ctx, ": an assistant message must follow a user message");
      turns.back().assistant = text;
      open = false;
    } else {
      fail(kFn, ": ", ctx, ": unknown role '", role, "' (system, user, assistant)");
    }
  }
  if (turns.empty() || !open) fail(kFn, ": ", where, ": 'prompt' must end with a user message");
  return turns;
}

}  // namespace

Json PairFileReport::to_json() const {
  return {{"lines", lines},
          {"pairs", pairs},
          {"skipped", skipped},
          {"skipped_examples", skipped_examples},
          {"sources", sources}};
}

PreferencePair parse_preference_pair(const Json& j, const std::string& where) {
  if (!j.is_object()) fail(kFn, ": ", where, ": expected an object, found ", j.type_name());
  PreferencePair p;
  p.where = where;
  auto prompt = j.find("prompt");
  if (prompt == j.end()) fail(kFn, ": ", where, ": missing key 'prompt'");
  p.prompt = prompt_turns(*prompt, where);
  p.chosen = response_text(j, "chosen", where);
  p.rejected = response_text(j, "rejected", where);
  if (p.chosen == p.rejected) fail(kFn, ": ", where, ": chosen and rejected are the same text");
  if (auto im = j.find("images"); im != j.end() && !im->is_null()) {
    if (!im->is_array()) fail(kFn, ": ", where, ": 'images' must be a list of paths");
    if (im->size() > 1) fail(kFn, ": ", where, ": ", im->size(), " images; mmb's pairs have at most one");
    if (im->size() == 1) {
      if (!(*im)[0].is_string()) fail(kFn, ": ", where, ": 'images' must hold path strings");
      p.image = (*im)[0].get<std::string>();
      if (p.image.empty()) fail(kFn, ": ", where, ": empty image path");
    }
  }
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "prompt" && it.key() != "chosen" && it.key() != "rejected" && it.key() != "images")
      p.extra[it.key()] = *it;
  return p;
}

std::vector<PreferencePair> read_preference_pairs(const std::string& path, bool skip_bad, PairFileReport* report) {
  PairFileReport local;
  PairFileReport& r = report ? *report : local;
  r = PairFileReport{};
  std::vector<PreferencePair> pairs;
  JsonlReader in(path);
  while (true) {
    Json j;
    const int64_t before = in.line_number();
    try {
      if (!in.next(j)) break;
      pairs.push_back(parse_preference_pair(j, in.where()));
    } catch (const Error& e) {
      // Only a malformed line is skipped; an unreadable file is an error with or without skip_bad.
      if (!skip_bad || in.line_number() == before) throw;
      ++r.skipped;
      if (r.skipped_examples.size() < 5) r.skipped_examples.push_back(e.what());
      continue;
    }
    const Json& extra = pairs.back().extra;
    const auto src = extra.find("source");
    r.sources[src != extra.end() && src->is_string() ? src->get<std::string>() : ""]++;
  }
  r.pairs = int64_t(pairs.size());
  r.lines = r.pairs + r.skipped;
  if (pairs.empty()) fail(kFn, ": ", path, ": no preference pair (", r.lines, " lines, ", r.skipped, " skipped)");
  return pairs;
}

Json preference_pair_to_json(const PreferencePair& p) {
  Json j = p.extra.is_object() ? p.extra : Json::object();
  if (p.prompt.size() == 1) {
    j["prompt"] = p.prompt[0].user;
  } else {
    Json msgs = Json::array();
    for (const ChatTurn& t : p.prompt) {
      msgs.push_back({{"role", "user"}, {"content", t.user}});
      if (!t.assistant.empty()) msgs.push_back({{"role", "assistant"}, {"content", t.assistant}});
    }
    j["prompt"] = msgs;
  }
  j["chosen"] = p.chosen;
  j["rejected"] = p.rejected;
  j["images"] = p.image.empty() ? Json::array() : Json::array({p.image});
  return j;
}

void write_preference_pairs(const std::string& path, const std::vector<PreferencePair>& pairs) {
  JsonlWriter w(path);
  for (const auto& p : pairs) w.write(preference_pair_to_json(p));
  w.close();
}

}  // namespace mmb
