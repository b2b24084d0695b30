// JSON helpers over nlohmann::json, with errors that name the file and the key.
#pragma once
#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

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

namespace detail {

template <typename T>
constexpr bool kIsInteger = std::is_integral_v<T> && !std::is_same_v<T, bool>;
template <typename T>
struct IsIntegerVector : std::false_type {};
template <typename U, typename A>
struct IsIntegerVector<std::vector<U, A>> : std::bool_constant<kIsInteger<U>> {};

// `v` as the integer type T when T holds it exactly; else an error naming `what`. nlohmann
// converts a float or an out-of-range integer to T with a plain cast (undefined for 1e400 or 2^64).
template <typename T>
T checked_integer(const Json& v, const std::string& context, const std::string& what) {
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
    fail(context, ": ", what, " has the wrong type (", v.type_name(), "), expected an integer");
  }
  if (!fits)
    fail(context, ": ", what, " = ", v.dump(), " is not an integer in [", +std::numeric_limits<T>::min(), ", ",
         +std::numeric_limits<T>::max(), "]");
  return v.get<T>();
}

}  // namespace detail

// Returns obj[key] converted to T. Throws mmb::Error naming `context` (e.g. "config.json")
// and the key when the key is missing or has the wrong type. An integer, or each element of a
// vector of integers, is taken only when T holds it exactly.
template <typename T>
T json_get(const Json& obj, const std::string& key, const std::string& context) {
  if (!obj.is_object()) fail(context, ": expected a JSON object, found ", obj.type_name());
  auto it = obj.find(key);
  if (it == obj.end()) fail(context, ": missing key '", key, "'");
  if constexpr (detail::kIsInteger<T>) {
    return detail::checked_integer<T>(*it, context, "key '" + key + "'");
  } else if constexpr (detail::IsIntegerVector<T>::value) {
    if (!it->is_array()) fail(context, ": key '", key, "' has the wrong type (", it->type_name(), "), expected an array");
    T out;
    for (size_t i = 0; i < it->size(); ++i)
      out.push_back(detail::checked_integer<typename T::value_type>((*it)[i], context,
                                                                    "key '" + key + "'[" + std::to_string(i) + "]"));
    return out;
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
