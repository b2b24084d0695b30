// Inline SVG charts of the HTML report: reliability diagrams (Guo et al. 2017 style: accuracy
// bars per confidence bin, the gap to the bin's mean confidence shaded, the diagonal), overlaid
// risk–coverage curves (Geifman & El-Yaniv) and line charts for training curves.
// Pixel coordinates: origin top-left; every chart has a white plot area with a light grid.
#include "report_svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "mmb/report.h"

namespace mmb::report_detail {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string num(double v, int digits = 1) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string tick_label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", std::abs(v) < 1e-12 ? 0.0 : v);
  return buf;
}

// Ticks every 1, 2 or 5 x 10^k covering [lo, hi] with about `target` intervals.
double nice_step(double lo, double hi, int target) {
  double range = hi - lo;
  if (!(range > 0)) range = 1;
  const double raw = range / target, mag = std::pow(10.0, std::floor(std::log10(raw))), f = raw / mag;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

// A plot area mapping data (x0..x1, y0..y1) to pixels.
struct Frame {
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  double left = 44, top = 30, width = 206, height = 180;
  double px(double x) const { return left + (x - x0) / (x1 - x0) * width; }
  double py(double y) const { return top + height - (y - y0) / (y1 - y0) * height; }
};

void open_svg(std::ostringstream& os, const char* cls, int w, int h) {
  os << "<svg class=\"chart " << cls << "\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w << "\" height=\"" << h
     << "\" viewBox=\"0 0 " << w << " " << h << "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""
     << " font-size=\"11\">";
}

// Background, grid, ticks, tick labels and axis titles.
void axes(std::ostringstream& os, const Frame& f, double x_step, double y_step, const std::string& x_label,
          const std::string& y_label) {
  os << "<rect x=\"" << num(f.left) << "\" y=\"" << num(f.top) << "\" width=\"" << num(f.width) << "\" height=\""
     << num(f.height) << "\" fill=\"#fff\" stroke=\"#cbd2d9\"/>";
  for (double x = std::ceil(f.x0 / x_step - 1e-9) * x_step; x <= f.x1 + x_step * 1e-6; x += x_step) {
    os << "<line x1=\"" << num(f.px(x)) << "\" y1=\"" << num(f.top) << "\" x2=\"" << num(f.px(x)) << "\" y2=\""
       << num(f.top + f.height) << "\" stroke=\"#edf0f3\"/>";
    os << "<text x=\"" << num(f.px(x)) << "\" y=\"" << num(f.top + f.height + 14) << "\" text-anchor=\"middle\" "
       << "fill=\"#52606d\">" << tick_label(x) << "</text>";
  }
  for (double y = std::ceil(f.y0 / y_step - 1e-9) * y_step; y <= f.y1 + y_step * 1e-6; y += y_step) {
    os << "<line x1=\"" << num(f.left) << "\" y1=\"" << num(f.py(y)) << "\" x2=\"" << num(f.left + f.width)
       << "\" y2=\"" << num(f.py(y)) << "\" stroke=\"#edf0f3\"/>";
    os << "<text x=\"" << num(f.left - 5) << "\" y=\"" << num(f.py(y) + 4) << "\" text-anchor=\"end\" "
       << "fill=\"#52606d\">" << tick_label(y) << "</text>";
  }
  os << "<rect x=\"" << num(f.left) << "\" y=\"" << num(f.top) << "\" width=\"" << num(f.width) << "\" height=\""
     << num(f.height) << "\" fill=\"none\" stroke=\"#9aa5b1\"/>";
  os << "<text x=\"" << num(f.left + f.width / 2) << "\" y=\"" << num(f.top + f.height + 30)
     << "\" text-anchor=\"middle\" fill=\"#323f4b\">" << html_escape(x_label) << "</text>";
  const double yl_x = 12, yl_y = f.top + f.height / 2;
  os << "<text x=\"" << num(yl_x) << "\" y=\"" << num(yl_y) << "\" text-anchor=\"middle\" fill=\"#323f4b\" "
     << "transform=\"rotate(-90 " << num(yl_x) << " " << num(yl_y) << ")\">" << html_escape(y_label) << "</text>";
}

// Legend rows at (x, y): a swatch (solid, dashed or a box) and a label each.
struct LegendItem {
  std::string label;
  std::string color;
  char kind = 'l';  // 'l' line, 'd' dashed line, 'b' box
};
void legend(std::ostringstream& os, double x, double y, const std::vector<LegendItem>& items) {
  for (size_t i = 0; i < items.size(); ++i) {
    const double yy = y + 14.0 * double(i);
    const auto& it = items[i];
    if (it.kind == 'b')
      os << "<rect x=\"" << num(x) << "\" y=\"" << num(yy - 8) << "\" width=\"14\" height=\"9\" fill=\"" << it.color
         << "\" fill-opacity=\"0.8\"/>";
    else
      os << "<line x1=\"" << num(x) << "\" y1=\"" << num(yy - 4) << "\" x2=\"" << num(x + 14) << "\" y2=\""
         << num(yy - 4) << "\" stroke=\"" << it.color << "\" stroke-width=\"2\""
         << (it.kind == 'd' ? " stroke-dasharray=\"4 3\"" : "") << "/>";
    os << "<text x=\"" << num(x + 19) << "\" y=\"" << num(yy) << "\" fill=\"#323f4b\" font-size=\"10\" "
       << "stroke=\"#fff\" stroke-width=\"3\" paint-order=\"stroke\">" << html_escape(it.label) << "</text>";
  }
}

// Legend in the corner of the plot where the fewest points of `series` fall (top-right, top-left,
// bottom-right, bottom-left on ties), about 6 px per character of the longest label.
template <typename S>
void place_legend(std::ostringstream& os, const Frame& f, const std::vector<S>& series,
                  const std::vector<LegendItem>& items) {
  size_t longest = 0;
  for (const auto& it : items) longest = std::max(longest, std::min<size_t>(it.label.size(), 48));
  const double w = 27 + 6.0 * double(longest), h = 14.0 * double(items.size()) + 6;
  const double xs[2] = {f.left + f.width - w, f.left + 6}, ys[2] = {f.top + 2, f.top + f.height - h - 2};
  size_t best = SIZE_MAX;
  double bx = xs[0], by = ys[0];
  for (double y : ys)
    for (double x : xs) {
      size_t inside = 0;
      for (const auto& s : series)
        for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
          const double px = f.px(s.x[i]), py = f.py(s.y[i]);
          inside += px >= x - 4 && px <= x + w && py >= y - 4 && py <= y + h + 4;
        }
      if (inside < best) best = inside, bx = x, by = y;
    }
  legend(os, bx, by + 12, items);
}

std::string polyline(const Frame& f, const std::vector<double>& x, const std::vector<double>& y, const char* color,
                     double width, double opacity, size_t max_points = 1500) {
  std::ostringstream os;
  os << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"" << width << "\" stroke-opacity=\""
     << opacity << "\" stroke-linejoin=\"round\" points=\"";
  const size_t n = std::min(x.size(), y.size());
  const size_t stride = std::max<size_t>(1, (n + max_points - 1) / max_points);
  for (size_t i = 0; i < n; i += stride) {
    const size_t k = (i + stride >= n) ? n - 1 : i;  // always end on the last point
    if (std::isfinite(y[k])) os << num(f.px(x[k])) << "," << num(f.py(y[k])) << " ";
  }
  os << "\"/>";
  return os.str();
}

double get_number(const Json& j, const char* key, double fallback = kNaN) {
  return j.is_object() && j.contains(key) && j[key].is_number() ? j[key].get<double>() : fallback;
}

}  // namespace

const char* series_color(size_t i) {
  static const char* kColors[] = {"#2b6cb0", "#dd6b20", "#2f855a", "#b83280", "#6b46c1", "#718096"};
  return kColors[i % (sizeof kColors / sizeof kColors[0])];
}

std::string format_number(double v) {
  if (!std::isfinite(v)) return "n/a";
  char buf[48];
  if (v == std::floor(v) && std::abs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else if (std::abs(v) >= 1e-3 && std::abs(v) < 1e3)
    std::snprintf(buf, sizeof buf, "%.3f", v);
  else if (std::abs(v) >= 1e3 && std::abs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%.1f", v);
  else
    std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

std::string reliability_svg(const Json& summary, const std::string& label, const char* color) {
  if (!summary.is_object() || !summary.contains("reliability") || !summary["reliability"].is_array()) return "";
  struct Bin {
    double lo, hi, conf, acc;
    int64_t n;
  };
  std::vector<Bin> bins;
  const Json& rel = summary["reliability"];
  const double nb = double(rel.size());
  for (size_t i = 0; i < rel.size(); ++i) {
    const Json& b = rel[i];
    Bin bin{get_number(b, "lower", i / nb), get_number(b, "upper", (i + 1) / nb), get_number(b, "mean_confidence", 0),
            get_number(b, "accuracy", 0), int64_t(get_number(b, "count", 0))};
    if (!(bin.hi > bin.lo)) bin.lo = i / nb, bin.hi = (i + 1) / nb;  // equal-mass or malformed edges
    bins.push_back(bin);
  }
  if (bins.empty()) return "";
  int64_t total = 0;
  double ece = 0;
  for (const auto& b : bins) total += b.n;
  for (const auto& b : bins)
    if (b.n > 0) ece += double(b.n) / double(total) * std::abs(b.acc - b.conf);
  ece = get_number(summary, "ece", ece);
  const int W = 264, H = 252;
  Frame f;
  std::ostringstream os;
  open_svg(os, "reliability", W, H);
  os << "<title>reliability diagram: " << html_escape(label) << "</title>";
  os << "<text x=\"4\" y=\"15\" fill=\"#1f2933\" font-size=\"10.5\"><tspan font-weight=\"bold\">ECE "
     << format_number(ece) << "</tspan> · acc " << format_number(get_number(summary, "accuracy")) << " · conf "
     << format_number(get_number(summary, "mean_confidence")) << " · n " << total << "</text>";
  axes(os, f, 0.2, 0.2, "confidence", "accuracy");
  for (const auto& b : bins) {
    if (b.n == 0) continue;
    const double x0 = f.px(std::clamp(b.lo, 0.0, 1.0)) + 0.5, x1 = f.px(std::clamp(b.hi, 0.0, 1.0)) - 0.5;
    const double acc = std::clamp(b.acc, 0.0, 1.0), conf = std::clamp(b.conf, 0.0, 1.0);
    os << "<g><title>" << format_number(b.lo) << "–" << format_number(b.hi) << ": n " << b.n << ", accuracy "
       << format_number(acc) << ", mean confidence " << format_number(conf) << "</title>";
    os << "<rect x=\"" << num(x0) << "\" y=\"" << num(f.py(acc)) << "\" width=\"" << num(x1 - x0) << "\" height=\""
       << num(f.py(0) - f.py(acc)) << "\" fill=\"" << color << "\" fill-opacity=\"0.85\"/>";
    const double g0 = std::min(acc, conf), g1 = std::max(acc, conf);
    os << "<rect x=\"" << num(x0) << "\" y=\"" << num(f.py(g1)) << "\" width=\"" << num(x1 - x0) << "\" height=\""
       << num(f.py(g0) - f.py(g1)) << "\" fill=\"#e53e3e\" fill-opacity=\"0.28\" stroke=\"#e53e3e\" "
       << "stroke-opacity=\"0.7\" stroke-width=\"0.8\"/>";
    const double ty = std::max(f.py(g1) - 3, f.top + 10);
    os << "<text x=\"" << num((x0 + x1) / 2) << "\" y=\"" << num(ty) << "\" text-anchor=\"middle\" font-size=\"9\" "
       << "fill=\"#323f4b\" stroke=\"#fff\" stroke-width=\"2.5\" paint-order=\"stroke\">" << b.n << "</text></g>";
  }
  os << "<line x1=\"" << num(f.px(0)) << "\" y1=\"" << num(f.py(0)) << "\" x2=\"" << num(f.px(1)) << "\" y2=\""
     << num(f.py(1)) << "\" stroke=\"#52606d\" stroke-width=\"1.2\" stroke-dasharray=\"5 4\"/>";
  legend(os, f.left + 6, f.top + 13, {{"accuracy", color, 'b'}, {"gap to confidence", "#e53e3e", 'b'}});
  os << "</svg>";
  return os.str();
}

std::string risk_coverage_svg(const std::vector<Series>& series) {
  double ymax = 0;
  for (const auto& s : series)
    for (double r : s.y)
      if (std::isfinite(r)) ymax = std::max(ymax, r);
  const double step = ymax > 0.5 ? 0.2 : ymax > 0.2 ? 0.1 : ymax > 0.1 ? 0.05 : 0.02;
  Frame f;
  f.y1 = std::min(1.0, std::max(step, std::ceil(ymax / step - 1e-9) * step));
  if (f.y1 < ymax) f.y1 = ymax;
  std::ostringstream os;
  open_svg(os, "risk-coverage", 264, 252);
  os << "<title>risk-coverage curve</title>";
  os << "<text x=\"4\" y=\"15\" fill=\"#1f2933\" font-size=\"10.5\"><tspan font-weight=\"bold\">risk–coverage</tspan>"
     << " · lower is better</text>";
  axes(os, f, 0.2, step, "coverage (most confident first)", "risk (error rate)");
  std::vector<LegendItem> items;
  for (const auto& s : series) {
    os << polyline(f, s.x, s.y, s.color, 2, 0.95);
    if (s.x.size() <= 40)
      for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
        os << "<circle cx=\"" << num(f.px(s.x[i])) << "\" cy=\"" << num(f.py(s.y[i])) << "\" r=\"2.2\" fill=\""
           << s.color << "\"/>";
    items.push_back({s.label, s.color, 'l'});
  }
  place_legend(os, f, series, items);
  os << "</svg>";
  return os.str();
}

std::string line_chart_svg(const std::vector<Series>& series, const std::string& title, const std::string& x_label,
                           const std::string& y_label, int width, int height, bool smooth) {
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      xlo = std::min(xlo, s.x[i]), xhi = std::max(xhi, s.x[i]);
      ylo = std::min(ylo, s.y[i]), yhi = std::max(yhi, s.y[i]);
    }
  if (!std::isfinite(xlo)) xlo = 0, xhi = 1, ylo = 0, yhi = 1;
  if (!(xhi > xlo)) xhi = xlo + 1;
  if (!(yhi > ylo)) {
    const double pad = std::abs(ylo) > 0 ? std::abs(ylo) * 0.1 : 1;
    ylo -= pad, yhi += pad;
  }
  const double ys = nice_step(ylo, yhi, 5), xs = nice_step(xlo, xhi, std::max(3, width / 90));
  Frame f;
  f.left = 64, f.top = 30, f.width = width - 64 - 14, f.height = height - 30 - 42;
  f.x0 = xlo, f.x1 = xhi;
  f.y0 = std::floor(ylo / ys) * ys, f.y1 = std::ceil(yhi / ys) * ys;
  if (ylo >= 0 && f.y0 < 0) f.y0 = 0;
  std::ostringstream os;
  open_svg(os, "line", width, height);
  os << "<title>" << html_escape(title) << "</title>";
  os << "<text x=\"" << f.left << "\" y=\"17\" fill=\"#1f2933\" font-weight=\"bold\">" << html_escape(title)
     << "</text>";
  axes(os, f, xs, ys, x_label, y_label);
  std::vector<LegendItem> items;
  for (const auto& s : series) {
    if (smooth && s.y.size() > 10) {
      os << polyline(f, s.x, s.y, s.color, 1, 0.3);
      // Centred moving average over ~4% of the points (no lag, unlike an EMA), narrower at the ends.
      const size_t n = s.y.size(), half = std::max<size_t>(1, n / 50);
      std::vector<double> sum(n + 1, 0), cnt(n + 1, 0);  // prefix sums over finite values
      for (size_t i = 0; i < n; ++i) {
        const bool ok = std::isfinite(s.y[i]);
        sum[i + 1] = sum[i] + (ok ? s.y[i] : 0);
        cnt[i + 1] = cnt[i] + (ok ? 1 : 0);
      }
      std::vector<double> smooth_y(n);
      for (size_t i = 0; i < n; ++i) {
        const size_t h = std::min({half, i, n - 1 - i});  // symmetric: the ends stay where they are
        const size_t lo = i - h, hi = i + h + 1;
        const double c = cnt[hi] - cnt[lo];
        smooth_y[i] = c > 0 ? (sum[hi] - sum[lo]) / c : kNaN;
      }
      os << polyline(f, s.x, smooth_y, s.color, 2, 1);
    } else {
      os << polyline(f, s.x, s.y, s.color, 1.8, 1);
    }
    items.push_back({s.label, s.color, 'l'});
  }
  place_legend(os, f, series, items);
  os << "</svg>";
  return os.str();
}

}  // namespace mmb::report_detail
