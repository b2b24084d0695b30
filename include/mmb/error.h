// Errors thrown by the mmb library.
//
// Contract: library functions throw mmb::Error whose message starts with the function name,
// then says what was expected and what was found (file, line, key). The CLI catches it, prints
// "error: <message>" and exits non-zero. Nothing in the library calls exit().
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace mmb {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Builds a message from any streamable parts and throws mmb::Error.
template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw Error(os.str());
}

}  // namespace mmb
