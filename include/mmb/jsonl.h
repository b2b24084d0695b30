// Streaming JSON Lines: one JSON value per line. Errors name the file and the 1-based line.
#pragma once
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>

#include "mmb/atomic_file.h"
#include "mmb/json.h"

namespace mmb {

class JsonlReader {
 public:
  // Throws mmb::Error if the file cannot be opened.
  explicit JsonlReader(const std::string& path);
  // Reads the next non-blank line into `value`; false at end of file. A line that is not valid
  // JSON throws "JsonlReader: <path>:<line>: <parser message>".
  bool next(Json& value);
  // 1-based number of the line last returned by next().
  int64_t line_number() const { return line_number_; }
  const std::string& path() const { return path_; }
  // "<path>:<line>", for callers that validate the value and want to name where it came from.
  std::string where() const;

 private:
  std::string path_;
  std::ifstream in_;
  int64_t line_number_ = 0;
};

// Reads a whole JSONL file into a vector (convenience for small files).
std::vector<Json> read_jsonl_file(const std::string& path);

// Writes a JSONL file atomically: the lines appear at `path` only on close().
class JsonlWriter {
 public:
  explicit JsonlWriter(const std::string& path);
  void write(const Json& value);  // one compact line
  void close();                   // commit; destructor without close() discards
  int64_t lines_written() const { return lines_; }

 private:
  AtomicFile file_;
  int64_t lines_ = 0;
};

}  // namespace mmb
