// JSON helpers over nlohmann::json, with errors that name the file and the key.
#pragma once
#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "mmb/error.h"

namespace mmb {

using Json = nlohmann::json;

// Deepest nesting of arrays and objects a reader accepts: deeper text is rejected while it is
// parsed, before it can exhaust memory or the stack of a recursive consumer.
constexpr int kMaxJsonDepth = 512;

// Parses JSON text, as every mmb reader of outside bytes does. Beyond the syntax (and UTF-8)
// checks of nlohmann::json it rejects nesting deeper than kMaxJsonDepth and an object with a
// repeated key (which of two values would be meant is undefined). Throws mmb::Error
// "<context>: <reason>".
Json parse_json(std::string_view text, const std::string& context);

// Parses a JSON file. Throws mmb::Error "read_json_file: <path>: <reason>".
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
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    // nlohmann converts a float or an out-of-range integer to T with a plain cast (undefined for
    // 1e400 or 2^64): only an integer that T holds exactly is taken.
    const Json& v = *it;
    bool fits = false;
    if (v.is_number_unsigned()) {
      fits = v.get<uint64_t>() <= uint64_t(std::numeric_limits<T>::max());
    } else if (v.is_number_integer()) {
      const int64_t x = v.get<int64_t>();
      fits = std::is_signed_v<T> ? (x >= int64_t(std::numeric_limits<T>::min()) &&
                                    x <= int64_t(std::numeric_limits<T>::max()))
                                 : (x >= 0 && uint64_t(x) <= uint64_t(std::numeric_limits<T>::max()));
    } else if (v.is_number_float()) {
      const double d = v.get<double>();
      // double(max) + 1 is the first value past T's range (2^63 for int64, exactly).
      fits = std::isfinite(d) && d == std::floor(d) && d >= double(std::numeric_limits<T>::min()) &&
             d < double(std::numeric_limits<T>::max()) + 1.0;
      if (fits) return T(d);
    } else {
      fail(context, ": key '", key, "' has the wrong type (", v.type_name(), "), expected an integer");
    }
    if (!fits) fail(context, ": key '", key, "' = ", v.dump(), " is not an integer in [",
                    +std::numeric_limits<T>::min(), ", ", +std::numeric_limits<T>::max(), "]");
  }
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
