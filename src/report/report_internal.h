// Internals of the HTML report (report.cpp renders the page):
//   report_runs.cpp    what a run directory holds: results, training curves, manifests, samples
//                      and the directories their images live in
//   report_format.cpp  results flattened into rows, table cells, small text helpers, the stylesheet
//   report_svg.cpp     the charts (report_svg.h)
#pragma once
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "mmb/json.h"

namespace mmb::report_detail {

// One results.json: one column of the report's tables.
struct ResultSet {
  std::string label;  // column heading: the run's name, "<name>/<sub>" for RUN/<sub>/results.json
  std::string file;
  Json results;                          // the object as read (samples included, if any)
  std::vector<Json> samples;             // results["samples"], else samples.jsonl beside the file
  std::vector<std::string> image_roots;  // directories a sample's "image" path may be relative to
};

// The step/loss lines of one metrics.jsonl (steps increasing, one entry per step: the last line
// logged for a step wins, as a resumed run logs some steps twice).
struct TrainingCurve {
  std::string phase;  // the subdirectory ("clip", "sft"), "train" for RUN/metrics.jsonl
  std::string file;
  std::vector<double> step, loss, lr, grad_norm;  // NaN where a line lacks the key
  double wall_s = NAN;                            // last "wall_s" of the file
};

struct Manifest {
  std::string where;  // "." for RUN/manifest.json, else the subdirectory
  std::string file;
  Json json;
};

struct Run {
  std::string dir, name;  // as given; the directory's name (for column headings)
  std::vector<ResultSet> results;
  std::vector<TrainingCurve> curves;
  std::vector<Manifest> manifests;
  std::vector<std::pair<std::string, double>> phases;  // {"phase", "seconds"} lines of RUN/metrics.jsonl
  Json align;  // RUN/align.json (`mmb align`: the start's and each round's headline), or null
};

// Reads RUN and its subdirectories (one level). Throws mmb::Error "render_report: ..." when the
// directory does not exist, holds neither results.json nor metrics.jsonl, or a file is malformed.
Run scan_run(const std::string& dir);

// ---- rows and cells (report_format.cpp) -------------------------------------------------------

// An object with "reliability" and/or "risk_coverage": a calibration summary.
bool is_calibration(const Json& j);

// Every scalar of `j` as ("<path>/<key>/...", value): scalars before sub-objects, the world's
// categories in their natural order (random, popular, adversarial, all; plain, hint; ...),
// "calibration" last. Skipped: reliability, risk_coverage, definition, samples, numeric or long
// arrays (curves); short string arrays become one comma-joined string.
void flatten(const Json& j, const std::string& path, std::vector<std::pair<std::string, Json>>& out);

// A top-level value as a table cell value (see flatten); discarded when it is not shown.
Json leaf_value(const Json& j);

// Paths of every calibration summary inside `j`, in flatten's order ("" = `j` itself).
void find_calibration(const Json& j, const std::string& path, std::vector<std::string>& out);

// The value at "a/b/c", or nullptr.
const Json* at_path(const Json& j, const std::string& path);

// +1 when a larger value of the metric at `path` is better, -1 when smaller is, 0 neither.
int direction(const std::string& path);

// Any JSON value as display text (numbers via format_number, arrays comma-joined; not escaped).
std::string text_of(const Json& j);

// "<td>...</td>" for a value (nullptr = absent, null = undefined), and the delta b - a coloured
// by direction(path).
std::string cell(const Json* v);
std::string delta_cell(const std::string& path, const Json* a, const Json* b);

std::string join_command(const Json& argv);      // shell-like, quoting arguments with spaces
std::string slug(const std::string& s);          // for element ids: [A-Za-z0-9] kept, others '-'
std::string parent_of(const std::string& path);  // "a/b/c" -> "a/b"
std::string leaf_of(const std::string& path);    // "a/b/c" -> "c"
// Ordered union: appends the items of `more` that `into` lacks.
void merge_ordered(std::vector<std::string>& into, const std::vector<std::string>& more);

// The page's stylesheet.
extern const char* const kReportStyle;

}  // namespace mmb::report_detail
