#include "mmb/json.h"

#include <set>
#include <vector>

#include "mmb/atomic_file.h"

namespace mmb {

Json parse_json(std::string_view text, const std::string& context) {
  // The parser calls back on every event; the keys seen so far of each open object are kept.
  std::vector<std::set<std::string>> keys;
  const Json::parser_callback_t check = [&](int depth, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
        keys.emplace_back();
        [[fallthrough]];
      case Json::parse_event_t::array_start:
        if (depth >= kMaxJsonDepth) fail(context, ": nested deeper than ", kMaxJsonDepth, " levels");
        break;
      case Json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second)
          fail(context, ": key '", parsed.get<std::string>(), "' appears twice in one object");
        break;
      default:
        break;
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), check);
  } catch (const nlohmann::json::exception& e) {  // a syntax error, or a number too large (1e400)
    fail(context, ": invalid JSON: ", e.what());
  }
}

Json read_json_file(const std::string& path) {
  return parse_json(read_file(path), "read_json_file: " + path);
}

void write_json_file(const std::string& path, const Json& value, int indent) {
  std::string text = value.dump(indent);
  text.push_back('\n');
  write_file_atomic(path, text);
}

}  // namespace mmb
