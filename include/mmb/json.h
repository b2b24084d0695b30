// JSON helpers over nlohmann::json, with errors that name the file and the key.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "mmb/error.h"

namespace mmb {

using Json = nlohmann::json;

// Parses a JSON file. Throws mmb::Error "read_json_file: <path>: <parser message>".
Json read_json_file(const std::string& path);

// Writes `value` atomically, pretty-printed with `indent` spaces (-1 = compact) and a final '\n'.
void write_json_file(const std::string& path, const Json& value, int indent = 2);

// Returns obj[key] converted to T. Throws mmb::Error naming `context` (e.g. "config.json")
// and the key when the key is missing or has the wrong type.
template <typename T>
T json_get(const Json& obj, const std::string& key, const std::string& context) {
  if (!obj.is_object()) fail(context, ": expected a JSON object, found ", obj.type_name());
  auto it = obj.find(key);
  if (it == obj.end()) fail(context, ": missing key '", key, "'");
  try {
    return it->get<T>();
  } catch (const nlohmann::json::exception& e) {
    fail(context, ": key '", key, "' has the wrong type (", it->type_name(), "): ", e.what());
  }
}

// Same, with a default when the key is absent (a present key of the wrong type still throws).
template <typename T>
T json_get_or(const Json& obj, const std::string& key, const T& fallback,
              const std::string& context) {
  if (obj.is_object() && !obj.contains(key)) return fallback;
  return json_get<T>(obj, key, context);
}

}  // namespace mmb
