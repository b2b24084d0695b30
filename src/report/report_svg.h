// Inline SVG charts of the HTML report (report.cpp): reliability diagrams, risk–coverage curves
// and line charts. Each function returns one complete <svg> element; every label is escaped.
// Charts are drawn in fixed pixel sizes (the page lays them out in a grid).
#pragma once
#include <string>
#include <vector>

#include "mmb/json.h"

namespace mmb::report_detail {

// Colour of the i-th run / column (cycles).
const char* series_color(size_t i);

// A number for tables and chart labels: integers as is, 3 decimals in [1e-3, 1e3), else %.3g;
// NaN / null as "n/a".
std::string format_number(double v);

// Reliability diagram of a calibration summary (keys "reliability": [{lower, upper, count,
// mean_confidence, accuracy}], optionally "ece", "n"): accuracy bars per bin, the gap to the mean
// confidence shaded, the diagonal, counts above the bars, ECE in the title. `label` names the run.
// Returns "" when the summary has no usable bins.
std::string reliability_svg(const Json& summary, const std::string& label, const char* color);

struct Series {
  std::string label;
  const char* color = "#2b6cb0";
  std::vector<double> x, y;  // same length, x increasing
};

// Risk–coverage curves, overlaid (one series per run; labels carry the AURC).
std::string risk_coverage_svg(const std::vector<Series>& series);

// A line chart of several series (x = step). With `smooth`, each series is drawn thin and
// translucent with a centred moving average (~4% of the points) on top.
std::string line_chart_svg(const std::vector<Series>& series, const std::string& title, const std::string& x_label,
                           const std::string& y_label, int width, int height, bool smooth);

}  // namespace mmb::report_detail
