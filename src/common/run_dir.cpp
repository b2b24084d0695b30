#include "mmb/run_dir.h"

#include <unistd.h>

#include <ctime>
#include <thread>

#include "mmb/atomic_file.h"
#include "mmb/version.h"

namespace mmb {

std::string utc_timestamp() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Json machine_info() {
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  Json j;
  j["hostname"] = host;
  j["cores"] = std::thread::hardware_concurrency();
  j["blas"] = blas_path();
  j["mmb_version"] = version();
  j["git_commit"] = git_commit();
  j["compiler"] = __VERSION__;
  j["nlohmann_json"] = std::to_string(NLOHMANN_JSON_VERSION_MAJOR) + "." + std::to_string(NLOHMANN_JSON_VERSION_MINOR) +
                       "." + std::to_string(NLOHMANN_JSON_VERSION_PATCH);
  return j;
}

RunDir::RunDir(std::string dir, RunInfo info)
    : dir_(std::move(dir)),
      info_(std::move(info)),
      start_time_(utc_timestamp()),
      start_(std::chrono::steady_clock::now()) {
  if (dir_.empty()) fail("RunDir: empty directory name");
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
  make_dirs(dir_);
  write_manifest("running");
}

RunDir::~RunDir() {
  if (!finished_) {
    try {
      write_manifest("failed");
    } catch (...) {
    }
  }
}

void RunDir::write_manifest(const std::string& status) {
  Json m;
  m["command"] = info_.argv;
  m["config"] = info_.config;
  m["seed"] = info_.seed;
  m["git_commit"] = git_commit();
  m["mmb_version"] = version();
  m["machine"] = machine_info();
  m["start_time"] = start_time_;
  m["status"] = status;
  if (status != "running") {
    m["end_time"] = utc_timestamp();
    m["wall_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  for (auto& [k, v] : info_.extra.items()) m[k] = v;
  m["results"] = results_;
  write_json_file(path("manifest.json"), m);
}

void RunDir::log_metrics(Json record) {
  if (!record.is_object() || (!record.contains("step") && !record.contains("phase")))
    fail("RunDir::log_metrics: a metrics record must be an object with \"step\" or \"phase\", got ", record.dump());
  record["wall_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  append_line_durable(path("metrics.jsonl"), record.dump());
}

void RunDir::set_result(const std::string& key, Json value) { results_[key] = std::move(value); }

void RunDir::finish(bool ok) {
  write_manifest(ok ? "ok" : "failed");
  finished_ = true;
}

}  // namespace mmb
