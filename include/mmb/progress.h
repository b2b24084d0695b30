// Progress reporting for long work. On a terminal (stderr is a tty) a single line is redrawn
// with count, rate and ETA; otherwise a plain log line is printed at most every
// `log_interval_s` seconds. Results go to stdout; progress and logs always go to stderr.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace mmb {

class Progress {
 public:
  // total <= 0 means unknown (no ETA). `unit` names what is counted ("samples", "steps").
  Progress(std::string label, int64_t total, std::string unit = "items",
           double log_interval_s = 5.0);
  ~Progress();  // calls done() if not yet done

  void tick(int64_t n = 1);
  void set(int64_t done_count);
  // Extra text shown after the rate, e.g. "loss 1.234".
  void set_note(std::string note) { note_ = std::move(note); }
  void done();

  int64_t count() const { return count_; }
  double elapsed_s() const;

  // Formats one line; public so tests can check the text without a terminal.
  std::string line() const;

 private:
  void maybe_print(bool force);

  std::string label_, unit_, note_;
  int64_t total_, count_ = 0;
  double log_interval_s_;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_print_;
};

// Log a line to stderr with a "[mmb] " prefix.
void log_info(const std::string& message);

}  // namespace mmb
