#include "mmb/json.h"

#include "mmb/atomic_file.h"

namespace mmb {

Json read_json_file(const std::string& path) {
  std::string text = read_file(path);
  try {
    return Json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    fail("read_json_file: ", path, ": ", e.what());
  }
}

void write_json_file(const std::string& path, const Json& value, int indent) {
  std::string text = value.dump(indent);
  text.push_back('\n');
  write_file_atomic(path, text);
}

}  // namespace mmb
