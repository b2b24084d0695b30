// Prediction files for `mmb metrics --in`: any framework's outputs, one JSON object a line,
// measured with mmb's definitions (docs/metrics.md, docs/formats.md).
#include <cmath>
#include <map>

#include "mmb/error.h"
#include "mmb/jsonl.h"
#include "mmb/metrics.h"

namespace mmb {
namespace {

// A label / group / prediction value as text; throws on objects and arrays.
std::string scalar_text(const Json& v, const std::string& key, const std::string& where) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) return v.dump();
  fail("read_prediction_records: ", where, ": key '", key, "' must be a string, number or boolean, found ",
       v.type_name());
}

}  // namespace

std::vector<PredictionRecord> read_prediction_records(const std::string& path) {
  JsonlReader reader(path);
  std::vector<PredictionRecord> out;
  Json j;
  while (true) {
    try {
      if (!reader.next(j)) break;
    } catch (const Error& e) {
      fail("read_prediction_records: ", e.what());
    }
    const std::string where = reader.where();
    if (!j.is_object()) fail("read_prediction_records: ", where, ": expected a JSON object, found ", j.type_name());
    PredictionRecord r;
    auto c = j.find("confidence");
    if (c == j.end()) fail("read_prediction_records: ", where, ": missing key 'confidence'");
    if (!c->is_number() || c->is_boolean())
      fail("read_prediction_records: ", where, ": 'confidence' must be a number, found ", c->type_name());
    r.confidence = c->get<double>();
    if (!std::isfinite(r.confidence) || r.confidence < 0 || r.confidence > 1)
      fail("read_prediction_records: ", where, ": 'confidence' is ", r.confidence, ", expected a value in [0, 1]");
    auto k = j.find("correct");
    if (k == j.end()) fail("read_prediction_records: ", where, ": missing key 'correct'");
    if (k->is_boolean()) {
      r.correct = k->get<bool>();
    } else if (k->is_number_integer() && (k->get<int64_t>() == 0 || k->get<int64_t>() == 1)) {
      r.correct = k->get<int64_t>() == 1;
    } else {
      fail("read_prediction_records: ", where, ": 'correct' must be true/false or 0/1, found ", k->dump());
    }
    if (auto it = j.find("label"); it != j.end() && !it->is_null()) r.label = scalar_text(*it, "label", where);
    if (auto it = j.find("group"); it != j.end() && !it->is_null()) r.group = scalar_text(*it, "group", where);
    if (auto it = j.find("prediction"); it != j.end() && !it->is_null())
      r.prediction = scalar_text(*it, "prediction", where);
    out.push_back(std::move(r));
  }
  if (out.empty()) fail("read_prediction_records: ", path, ": no predictions (the file has no records)");
  return out;
}

Json prediction_metrics(const std::vector<PredictionRecord>& records, const CalibrationOptions& options) {
  if (records.empty()) fail("prediction_metrics: empty input (no predictions)");
  auto summarize = [&](const std::vector<const PredictionRecord*>& rs) {
    std::vector<double> conf;
    std::vector<bool> correct;
    for (const auto* r : rs) {
      conf.push_back(r->confidence);
      correct.push_back(r->correct);
    }
    return calibration_summary(conf, correct, options);
  };
  std::vector<const PredictionRecord*> all;
  std::map<std::string, std::vector<const PredictionRecord*>> groups, labels;
  bool pope_ok = true;
  for (const auto& r : records) {
    all.push_back(&r);
    if (!r.group.empty()) groups[r.group].push_back(&r);
    if (!r.label.empty()) labels[r.label].push_back(&r);
    pope_ok &= (r.label == "yes" || r.label == "no") && !r.prediction.empty();
  }
  Json out;
  out["all"] = summarize(all);
  if (!groups.empty()) {
    out["groups"] = Json::object();
    for (const auto& [g, rs] : groups) out["groups"][g] = summarize(rs);
    out["records_without_group"] = int64_t(records.size()) - [&] {
      int64_t n = 0;
      for (const auto& [g, rs] : groups) n += int64_t(rs.size());
      return n;
    }();
  }
  if (!labels.empty()) {
    out["labels"] = Json::object();
    for (const auto& [l, rs] : labels) out["labels"][l] = summarize(rs);
  }
  if (pope_ok) {
    auto pope = [](const std::vector<const PredictionRecord*>& rs) {
      std::vector<int> pred;
      std::vector<bool> label;
      for (const auto* r : rs) {
        pred.push_back(parse_yes_no(r->prediction));
        label.push_back(r->label == "yes");
      }
      return pope_metrics(pred, label).to_json();
    };
    out["pope"] = {{"all", pope(all)}};
    for (const auto& [g, rs] : groups) out["pope"][g] = pope(rs);
  }
  return out;
}

}  // namespace mmb
