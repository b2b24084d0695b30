// mmb report: one self-contained HTML page from run directories (docs/report.md).
// Each RUN's results.json (and RUN/*/results.json) is a column of every table; two columns get a
// delta column. Also drawn: a reliability diagram and a risk–coverage curve per calibration
// summary, training curves from metrics.jsonl, example questions with their image. The page goes
// to --html (default RUN/report.html of the first run); its path is printed on stdout.
//
// Not a run directory itself (no --out): the page is a view of runs, written atomically.
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "mmb/report.h"

namespace mmb::app {
namespace {

struct ReportCliOptions {
  CommonOptions common;
  ReportOptions report;
  std::string html;  // output file; "" = <first run>/report.html
};

void run(ReportCliOptions& o) {
  apply_common_options(o.common);
  if (o.report.runs.empty()) fail("mmb report: give at least one run directory");
  if (o.report.examples_per_task < 0) fail("mmb report: --examples must be >= 0, got ", o.report.examples_per_task);
  std::string path = o.html;
  if (path.empty()) {
    path = o.report.runs.front();
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    path += "/report.html";
  }
  const ReportStats s = write_report(o.report, path);
  std::fprintf(stderr,
               "report: %d result set%s, %d calibration chart%s, %d training curve%s, %d example%s (%d with images)\n",
               s.result_sets, s.result_sets == 1 ? "" : "s", s.calibration_charts,
               s.calibration_charts == 1 ? "" : "s", s.training_curves, s.training_curves == 1 ? "" : "s",
               s.examples, s.examples == 1 ? "" : "s", s.images);
  std::cout << path << "\n";
}

}  // namespace

void setup_report(CLI::App& cmd) {
  auto o = std::make_shared<ReportCliOptions>();
  add_common_options(cmd, o->common, /*with_out=*/false);
  add_examples(cmd,
               "mmb report RUN [RUN...] [--html FILE] [--title T] [--examples N]\n"
               "mmb report runs/demo runs/after --html runs/compare.html\n");
  cmd.add_option("runs", o->report.runs,
                 "Run directories (RUN/results.json, RUN/*/results.json, metrics.jsonl, manifest.json); "
                 "one column each, in order")
      ->required();
  cmd.add_option("--html", o->html, "Output file (default: RUN/report.html of the first run)");
  cmd.add_option("--title", o->report.title, "Page heading (default: mmb report: <run names>)");
  cmd.add_option("--examples", o->report.examples_per_task, "Example questions per task (0 = none)")
      ->capture_default_str();
  cmd.callback([o] { run(*o); });
}

}  // namespace mmb::app
