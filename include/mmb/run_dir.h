// Run directories: every command that writes results writes them into one.
//
//   <out>/manifest.json   command line, resolved config, seed, git commit, library versions,
//                         machine (cores, BLAS), start and end times, status
//   <out>/metrics.jsonl   one JSON object per line; each has "step" or "phase" and "wall_s"
//
// manifest.json is written atomically at open (status "running") and again at finish()
// (status "ok" or "failed"), so a killed run is recognisable.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "mmb/json.h"

namespace mmb {

struct RunInfo {
  std::vector<std::string> argv;  // the command line as given
  Json config = Json::object();   // resolved options (flags merged over --config file)
  uint64_t seed = 0;
  Json extra = Json::object();    // anything else the command wants in the manifest (e.g. versions)
};

class RunDir {
 public:
  // Creates `dir` (and parents) and writes manifest.json with status "running".
  RunDir(std::string dir, RunInfo info);
  ~RunDir();  // if finish() was never called, marks the manifest "failed"

  const std::string& dir() const { return dir_; }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  // Appends a metrics line. `record` must be an object containing "step" or "phase"; "wall_s"
  // (seconds since the run started) is added. Throws mmb::Error otherwise.
  void log_metrics(Json record);

  // Adds a key to the manifest's "results" object (rewritten at finish()).
  void set_result(const std::string& key, Json value);

  // Writes the final manifest with status and end time.
  void finish(bool ok = true);

 private:
  void write_manifest(const std::string& status);

  std::string dir_;
  RunInfo info_;
  Json results_ = Json::object();
  std::string start_time_;
  std::chrono::steady_clock::time_point start_;
  bool finished_ = false;
};

// Facts about the machine and build for manifests and `mmb info`: cores, BLAS path, versions.
Json machine_info();

// ISO-8601 UTC timestamp, e.g. "2026-11-22T02:20:11Z".
std::string utc_timestamp();

}  // namespace mmb
