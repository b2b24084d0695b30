// The HTML report (`mmb report RUN...`): one self-contained page from one or more run
// directories: every metric in tables (runs side by side, with a delta column for two), a
// reliability diagram and a risk–coverage curve per calibration summary, training curves, and
// example questions with their image, the model's answer and the truth.
//
// What is read from each RUN (docs/report.md):
//   RUN/results.json, RUN/*/results.json      evaluation results, one column each
//                                              (the recipe, `mmb eval --out`, `mmb metrics --out`)
//   RUN/metrics.jsonl, RUN/*/metrics.jsonl     training curves: lines with "step" and "loss"
//                                              (also "lr", "grad_norm")
//   RUN/manifest.json, RUN/*/manifest.json     command line, git commit, seed, times, machine
//   RUN/align.json                             `mmb align`'s rounds: a table and curves per round
//   samples: results["samples"], else samples.jsonl next to the results.json
//   images: sample "image" paths, relative to the world directory: RUN/world, or the "data" /
//           "world" / "images" keys of the results or a manifest's config
//
// The page needs no network and no JavaScript: CSS inline, SVG inline, images as base64 PNG
// (or JPEG) data URIs. Every text taken from the files (answers, questions, commands) is
// HTML-escaped. A missing image shows the text without it.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mmb {

struct ReportOptions {
  std::vector<std::string> runs;        // run directories, in column order (at least one)
  std::string title;                    // page heading; "" = "mmb report: <run names>"
  int examples_per_task = 6;            // example cards per task and result set (0 = none)
  int64_t max_image_bytes = 4 << 20;    // larger images are not embedded (text only)
};

// What a report contains (for the command's summary and for tests).
struct ReportStats {
  int result_sets = 0;         // results.json files = table columns
  int calibration_charts = 0;  // calibration summaries drawn (each: reliability + risk-coverage)
  int training_curves = 0;     // metrics.jsonl files with step/loss lines
  int alignment_tables = 0;    // align.json files drawn (a table and curves per round)
  int examples = 0;            // example cards
  int images = 0;              // example cards with an embedded image
};

// Renders the page. Throws mmb::Error "render_report: ..." when no run is given, a run
// directory does not exist, a run has neither results.json nor metrics.jsonl (in RUN or one
// level down), or a results.json / manifest.json / metrics.jsonl is malformed (naming the file).
std::string render_report(const ReportOptions& options, ReportStats* stats = nullptr);

// Renders and writes the page to `path` atomically (creating parent directories).
ReportStats write_report(const ReportOptions& options, const std::string& path);

// Text for HTML element content and attribute values: & < > " ' escaped.
std::string html_escape(std::string_view text);

// Standard base64 (RFC 4648, with '=' padding).
std::string base64_encode(std::string_view bytes);

}  // namespace mmb
