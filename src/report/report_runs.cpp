// Finding what a run directory holds, for the report: RUN/{results.json, metrics.jsonl,
// manifest.json} and the same one level down (RUN/clip, RUN/sft, RUN/eval_calibrated, ...).
#include "report_internal.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "mmb/error.h"
#include "mmb/jsonl.h"

namespace fs = std::filesystem;

namespace mmb::report_detail {
namespace {

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

double number_or_nan(const Json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : NAN;
}

Json read_json_checked(const fs::path& file, const char* what) {
  Json j;
  try {
    j = read_json_file(file.string());
  } catch (const Error& e) {
    fail("render_report: malformed ", what, " ", file.string(), ": ", e.what());
  }
  if (!j.is_object()) fail("render_report: ", file.string(), ": expected a JSON object, found ", j.type_name());
  return j;
}

std::vector<Json> read_objects(const fs::path& file) {
  std::vector<Json> out;
  try {
    JsonlReader reader(file.string());
    Json j;
    while (reader.next(j))
      if (j.is_object()) out.push_back(std::move(j));
  } catch (const Error& e) {
    fail("render_report: malformed ", file.string(), ": ", e.what());
  }
  return out;
}

TrainingCurve read_curve(const fs::path& file, std::vector<std::pair<std::string, double>>* phases) {
  TrainingCurve c;
  c.file = file.string();
  std::map<double, Json> by_step;  // a resumed run logs some steps twice: the last line wins
  for (auto& j : read_objects(file)) {
    if (j.contains("wall_s") && j["wall_s"].is_number()) c.wall_s = j["wall_s"].get<double>();
    if (phases && j.contains("phase") && j["phase"].is_string() && j.contains("seconds") && j["seconds"].is_number())
      phases->emplace_back(j["phase"].get<std::string>(), j["seconds"].get<double>());
    if (j.contains("step") && j["step"].is_number() && j.contains("loss") && j["loss"].is_number()) {
      const double step = j["step"].get<double>();
      by_step[step] = std::move(j);
    }
  }
  for (const auto& [step, j] : by_step) {
    c.step.push_back(step);
    c.loss.push_back(number_or_nan(j, "loss"));
    c.lr.push_back(number_or_nan(j, "lr"));
    c.grad_norm.push_back(number_or_nan(j, "grad_norm"));
  }
  return c;
}

// Candidate world / image directories named by a results object or a manifest's config.
void add_roots(const Json& j, const fs::path& run_dir, std::vector<std::string>& roots) {
  if (!j.is_object()) return;
  for (const char* key : {"data", "world", "images", "pope_images"}) {
    if (!j.contains(key) || !j[key].is_string() || j[key].get<std::string>().empty()) continue;
    const fs::path p = j[key].get<std::string>();
    for (const fs::path& cand : {p, run_dir / p})
      if (is_dir(cand) && std::find(roots.begin(), roots.end(), cand.string()) == roots.end())
        roots.push_back(cand.string());
  }
}

}  // namespace

Run scan_run(const std::string& dir) {
  if (!is_dir(dir)) fail("render_report: run directory not found: ", dir);
  Run run;
  run.dir = dir;
  fs::path norm = fs::path(dir).lexically_normal();
  if (norm.filename().empty()) norm = norm.parent_path();
  run.name = norm.filename().string();
  if (run.name.empty() || run.name == "." || run.name == "..")
    run.name = fs::absolute(norm).lexically_normal().filename().string();
  // The run itself first, then its subdirectories in name order.
  std::vector<std::pair<std::string, fs::path>> places = {{"", fs::path(dir)}};
  std::vector<fs::path> subs;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && e.path().filename().string()[0] != '.') subs.push_back(e.path());
  std::sort(subs.begin(), subs.end());
  for (const auto& s : subs) places.emplace_back(s.filename().string(), s);
  for (const auto& [sub, p] : places)
    if (is_file(p / "manifest.json"))
      run.manifests.push_back({sub.empty() ? "." : sub, (p / "manifest.json").string(),
                               read_json_checked(p / "manifest.json", "manifest")});
  if (is_file(fs::path(dir) / "align.json")) {
    run.align = read_json_checked(fs::path(dir) / "align.json", "align");
    if (!run.align.is_object() || !run.align.contains("rounds") || !run.align["rounds"].is_array())
      fail("render_report: ", (fs::path(dir) / "align.json").string(),
           ": expected mmb align's summary with \"rounds\"");
  }
  bool any_metrics = false;
  for (const auto& [sub, p] : places) {
    if (is_file(p / "metrics.jsonl")) {
      any_metrics = true;
      TrainingCurve c = read_curve(p / "metrics.jsonl", sub.empty() ? &run.phases : nullptr);
      c.phase = sub.empty() ? "train" : sub;
      if (!c.step.empty()) run.curves.push_back(std::move(c));
    }
    if (!is_file(p / "results.json")) continue;
    ResultSet rs;
    rs.file = (p / "results.json").string();
    rs.label = sub.empty() ? run.name : run.name + "/" + sub;
    rs.results = read_json_checked(rs.file, "results");
    if (rs.results.contains("samples") && rs.results["samples"].is_array()) {
      for (const auto& s : rs.results["samples"])
        if (s.is_object()) rs.samples.push_back(s);
    } else if (is_file(p / "samples.jsonl")) {
      rs.samples = read_objects(p / "samples.jsonl");
    }
    add_roots(rs.results, dir, rs.image_roots);
    for (const auto& m : run.manifests)
      if (m.where == (sub.empty() ? "." : sub) && m.json.contains("config"))  // its own manifest first
        add_roots(m.json["config"], dir, rs.image_roots);
    for (const auto& m : run.manifests)
      if (m.json.contains("config")) add_roots(m.json["config"], dir, rs.image_roots);
    for (const fs::path& w : {p / "world", fs::path(dir) / "world"})
      if (is_dir(w) && std::find(rs.image_roots.begin(), rs.image_roots.end(), w.string()) == rs.image_roots.end())
        rs.image_roots.push_back(w.string());
    run.results.push_back(std::move(rs));
  }
  if (run.results.empty() && !any_metrics)
    fail("render_report: ", dir, " has no results.json and no metrics.jsonl (looked in ", dir, " and ", dir,
         "/*); is it a run directory?");
  return run;
}

}  // namespace mmb::report_detail
