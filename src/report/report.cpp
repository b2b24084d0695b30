// The HTML report: scans each run directory (report_runs.cpp), then renders one self-contained
// page, section by section: runs, headline, calibration, training, examples, all metrics.
// Rows and cells: report_format.cpp; charts: report_svg.cpp.
//
// Columns: every results.json found (RUN/results.json, RUN/*/results.json) is one column, in the
// order the runs were given; rows are the union of the flattened keys ("pope/adversarial/f1"), so
// two runs evaluated the same way line up, and exactly two columns get a delta column.
#include "mmb/report.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "mmb/atomic_file.h"
#include "mmb/error.h"
#include "mmb/json.h"
#include "mmb/run_dir.h"
#include "mmb/version.h"
#include "report_internal.h"
#include "report_svg.h"

namespace fs = std::filesystem;

namespace mmb {
namespace {

using namespace report_detail;

// The headline: the numbers a reader looks for first, if present.
const std::vector<std::pair<const char*, const char*>> kHeadline = {
    {"split", "split"},
    {"pope/all/accuracy", "POPE accuracy (all)"},
    {"pope/random/accuracy", "POPE accuracy random"},
    {"pope/random/f1", "POPE F1 random"},
    {"pope/popular/f1", "POPE F1 popular"},
    {"pope/adversarial/f1", "POPE F1 adversarial"},
    {"pope/adversarial/accuracy", "POPE accuracy adversarial"},
    {"pope/all/yes_ratio", "POPE yes-ratio"},
    {"pope/all/calibration/ece", "POPE ECE"},
    {"pope/all/yes_prob_auroc", "POPE AUROC of p(yes)"},
    {"chair/chair_s", "CHAIR_s"},
    {"chair/chair_i", "CHAIR_i"},
    {"chair/object_recall", "description object recall"},
    {"chair/mention_recall", "description mention recall"},
    {"chair/verifiable_share", "description sentences verifiable"},
    {"chair/repeating_share", "descriptions repeating a sentence"},
    {"mc/accuracy", "MC accuracy"},
    {"mc/calibration/ece", "MC ECE"},
    {"mc/calibration/brier", "MC Brier"},
    {"mc/calibration/auroc", "MC AUROC"},
    {"mc/calibration/aurc", "MC AURC"},
    {"idk/plain/accuracy_answerable", "IDK accuracy, answerable (plain)"},
    {"idk/plain/idk_recall", "IDK recall (plain)"},
    {"idk/hint/accuracy_answerable", "IDK accuracy, answerable (hint)"},
    {"idk/hint/idk_recall", "IDK recall (hint)"},
    {"idk/hint/false_idk_rate", "false IDK rate (hint)"},
    {"idk/modality/image/mean_entropy", "answer entropy: image"},
    {"idk/modality/blank/mean_entropy", "answer entropy: blank image"},
    {"idk/modality/none/mean_entropy", "answer entropy: no image"},
    {"reasoning/step_accuracy", "reasoning step accuracy"},
    {"reasoning/answer_accuracy", "reasoning answer accuracy"},
    {"reasoning/unverifiable_share", "reasoning steps unverifiable"},
    {"all/accuracy", "accuracy"},
    {"all/ece", "ECE"},
    {"all/auroc", "AUROC"},
    {"all/aurc", "AURC"},
    {"seconds/total", "evaluation seconds"},
};

int top_rank(const std::string& k) {
  static const std::vector<std::string> kOrder = {"pope",      "pope_files", "chair",  "mc",    "idk",
                                                  "reasoning", "all",        "groups", "labels"};
  auto it = std::find(kOrder.begin(), kOrder.end(), k);
  if (it != kOrder.end()) return int(it - kOrder.begin());
  return k == "limits" ? 90 : k == "seconds" ? 91 : 50;
}

class Page {
 public:
  Page(const ReportOptions& opt, std::vector<Run> runs) : opt_(opt), runs_(std::move(runs)) {
    for (auto& r : runs_)
      for (auto& rs : r.results) cols_.push_back(&rs);
    for (const auto* c : cols_) {
      std::vector<std::string> p;
      find_calibration(c->results, "", p);
      merge_ordered(calibration_paths_, p);
    }
  }

  std::string render(ReportStats* stats) {
    header();
    if (!cols_.empty()) headline();
    if (!calibration_paths_.empty()) calibration();
    if (any_alignment()) alignment();
    training();
    if (opt_.examples_per_task > 0) examples();
    if (!cols_.empty()) all_metrics();
    os_ << "<footer>Definitions of every number: docs/metrics.md; this page: docs/report.md. "
        << "Rendered by <code>mmb report</code>.</footer></main></body></html>\n";
    stats_.result_sets = int(cols_.size());
    if (stats) *stats = stats_;
    return os_.str();
  }

 private:
  std::string table_head(const std::string& first) const {
    std::string s = "<thead><tr><th>" + html_escape(first) + "</th>";
    for (const auto* c : cols_) s += "<th>" + html_escape(c->label) + "</th>";
    if (cols_.size() == 2) s += "<th title=\"second minus first\">Δ</th>";
    return s + "</tr></thead>";
  }

  // One table row: the value at `path` in every column (+ delta for two columns).
  std::string row(const std::string& attr, const std::string& path, const std::string& name,
                  const std::vector<const Json*>& values) const {
    std::string s = "<tr " + attr + "=\"" + html_escape(path) + "\"><th>" + name + "</th>";
    for (const Json* v : values) s += cell(v);
    if (values.size() == 2) s += delta_cell(path, values[0], values[1]);
    return s + "</tr>";
  }

  bool any_samples() const {
    for (const auto* c : cols_)
      if (!c->samples.empty()) return true;
    return false;
  }
  bool any_alignment() const {
    for (const auto& r : runs_)
      if (!r.align.is_null()) return true;
    return false;
  }

  // `mmb align`'s rounds, laid out as the papers' tables: a row per model (the start, then each
  // round), a column per headline number, and the numbers as curves over the rounds.
  void alignment() {
    static const std::vector<std::pair<const char*, const char*>> kColumns = {
        {"pope_random", "POPE rnd"},
        {"pope_popular", "POPE pop"},
        {"pope_adversarial", "POPE adv"},
        {"chair_s", "CHAIR_s"},
        {"chair_i", "CHAIR_i"},
        {"mention_recall", "mention recall"},
        {"object_recall", "object recall"},
        {"verifiable_share", "verifiable"},
        {"repeating_share", "repeating"},
        {"mc_accuracy", "MC"},
        {"mc_ece", "MC ECE"},
        {"reasoning_step_accuracy", "step acc"},
        {"reasoning_answer_accuracy", "answer acc"}};
    static const std::vector<std::pair<std::string, std::vector<std::string>>> kCharts = {
        {"hallucination (lower is better)", {"chair_s", "chair_i"}},
        {"POPE accuracy", {"pope_random", "pope_popular", "pope_adversarial"}},
        {"recall and accuracy", {"mention_recall", "mc_accuracy", "reasoning_answer_accuracy"}}};
    os_ << "<section id=\"alignment\"><h2>Alignment rounds</h2><p class=\"definition\">Each round of "
        << "<code>mmb align</code> builds pairs with the round's start model, trains DPO from it and evaluates; "
        << "round 0 is the start model (docs/prefs.md).</p><div class=\"cards\">";
    for (const auto& run : runs_) {
      if (run.align.is_null()) continue;
      stats_.alignment_tables++;
      std::vector<std::pair<std::string, const Json*>> rows;  // label, headline
      std::vector<double> x;
      std::vector<std::string> pairs;
      if (run.align.contains("start") && run.align["start"].contains("eval")) {
        rows.emplace_back("0 (start)", &run.align["start"]["eval"]);
        x.push_back(0);
        pairs.emplace_back("");
      }
      for (const auto& r : run.align["rounds"]) {
        if (!r.is_object() || !r.contains("eval") || !r.contains("round")) continue;
        const int64_t round = r["round"].is_number_integer() ? r["round"].get<int64_t>() : int64_t(rows.size());
        rows.emplace_back(std::to_string(round), &r["eval"]);
        x.push_back(double(round));
        int64_t n = 0;
        bool built = false;
        if (r.contains("pairs") && r["pairs"].is_object())
          for (const auto& [name, rep] : r["pairs"].items())
            if (name != "stats" && rep.is_object() && rep.contains("pairs") && rep["pairs"].is_number()) {
              n += rep["pairs"].get<int64_t>();
              built = true;
            }
        pairs.push_back(built ? std::to_string(n) : "online");
      }
      std::vector<const char*> shown;
      for (const auto& [key, name] : kColumns)
        for (const auto& row : rows)
          if (row.second->contains(key)) {
            shown.push_back(key);
            break;
          }
      const std::string method = run.align.value("method", std::string("?"));
      os_ << "<div class=\"card\" id=\"alignment-" << slug(run.name) << "\"><h3>" << html_escape(run.name) << ": "
          << html_escape(method) << "</h3><table><thead><tr><th>round</th><th>pairs</th>";
      for (const char* key : shown)
        for (const auto& [k, name] : kColumns)
          if (k == key) os_ << "<th>" << html_escape(name) << "</th>";
      os_ << "</tr></thead><tbody>";
      for (size_t i = 0; i < rows.size(); ++i) {
        os_ << "<tr data-round=\"" << html_escape(rows[i].first) << "\"><th>" << html_escape(rows[i].first)
            << "</th><td>" << html_escape(pairs[i]) << "</td>";
        for (const char* key : shown) os_ << cell(rows[i].second->contains(key) ? &(*rows[i].second)[key] : nullptr);
        os_ << "</tr>";
      }
      os_ << "</tbody></table>";
      if (rows.size() >= 2) {
        os_ << "<div class=\"charts\">";
        for (const auto& [title, keys] : kCharts) {
          std::vector<Series> series;
          for (size_t k = 0; k < keys.size(); ++k) {
            Series s;
            s.label = keys[k];
            s.color = series_color(k);
            for (size_t i = 0; i < rows.size(); ++i)
              if (const Json* v = rows[i].second; v->contains(keys[k]) && (*v)[keys[k]].is_number()) {
                s.x.push_back(x[i]);
                s.y.push_back((*v)[keys[k]].get<double>());
              }
            if (s.x.size() >= 2) series.push_back(std::move(s));
          }
          if (!series.empty()) os_ << line_chart_svg(series, title, "round", "", 300, 220, false);
        }
        os_ << "</div>";
      }
      os_ << "</div>";
    }
    os_ << "</div></section>\n";
  }

  bool any_curves() const {
    for (const auto& r : runs_)
      if (!r.curves.empty()) return true;
    return false;
  }

  void header() {
    std::string names;
    for (const auto& r : runs_) names += (names.empty() ? "" : " vs ") + r.name;
    const std::string title = opt_.title.empty() ? "mmb report: " + names : opt_.title;
    os_ << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>" << html_escape(title)
        << "</title><style>" << kReportStyle << "</style></head><body><main>\n<header><h1>" << html_escape(title)
        << "</h1><p class=\"sub\">generated " << utc_timestamp() << " by mmb " << version() << " (commit "
        << html_escape(git_commit()) << ") from " << runs_.size() << " run director"
        << (runs_.size() == 1 ? "y" : "ies") << ", " << cols_.size() << " result set" << (cols_.size() == 1 ? "" : "s")
        << "</p><nav>";
    if (!cols_.empty()) os_ << "<a href=\"#headline\">Headline</a>";
    if (!calibration_paths_.empty()) os_ << "<a href=\"#calibration\">Calibration</a>";
    if (any_alignment()) os_ << "<a href=\"#alignment\">Alignment rounds</a>";
    if (any_curves()) os_ << "<a href=\"#training\">Training</a>";
    if (any_samples() && opt_.examples_per_task > 0) os_ << "<a href=\"#examples\">Examples</a>";
    if (!cols_.empty()) os_ << "<a href=\"#metrics\">All metrics</a>";
    os_ << "</nav></header>\n";
    // The manifests: one row per run directory and phase.
    os_ << "<section id=\"runs\"><div class=\"card\"><table class=\"runs\"><thead><tr><th>run</th><th>part</th>"
        << "<th>command</th><th>status</th><th>started</th><th>finished</th><th>seed</th><th>git commit</th>"
        << "</tr></thead><tbody>";
    for (const auto& r : runs_) {
      if (r.manifests.empty())
        os_ << "<tr><td>" << html_escape(r.name) << "</td><td colspan=\"7\">no manifest.json in " << html_escape(r.dir)
            << "</td></tr>";
      for (const auto& m : r.manifests) {
        const Json& j = m.json;
        const std::string status = j.contains("status") ? text_of(j["status"]) : "";
        os_ << "<tr><td>" << html_escape(r.name) << "</td><td>" << html_escape(m.where) << "</td><td><code>"
            << html_escape(join_command(j.value("command", Json()))) << "</code></td><td><span class=\"status "
            << slug(status) << "\">" << html_escape(status) << "</span></td><td class=\"nowrap\">"
            << html_escape(text_of(j.value("start_time", Json()))) << "</td><td class=\"nowrap\">"
            << html_escape(text_of(j.value("end_time", Json()))) << "</td><td>"
            << html_escape(text_of(j.value("seed", Json()))) << "</td><td class=\"nowrap\"><code>"
            << html_escape(text_of(j.value("git_commit", Json()))) << "</code></td></tr>";
      }
    }
    os_ << "</tbody></table>";
    for (const auto& r : runs_) {
      if (!r.phases.empty()) {
        os_ << "<p class=\"definition\"><b>" << html_escape(r.name) << " phases</b> (metrics.jsonl): ";
        for (size_t i = 0; i < r.phases.size(); ++i)
          os_ << (i ? " · " : "") << html_escape(r.phases[i].first) << " " << format_number(r.phases[i].second) << " s";
        os_ << "</p>";
      }
      for (const auto& m : r.manifests) {
        if (m.where != ".") continue;
        os_ << "<details><summary>" << html_escape(r.name) << ": configuration and machine (" << html_escape(m.file)
            << ")</summary><div class=\"tables\">";
        for (const char* key : {"config", "machine"}) {
          if (!m.json.contains(key) || !m.json[key].is_object()) continue;
          os_ << "<table><caption>" << key << "</caption><tbody>";
          std::vector<std::pair<std::string, Json>> rows;
          flatten(m.json[key], "", rows);
          for (const auto& [k, v] : rows) os_ << "<tr><th>" << html_escape(k) << "</th>" << cell(&v) << "</tr>";
          os_ << "</tbody></table>";
        }
        os_ << "</div></details>";
      }
    }
    os_ << "</div></section>\n";
  }

  void headline() {
    os_ << "<section id=\"headline\"><h2>Headline</h2><div class=\"card\" style=\"display:inline-block\">"
        << "<table class=\"headline\">" << table_head("metric") << "<tbody>";
    int rows = 0;
    auto emit = [&](const std::string& path, const std::string& label) {
      std::vector<const Json*> values;
      bool any = false;
      for (const auto* c : cols_) {
        const Json* v = at_path(c->results, path);
        if (v && v->is_object()) v = nullptr;
        values.push_back(v);
        any |= v != nullptr;
      }
      if (!any) return;
      os_ << row("data-headline", path, html_escape(label) + "<span class=\"key\">" + html_escape(path) + "</span>",
                 values);
      ++rows;
    };
    for (const auto& [path, label] : kHeadline) emit(path, label);
    if (rows <= 1)  // not the suite's results: accuracy, ECE, AUROC of every calibration summary
      for (const auto& p : calibration_paths_)
        for (const char* k : {"accuracy", "ece", "auroc"})
          emit(p.empty() ? k : p + "/" + k, (p.empty() ? "" : p + ": ") + k);
    os_ << "</tbody></table></div>";
    std::vector<std::string> defs;
    for (const auto* c : cols_)
      if (c->results.contains("definition") && c->results["definition"].is_string())
        merge_ordered(defs, {c->results["definition"].get<std::string>()});
    for (const auto& d : defs) os_ << "<p class=\"definition\"><b>Definition.</b> " << html_escape(d) << "</p>";
    os_ << "</section>\n";
  }

  void calibration() {
    os_ << "<section id=\"calibration\"><h2>Calibration</h2><p class=\"definition\">One card per calibration "
        << "summary: the reliability diagram (accuracy per confidence bin; red: the gap to the bin's mean "
        << "confidence; dashed: perfect calibration; numbers: questions per bin) and the risk–coverage curve (error "
           "rate when answering only "
        << "the most confident share).</p><div class=\"cards\">";
    for (const auto& path : calibration_paths_) {
      os_ << "<div class=\"card calib\" id=\"cal-" << slug(path) << "\"><h3>"
          << html_escape(path.empty() ? "(top level)" : path) << "</h3><div class=\"charts\">";
      std::vector<Series> rc;
      for (size_t i = 0; i < cols_.size(); ++i) {
        const Json* obj = at_path(cols_[i]->results, path);
        if (!obj || !is_calibration(*obj)) continue;
        const std::string svg = reliability_svg(*obj, cols_[i]->label, series_color(i));
        if (!svg.empty()) {
          os_ << "<figure>";
          if (cols_.size() > 1) os_ << "<figcaption>" << html_escape(cols_[i]->label) << "</figcaption>";
          os_ << svg << "</figure>";
          stats_.calibration_charts++;
        }
        const Json* curve = at_path(*obj, "risk_coverage");
        if (!curve || !curve->is_object()) continue;
        Series s;
        s.color = series_color(i);
        s.label = cols_[i]->label;
        if (obj->contains("aurc") && (*obj)["aurc"].is_number())
          s.label += " · AURC " + format_number((*obj)["aurc"].get<double>());
        const Json cov = curve->value("coverage", Json::array()), risk = curve->value("risk", Json::array());
        for (size_t k = 0; k < cov.size() && k < risk.size(); ++k)
          if (cov[k].is_number() && risk[k].is_number()) {
            s.x.push_back(cov[k].get<double>());
            s.y.push_back(risk[k].get<double>());
          }
        if (!s.x.empty()) rc.push_back(std::move(s));
      }
      if (!rc.empty())
        os_ << "<figure>" << (cols_.size() > 1 ? "<figcaption>&nbsp;</figcaption>" : "") << risk_coverage_svg(rc)
            << "</figure>";
      os_ << "</div></div>";
    }
    os_ << "</div></section>\n";
  }

  void training() {
    std::vector<std::string> phases;
    for (const auto& r : runs_)
      for (const auto& c : r.curves) merge_ordered(phases, {c.phase});
    if (phases.empty()) return;
    os_ << "<section id=\"training\"><h2>Training</h2><div class=\"cards\">";
    for (const auto& phase : phases) {
      std::vector<Series> loss, lr, grad;
      std::ostringstream table;
      table << "<table><thead><tr><th>run</th><th>steps</th><th>first loss</th><th>last loss</th><th>min loss</th>"
            << "<th>wall s</th></tr></thead><tbody>";
      for (size_t i = 0; i < runs_.size(); ++i)
        for (const auto& c : runs_[i].curves) {
          if (c.phase != phase) continue;
          stats_.training_curves++;
          auto add = [&](std::vector<Series>& to, const std::vector<double>& y) {
            if (std::none_of(y.begin(), y.end(), [](double v) { return std::isfinite(v); })) return;
            to.push_back({runs_[i].name, series_color(i), c.step, y});
          };
          add(loss, c.loss);
          add(lr, c.lr);
          add(grad, c.grad_norm);
          double lo = INFINITY;
          for (double v : c.loss) lo = std::min(lo, v);
          table << "<tr><th>" << html_escape(runs_[i].name) << "</th><td>" << format_number(c.step.front()) << "–"
                << format_number(c.step.back()) << "</td><td>" << format_number(c.loss.front()) << "</td><td>"
                << format_number(c.loss.back()) << "</td><td>" << format_number(lo) << "</td><td>"
                << format_number(c.wall_s) << "</td></tr>";
        }
      table << "</tbody></table>";
      os_ << "<div class=\"card training\" id=\"training-" << slug(phase) << "\"><h3>" << html_escape(phase)
          << "</h3><div class=\"charts\">" << line_chart_svg(loss, phase + ": loss", "step", "loss", 540, 270, true);
      if (!lr.empty()) os_ << line_chart_svg(lr, "learning rate", "step", "lr", 270, 270, false);
      if (!grad.empty()) os_ << line_chart_svg(grad, "gradient norm", "step", "grad norm", 270, 270, true);
      os_ << "</div>" << table.str() << "</div>";
    }
    os_ << "</div></section>\n";
  }

  // <img> with the image as a data URI, or a placeholder naming the path when it is not found.
  std::string image_tag(const ResultSet& rs, const std::string& image) {
    if (image.empty()) return "<div class=\"noimg\">no image</div>";
    std::string file;
    const fs::path ip(image);
    std::vector<fs::path> candidates;
    if (ip.is_absolute()) candidates.push_back(ip);
    for (const auto& root : rs.image_roots) candidates.push_back(fs::path(root) / ip);
    for (const auto& c : candidates) {
      std::error_code ec;
      if (fs::is_regular_file(c, ec)) {
        file = c.string();
        break;
      }
    }
    auto it = image_cache_.find(file);
    if (file.empty() || it == image_cache_.end()) {
      std::string uri;
      std::error_code ec;
      if (!file.empty() && int64_t(fs::file_size(file, ec)) <= opt_.max_image_bytes && !ec) {
        try {
          const std::string bytes = read_file(file);
          const char* mime = bytes.rfind("\x89PNG", 0) == 0    ? "image/png"
                             : bytes.rfind("\xFF\xD8", 0) == 0 ? "image/jpeg"
                                                               : nullptr;
          if (mime) uri = std::string("data:") + mime + ";base64," + base64_encode(bytes);
        } catch (const Error&) {
        }
      }
      it = image_cache_.emplace(file, uri).first;
      if (file.empty()) image_cache_.erase(it), it = image_cache_.end();
    }
    if (it == image_cache_.end() || it->second.empty())
      return "<div class=\"noimg\" title=\"not found\">" + html_escape(image) + "</div>";
    stats_.images++;
    return "<img src=\"" + it->second + "\" alt=\"" + html_escape(image) + "\">";
  }

  void example_card(const ResultSet& rs, const Json& s) {
    const bool ok = s.value("correct", false) == true;
    os_ << "<div class=\"example " << (ok ? "ok" : "bad") << "\">"
        << image_tag(rs, s.contains("image") && s["image"].is_string() ? s["image"].get<std::string>() : "")
        << "<div class=\"ex-body\"><div class=\"ex-head\"><span class=\"badge "
        << (ok ? "ok\">✓ correct" : "bad\">✗ wrong") << "</span>"
        << "<span class=\"group\">" << html_escape(text_of(s.value("group", s.value("task", Json())))) << "</span>";
    if (s.contains("confidence") && s["confidence"].is_number())
      os_ << "<span class=\"group\">conf " << format_number(s["confidence"].get<double>()) << "</span>";
    os_ << "</div>";
    auto line = [&](const char* key, const char* name) {
      if (!s.contains(key)) return;
      if (s[key].is_null()) {  // e.g. no option letter found in the answer
        if (std::string(key) == "prediction") os_ << "<div><b>" << name << "</b><i>nothing</i></div>";
        return;
      }
      const std::string t = text_of(s[key]);
      if (!t.empty()) os_ << "<div><b>" << name << "</b>" << html_escape(t) << "</div>";
    };
    line("question", "Q");
    line("answer", "A");
    line("prediction", "parsed");
    line("label", "truth");
    line("hallucinated", "hallucinated");
    line("steps", "steps");
    os_ << "</div></div>";
    stats_.examples++;
  }

  void examples() {
    if (!any_samples()) return;
    os_ << "<section id=\"examples\"><h2>Examples</h2><p class=\"definition\">Up to " << opt_.examples_per_task
        << " questions per task, wrong and correct answers alternating, spread over the task's questions. "
        << "<b>A</b>: the model's answer; <b>parsed</b>: what the checker read from it; <b>truth</b>: the "
        << "world's answer.</p>";
    for (const auto* c : cols_) {
      if (c->samples.empty()) continue;
      if (cols_.size() > 1) os_ << "<h3>" << html_escape(c->label) << "</h3>";
      std::vector<std::string> tasks;
      std::map<std::string, std::vector<const Json*>> right, wrong;
      for (const auto& s : c->samples) {
        const std::string task = s.contains("task") ? text_of(s["task"]) : "samples";
        merge_ordered(tasks, {task});
        (s.value("correct", false) == true ? right : wrong)[task].push_back(&s);
      }
      for (const auto& task : tasks) {
        const auto& R = right[task];
        const auto& W = wrong[task];
        // Evenly spaced picks from each list, alternating wrong / correct.
        const size_t k = size_t(opt_.examples_per_task);
        const size_t kw = std::min(W.size(), std::max(k / 2 + k % 2, k - std::min(k / 2, R.size())));
        const size_t kr = std::min(R.size(), k - kw);
        auto pick = [](const std::vector<const Json*>& v, size_t n) {
          std::vector<const Json*> out;
          for (size_t i = 0; i < n; ++i) out.push_back(v[i * v.size() / n]);
          return out;
        };
        const auto pw = pick(W, kw), pr = pick(R, kr);
        os_ << "<h4>" << html_escape(task) << " · " << (kw + kr) << " of " << (R.size() + W.size()) << " shown ("
            << R.size() << " correct)</h4><div class=\"examples\">";
        for (size_t i = 0; i < std::max(pw.size(), pr.size()); ++i) {
          if (i < pw.size()) example_card(*c, *pw[i]);
          if (i < pr.size()) example_card(*c, *pr[i]);
        }
        os_ << "</div>";
      }
    }
    os_ << "</section>\n";
  }

  void all_metrics() {
    os_ << "<section id=\"metrics\"><h2>All metrics</h2><p class=\"definition\">Every number of every "
        << "results.json, by task; a row's key is its path in the file. n/a: undefined (e.g. AUROC with one "
        << "class).";
    if (cols_.size() == 2) os_ << " Δ = second minus first; green: better, red: worse.";
    os_ << "</p>";
    for (const auto* c : cols_)
      os_ << "<p class=\"definition\"><b>" << html_escape(c->label) << "</b>: <code>" << html_escape(c->file)
          << "</code></p>";
    std::vector<std::string> keys;
    for (const auto* c : cols_) {
      std::vector<std::string> k;
      for (auto it = c->results.begin(); it != c->results.end(); ++it)
        if (it.key() != "samples" && it.key() != "definition") k.push_back(it.key());
      merge_ordered(keys, k);
    }
    // Top-level scalars first ("setup"), then one block per object in task order.
    std::vector<std::string> setup, sections;
    for (const auto& k : keys) {
      bool obj = false;
      for (const auto* c : cols_) obj |= c->results.contains(k) && c->results[k].is_object();
      (obj ? sections : setup).push_back(k);
    }
    std::stable_sort(sections.begin(), sections.end(),
                     [](const std::string& a, const std::string& b) { return top_rank(a) < top_rank(b); });
    os_ << "<div class=\"tables\">";
    if (!setup.empty()) {
      os_ << "<div class=\"card\"><table>" << table_head("setup") << "<tbody>";
      for (const auto& k : setup) {
        std::vector<Json> holder(cols_.size(), Json(Json::value_t::discarded));
        std::vector<const Json*> values;
        for (size_t i = 0; i < cols_.size(); ++i)
          if (cols_[i]->results.contains(k)) holder[i] = leaf_value(cols_[i]->results[k]);
        for (const auto& h : holder) values.push_back(h.is_discarded() ? nullptr : &h);
        os_ << row("data-key", k, html_escape(k), values);
      }
      os_ << "</tbody></table></div>";
    }
    os_ << "</div>";
    for (const auto& sec : sections) {
      std::vector<std::map<std::string, Json>> flat(cols_.size());
      std::vector<std::string> paths;
      for (size_t i = 0; i < cols_.size(); ++i) {
        if (!cols_[i]->results.contains(sec)) continue;
        std::vector<std::pair<std::string, Json>> rows;
        flatten(cols_[i]->results[sec], sec, rows);
        std::vector<std::string> p;
        for (auto& [k, v] : rows) {
          p.push_back(k);
          flat[i][k] = std::move(v);
        }
        merge_ordered(paths, p);
      }
      std::vector<std::string> groups;
      for (const auto& p : paths) merge_ordered(groups, {parent_of(p)});
      os_ << "<h3 class=\"section\" id=\"metrics-" << slug(sec) << "\">" << html_escape(sec)
          << "</h3><div class=\"tables\">";
      for (const auto& g : groups) {
        os_ << "<div class=\"card\"><table><caption>" << html_escape(g) << "</caption>" << table_head("metric")
            << "<tbody>";
        for (const auto& p : paths) {
          if (parent_of(p) != g) continue;
          std::vector<const Json*> values;
          for (const auto& f : flat) {
            auto it = f.find(p);
            values.push_back(it == f.end() ? nullptr : &it->second);
          }
          os_ << row("data-key", p, html_escape(leaf_of(p)), values);
        }
        os_ << "</tbody></table></div>";
      }
      os_ << "</div>";
    }
    os_ << "</section>\n";
  }

  const ReportOptions& opt_;
  std::vector<Run> runs_;
  std::vector<const ResultSet*> cols_;
  std::vector<std::string> calibration_paths_;
  std::map<std::string, std::string> image_cache_;  // file -> data URI ("" = not embeddable)
  std::ostringstream os_;
  ReportStats stats_;
};

}  // namespace

std::string render_report(const ReportOptions& options, ReportStats* stats) {
  if (options.runs.empty()) fail("render_report: no run directories given");
  if (options.examples_per_task < 0)
    fail("render_report: examples_per_task must be >= 0, got ", options.examples_per_task);
  std::vector<Run> runs;
  for (const auto& dir : options.runs) runs.push_back(scan_run(dir));
  // Two runs with the same directory name (a/run, b/run): label columns by the path as given.
  std::map<std::string, int> seen;
  for (const auto& r : runs) seen[r.name]++;
  for (auto& r : runs)
    if (seen[r.name] > 1) {
      const std::string old = r.name;
      r.name = fs::path(r.dir).lexically_normal().string();
      for (auto& rs : r.results) rs.label = r.name + rs.label.substr(old.size());
    }
  return Page(options, std::move(runs)).render(stats);
}

ReportStats write_report(const ReportOptions& options, const std::string& path) {
  ReportStats stats;
  const std::string html = render_report(options, &stats);
  write_file_atomic(path, html);
  return stats;
}

}  // namespace mmb
