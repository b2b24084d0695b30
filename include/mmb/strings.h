// Small string predicates shared across modules (C++17 has no std::string::starts_with).
// Pure functions, thread-safe, never throw.
#pragma once
#include <string_view>

namespace mmb {

inline bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

inline bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace mmb
