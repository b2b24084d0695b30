#include "mmb/jsonl.h"

#include <cerrno>
#include <cstring>

namespace mmb {

JsonlReader::JsonlReader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
  if (!in_) fail("JsonlReader: cannot open ", path, ": ", std::strerror(errno));
}

std::string JsonlReader::where() const { return path_ + ":" + std::to_string(line_number_); }

bool JsonlReader::next(Json& value) {
  std::string line;
  while (std::getline(in_, line)) {
    ++line_number_;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    bool blank = line.find_first_not_of(" \t") == std::string::npos;
    if (blank) continue;
    value = parse_json(line, "JsonlReader: " + where());
    return true;
  }
  if (in_.bad()) fail("JsonlReader: ", path_, ": read error after line ", line_number_);
  return false;
}

std::vector<Json> read_jsonl_file(const std::string& path) {
  JsonlReader reader(path);
  std::vector<Json> out;
  Json v;
  while (reader.next(v)) out.push_back(std::move(v));
  return out;
}

JsonlWriter::JsonlWriter(const std::string& path) : file_(path) {}

void JsonlWriter::write(const Json& value) {
  std::string line = value.dump();
  line.push_back('\n');
  file_.write(line);
  ++lines_;
}

void JsonlWriter::close() { file_.commit(); }

}  // namespace mmb
