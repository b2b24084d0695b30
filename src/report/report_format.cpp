// Formatting pieces of the HTML report: escaping, base64, results flattened into table rows,
// cells with deltas, and the stylesheet.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <set>
#include <sstream>

#include "mmb/report.h"
#include "report_internal.h"
#include "report_svg.h"

namespace mmb {

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 16);
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string base64_encode(std::string_view bytes) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8 | uint8_t(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (i + 1 == bytes.size()) {
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

namespace report_detail {
namespace {

// Order of sub-objects: the world's categories and variants in their natural order, calibration last.
int child_rank(const std::string& k) {
  static const std::vector<std::string> kOrder = {"random", "popular",  "adversarial", "all",   "plain",
                                                  "hint",   "modality", "image",       "blank", "none"};
  auto it = std::find(kOrder.begin(), kOrder.end(), k);
  if (it != kOrder.end()) return int(it - kOrder.begin());
  return k == "calibration" ? 1000 : 500;
}

// Keys of an object: scalars first (alphabetical), then objects by rank.
std::vector<std::string> ordered_keys(const Json& obj) {
  std::vector<std::string> scalars, objects;
  for (auto it = obj.begin(); it != obj.end(); ++it) (it->is_object() ? objects : scalars).push_back(it.key());
  std::stable_sort(objects.begin(), objects.end(),
                   [](const std::string& a, const std::string& b) { return child_rank(a) < child_rank(b); });
  scalars.insert(scalars.end(), objects.begin(), objects.end());
  return scalars;
}

}  // namespace

bool is_calibration(const Json& j) {
  return j.is_object() && (j.contains("reliability") || j.contains("risk_coverage"));
}

// A cell's value: numbers stay numbers (for deltas), short string arrays are joined, long or
// numeric arrays (curves) and arrays of objects are skipped (returned as discarded).
Json leaf_value(const Json& j) {
  if (!j.is_array()) return j;
  if (j.size() > 16) return Json::value_t::discarded;
  std::string s;
  for (const auto& e : j) {
    if (!e.is_string()) return Json::value_t::discarded;
    s += (s.empty() ? "" : ", ") + e.get<std::string>();
  }
  return s;
}

void flatten(const Json& j, const std::string& path, std::vector<std::pair<std::string, Json>>& out) {
  for (const auto& k : ordered_keys(j)) {
    if (k == "reliability" || k == "risk_coverage" || k == "definition" || k == "samples") continue;
    const Json& v = j[k];
    const std::string p = path.empty() ? k : path + "/" + k;
    if (v.is_object()) {
      flatten(v, p, out);
    } else {
      Json leaf = leaf_value(v);
      if (!leaf.is_discarded()) out.emplace_back(p, std::move(leaf));
    }
  }
}

void find_calibration(const Json& j, const std::string& path, std::vector<std::string>& out) {
  if (!j.is_object()) return;
  if (is_calibration(j)) out.push_back(path);
  for (const auto& k : ordered_keys(j))
    if (k != "samples" && j[k].is_object()) find_calibration(j[k], path.empty() ? k : path + "/" + k, out);
}

const Json* at_path(const Json& j, const std::string& path) {
  // Keys may contain '/' themselves (`mmb metrics` groups such as "pope/random"): at each level
  // the longest prefix of the rest of the path that is a key wins.
  const Json* p = &j;
  std::string rest = path;
  while (!rest.empty()) {
    if (!p->is_object()) return nullptr;
    size_t cut = rest.size();
    while (true) {
      if (p->contains(rest.substr(0, cut))) break;
      cut = cut == 0 ? std::string::npos : rest.rfind('/', cut - 1);
      if (cut == std::string::npos || cut == 0) return nullptr;
    }
    p = &(*p)[rest.substr(0, cut)];
    rest = cut < rest.size() ? rest.substr(cut + 1) : "";
  }
  return p;
}

// +1 higher is better, -1 lower is better, 0 neither (counts, ratios, times).
int direction(const std::string& path) {
  const std::string leaf = path.substr(path.rfind('/') + 1);
  if (path.find("modality/blank") != std::string::npos || path.find("modality/none") != std::string::npos) return 0;
  static const std::set<std::string> kLower = {"ece",
                                               "ece_equal_mass",
                                               "mce",
                                               "brier",
                                               "nll",
                                               "aurc",
                                               "e_aurc",
                                               "chair_s",
                                               "chair_i",
                                               "false_idk_rate",
                                               "unparsed",
                                               "no_letter",
                                               "no_answer",
                                               "false_sentences",
                                               "false_steps",
                                               "hallucinated_mentions",
                                               "captions_hallucinating",
                                               "loss"};
  static const std::set<std::string> kHigher = {"accuracy",
                                                "accuracy_answerable",
                                                "accuracy_answered",
                                                "f1",
                                                "mean_f1",
                                                "mean_accuracy",
                                                "precision",
                                                "recall",
                                                "auroc",
                                                "auprc",
                                                "yes_prob_auroc",
                                                "prob_accuracy",
                                                "idk_recall",
                                                "idk_precision",
                                                "sentence_precision",
                                                "object_recall",
                                                "mention_recall",
                                                "verifiable_share",
                                                "step_accuracy",
                                                "verifiable_step_accuracy",
                                                "chain_accuracy",
                                                "answer_accuracy"};
  return kLower.count(leaf) ? -1 : kHigher.count(leaf) ? 1 : 0;
}

std::string text_of(const Json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_number()) return format_number(j.get<double>());
  if (j.is_boolean()) return j.get<bool>() ? "true" : "false";
  if (j.is_null()) return "";
  if (j.is_array()) {
    std::string s;
    for (const auto& e : j) s += (s.empty() ? "" : ", ") + text_of(e);
    return s;
  }
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string cell(const Json* v) {
  if (!v || v->is_discarded()) return "<td class=\"missing\">–</td>";
  if (v->is_null()) return "<td class=\"missing\" title=\"undefined (null)\">n/a</td>";
  if (v->is_number()) return "<td>" + format_number(v->get<double>()) + "</td>";
  return "<td class=\"text\">" + html_escape(text_of(*v)) + "</td>";
}

std::string delta_cell(const std::string& path, const Json* a, const Json* b) {
  if (!a || !b || !a->is_number() || !b->is_number()) return "<td class=\"delta\"></td>";
  const double d = b->get<double>() - a->get<double>();
  const int dir = direction(path) * (d > 0 ? 1 : d < 0 ? -1 : 0);
  return std::string("<td class=\"delta") +
         (dir > 0   ? " better"
          : dir < 0 ? " worse"
                    : "") +
         "\">" + (d > 0 ? "+" : "") + format_number(d) + "</td>";
}

std::string join_command(const Json& cmd) {
  if (!cmd.is_array()) return text_of(cmd);
  if (cmd.size() == 1) return text_of(cmd[0]);  // a description, not an argv
  std::string s;
  for (const auto& a : cmd) {
    std::string t = text_of(a);
    if (t.empty() || t.find_first_of(" \t\"'") != std::string::npos) t = "'" + t + "'";
    s += (s.empty() ? "" : " ") + t;
  }
  return s;
}

std::string slug(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) ? c : '-';
  return out;
}

std::string parent_of(const std::string& path) {
  const auto p = path.rfind('/');
  return p == std::string::npos ? "" : path.substr(0, p);
}

std::string leaf_of(const std::string& path) { return path.substr(path.rfind('/') + 1); }

void merge_ordered(std::vector<std::string>& into, const std::vector<std::string>& more) {
  std::set<std::string> have(into.begin(), into.end());
  for (const auto& m : more)
    if (have.insert(m).second) into.push_back(m);
}

const char* const kReportStyle = R"css(
:root{--fg:#1f2933;--muted:#616e7c;--line:#e4e7eb;--bg:#f5f7fa;--card:#fff;--ok:#2f855a;--bad:#c53030;--link:#2b6cb0}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 "DejaVu Sans",Helvetica,Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:18px 12px 48px}
h1{font-size:24px;margin:0 0 2px}
h2{font-size:19px;margin:30px 0 12px;padding-bottom:4px;border-bottom:2px solid var(--line)}
h3{font-size:15px;margin:0 0 8px}
h3.section{font-size:16px;margin:22px 0 10px}
h4{font-size:14px;margin:16px 0 8px;color:var(--muted)}
.sub{color:var(--muted);margin:0 0 10px}
nav{margin:8px 0 16px}
nav a{margin-right:16px;color:var(--link);text-decoration:none;font-weight:bold}
code{font:12px/1.4 "DejaVu Sans Mono",Menlo,monospace;background:#f0f4f8;padding:1px 4px;border-radius:3px;word-break:break-all}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px;box-shadow:0 1px 2px rgba(0,0,0,.05)}
.cards{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
.tables{display:grid;grid-template-columns:repeat(auto-fill,minmax(370px,1fr));gap:12px;align-items:start}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;width:100%}
th,td{padding:3px 9px;border-bottom:1px solid var(--line);text-align:right;vertical-align:top}
th:first-child{text-align:left;font-weight:normal}
thead th{font-weight:bold;background:#f0f4f8;border-bottom:2px solid #cbd2d9;white-space:nowrap}
thead th:first-child{font-weight:bold}
caption{text-align:left;font-weight:bold;padding:0 0 6px}
td.text{text-align:left}
td.missing{color:#9aa5b1}
td.delta{color:var(--muted)}
td.delta.better{color:var(--ok);font-weight:bold}
td.delta.worse{color:var(--bad);font-weight:bold}
table.headline{font-size:15px;width:auto;min-width:560px}
table.headline td{min-width:90px}
.key{color:#9aa5b1;font-size:11px;margin-left:6px}
table.runs td,table.runs th{text-align:left}
td.nowrap,td.nowrap code{white-space:nowrap;word-break:normal}
.status{padding:1px 7px;border-radius:9px;font-size:12px;font-weight:bold;background:#e4e7eb}
.status.ok{background:#c6f6d5;color:#22543d}
.status.running{background:#feebc8;color:#7b341e}
.status.failed{background:#fed7d7;color:#742a2a}
.definition{color:var(--muted);font-size:13px;max-width:1000px}
details{margin-top:10px}
summary{cursor:pointer;color:var(--link)}
figure{margin:0}
figcaption{font-weight:bold;font-size:13px;margin:0 0 2px}
.charts{display:flex;flex-wrap:wrap;gap:12px}
svg.chart{display:block}
.examples{display:grid;grid-template-columns:repeat(auto-fill,minmax(370px,1fr));gap:12px}
.example{display:flex;gap:12px;background:var(--card);border:1px solid var(--line);border-left:5px solid var(--line);border-radius:6px;padding:10px}
.example.ok{border-left-color:var(--ok)}
.example.bad{border-left-color:var(--bad)}
.example img{width:128px;height:auto;image-rendering:pixelated;border:1px solid var(--line);flex:none;align-self:flex-start}
.noimg{width:128px;height:128px;flex:none;display:flex;align-items:center;justify-content:center;text-align:center;background:#f0f4f8;color:#9aa5b1;font-size:11px;padding:6px;word-break:break-all}
.ex-body{font-size:13px;min-width:0}
.ex-body div{margin-bottom:3px;white-space:pre-wrap;overflow-wrap:anywhere}
.ex-body b{color:var(--muted);font-weight:bold;margin-right:4px}
.ex-body div.ex-head{white-space:normal;font-size:12px}
.ex-head span{white-space:nowrap}
.badge{font-weight:bold}
.badge.ok{color:var(--ok)}
.badge.bad{color:var(--bad)}
.group{color:var(--muted);margin-left:6px}
footer{margin-top:36px;color:var(--muted);font-size:12px}
)css";

}  // namespace report_detail
}  // namespace mmb
