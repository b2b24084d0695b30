#include "mmb/progress.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

namespace mmb {
namespace {

std::string format_duration(double s) {
  if (s < 0 || s > 1e7) return "?";
  char buf[32];
  int t = int(s + 0.5);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%dh%02dm", t / 3600, (t / 60) % 60);
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%dm%02ds", t / 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  return buf;
}

}  // namespace

void log_info(const std::string& message) { std::cerr << "[mmb] " << message << "\n"; }

Progress::Progress(std::string label, int64_t total, std::string unit, double log_interval_s)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total),
      log_interval_s_(log_interval_s), tty_(::isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()), last_print_(start_) {}

Progress::~Progress() {
  if (!finished_) done();
}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string Progress::line() const {
  double el = elapsed_s();
  double rate = el > 0 ? double(count_) / el : 0.0;
  char buf[256];
  if (total_ > 0) {
    double pct = 100.0 * double(count_) / double(total_);
    double eta = rate > 0 ? double(total_ - count_) / rate : -1;
    std::snprintf(buf, sizeof buf, "%s: %lld/%lld (%.0f%%) %.1f %s/s elapsed %s ETA %s",
                  label_.c_str(), (long long)count_, (long long)total_, pct, rate, unit_.c_str(),
                  format_duration(el).c_str(), format_duration(eta).c_str());
  } else {
    std::snprintf(buf, sizeof buf, "%s: %lld %s %.1f %s/s elapsed %s", label_.c_str(),
                  (long long)count_, unit_.c_str(), rate, unit_.c_str(),
                  format_duration(el).c_str());
  }
  std::string s = buf;
  if (!note_.empty()) s += " " + note_;
  return s;
}

void Progress::maybe_print(bool force) {
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_print_).count();
  if (tty_) {
    if (!force && since < 0.1) return;
    std::cerr << "\r\033[K" << line() << std::flush;
  } else {
    if (!force && since < log_interval_s_) return;
    std::cerr << "[mmb] " << line() << "\n";
  }
  last_print_ = now;
}

void Progress::tick(int64_t n) {
  count_ += n;
  maybe_print(false);
}

void Progress::set(int64_t done_count) {
  count_ = done_count;
  maybe_print(false);
}

void Progress::done() {
  if (finished_) return;
  finished_ = true;
  maybe_print(true);
  if (tty_) std::cerr << "\n";
}

}  // namespace mmb
