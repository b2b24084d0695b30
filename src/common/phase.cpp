// Resumable, fingerprinted phases (include/mmb/phase.h).
#include "mmb/phase.h"

#include <chrono>
#include <filesystem>

#include "mmb/atomic_file.h"
#include "mmb/progress.h"
#include "mmb/run_dir.h"

namespace mmb {
namespace {

// Moves a phase aside when its stored fingerprint differs; stores one for an old finished phase.
void check_phase_fingerprint(const std::string& name, const std::string& dir, const std::string& done_marker,
                             const Fingerprint& fp) {
  namespace fs = std::filesystem;
  const std::string file = dir + "/phase_fingerprint.json";
  if (fs::exists(file)) {
    const Fingerprint stored = Fingerprint::from_json(read_json_file(file), file);
    const auto changed = stored.differences(fp);
    if (changed.empty()) return;
    std::string parts;
    for (const auto& c : changed) parts += (parts.empty() ? "" : ", ") + c;
    log_info("phase " + name + ": settings changed (" + parts + "): re-running it; the old output is in " + dir +
             ".replaced");
    fs::remove_all(dir + ".replaced");
    fs::rename(dir, dir + ".replaced");
  } else if (fs::exists(done_marker)) {
    log_info("phase " + name + ": no stored fingerprint (an older run directory): kept as it is");
    write_json_file(file, fp.to_json());
  }
}

}  // namespace

Fingerprint chained_fingerprint(const Fingerprint& previous, const std::string& name, const Json& settings) {
  Fingerprint f;
  f.add("previous phase", Json(previous.id()));
  f.add(name, settings);
  return f;
}

bool run_phase(const std::string& name, const std::string& dir, const std::string& done_marker,
               const Fingerprint& fp, RunDir* run, Json& times, const std::function<void()>& fn) {
  check_phase_fingerprint(name, dir, done_marker, fp);
  if (std::filesystem::exists(done_marker)) {
    log_info("phase " + name + ": already done (" + done_marker + ")");
    return false;
  }
  make_dirs(dir);
  write_json_file(dir + "/phase_fingerprint.json", fp.to_json());
  log_info("phase " + name + " ...");
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  times[name] = s;
  log_info("phase " + name + " done in " + std::to_string(int(s)) + " s");
  if (run) run->log_metrics({{"phase", name}, {"seconds", s}});
  return true;
}

}  // namespace mmb
