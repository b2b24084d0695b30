// The evaluation runner: data loading, batched answering, the suite, the headline table.
// The tasks themselves are in eval_tasks.cpp.
#include "mmb/eval.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>

#include "eval_internal.h"
#include "mmb/error.h"
#include "mmb/jsonl.h"
#include "mmb/metrics.h"
#include "mmb/progress.h"

namespace mmb {
namespace eval_detail {

namespace fs = std::filesystem;

EvalContext::EvalContext(Vlm& v, const std::string& dir, const EvalOptions& options)
    : vlm(v), opt(options), world_dir(dir) {
  // Stated confidence after a step ("…, but I'm not sure.") carries no claim: the verifier strips it.
  for (const auto& [phrase, p] : verbal_confidence_phrases()) {
    (void)p;
    verifier.add_hedge(phrase);
  }
}

int64_t EvalContext::limit(int64_t task_default) const {
  if (opt.limit > 0) return opt.limit;
  if (opt.limit < 0 || task_default < 0) return std::numeric_limits<int64_t>::max();
  return task_default;
}

const Image& EvalContext::image(const std::string& path) {
  auto it = images_.find(path);
  if (it != images_.end()) return it->second;
  if (!fs::exists(path)) fail("run_eval: image not found: ", path);
  return images_.emplace(path, read_image(path, 3)).first->second;
}

const world::Scene& EvalContext::scene_of(const std::string& image_rel) {
  if (scenes_.empty()) {
    scenes_ = world::read_scenes(world_dir + "/scenes.jsonl");
    for (size_t i = 0; i < scenes_.size(); ++i) scene_index_[scenes_[i].id] = i;
  }
  const std::string id = fs::path(image_rel).stem().string();
  auto it = scene_index_.find(id);
  if (it == scene_index_.end())
    fail("run_eval: no scene '", id, "' (from image ", image_rel, ") in ", world_dir, "/scenes.jsonl (",
         scenes_.size(), " scenes)");
  return scenes_[it->second];
}

std::string EvalContext::split_file(const std::string& name) const {
  return world_dir + "/" + opt.split + "/" + name;
}

std::vector<Json> EvalContext::read_split_jsonl(const std::string& name, int64_t limit) const {
  const std::string path = split_file(name);
  if (!fs::exists(path)) fail("run_eval: ", path, " not found (is ", world_dir, " a world directory?)");
  JsonlReader reader(path);
  std::vector<Json> out;
  Json j;
  while (int64_t(out.size()) < limit && reader.next(j)) {
    if (!j.is_object()) fail("run_eval: ", reader.where(), ": expected a JSON object");
    j["_where"] = reader.where();
    out.push_back(std::move(j));
  }
  return out;
}

std::vector<Answered> EvalContext::answer_all(const std::string& label, const std::vector<std::string>& prompts,
                                              const std::vector<const Image*>& images, int64_t max_new_tokens,
                                              bool with_yes_no) {
  torch::NoGradGuard ng;
  if (with_yes_no && !yes_no_ready_) {
    yes_no_ = yes_no_tokens(vlm.tokenizer());
    yes_no_ready_ = true;
  }
  std::vector<Answered> out;
  out.reserve(prompts.size());
  const int64_t B = std::max<int64_t>(1, opt.batch_size);
  std::unique_ptr<Progress> bar;
  if (opt.progress) bar = std::make_unique<Progress>(label, int64_t(prompts.size()), "questions");
  for (size_t start = 0; start < prompts.size(); start += size_t(B)) {
    const size_t end = std::min(prompts.size(), start + size_t(B));
    std::vector<std::string> p(prompts.begin() + long(start), prompts.begin() + long(end));
    std::vector<const Image*> im(images.begin() + long(start), images.begin() + long(end));
    auto in = vlm.encode_prompts(p, im);
    auto state = prefill(vlm.model(), in, max_new_tokens + 1);
    std::vector<double> p_yes, p_yes_raw;
    if (with_yes_no) {
      p_yes_raw = yes_probability(state.last_logits, yes_no_);
      p_yes = opt.temperatures.yes_no == 1.0 ? p_yes_raw
                                             : yes_probability(state.last_logits, yes_no_, opt.temperatures.yes_no);
    }
    SampleOptions s;
    s.stop = vlm.default_stop(max_new_tokens);
    auto gens = generate(vlm.model(), state, s);
    for (size_t b = 0; b < gens.size(); ++b) {
      Answered a;
      a.text = vlm.decode(gens[b].tokens);
      const auto first = a.text.find_first_not_of(" \n\t");
      a.text = first == std::string::npos ? "" : a.text.substr(first);
      while (!a.text.empty() && (a.text.back() == ' ' || a.text.back() == '\n')) a.text.pop_back();
      a.gen = std::move(gens[b]);
      if (with_yes_no) a.p_yes = p_yes[b], a.p_yes_raw = p_yes_raw[b];
      out.push_back(std::move(a));
    }
    if (bar) bar->set(int64_t(end));
  }
  if (bar) bar->done();
  return out;
}

Json maybe_calibration(const std::vector<double>& confidence, const std::vector<bool>& correct, int num_bins) {
  if (confidence.empty()) return nullptr;
  CalibrationOptions o;
  o.num_bins = num_bins;
  return calibration_summary(confidence, correct, o);
}

std::vector<PopeItem> read_pope_file(const std::string& path, const std::string& image_dir, int64_t limit) {
  if (!fs::exists(path)) fail("run_eval: POPE file not found: ", path);
  const std::string stem = fs::path(path).stem().string();
  JsonlReader reader(path);
  std::vector<PopeItem> items;
  Json j;
  std::vector<std::string> missing;
  while (int64_t(items.size()) < limit && reader.next(j)) {
    const std::string where = reader.where();
    if (!j.is_object()) fail("run_eval: ", where, ": expected a JSON object");
    PopeItem it;
    if (!j.contains("question_id")) fail("run_eval: ", where, ": missing key 'question_id'");
    it.question_id = j["question_id"];
    it.image = json_get<std::string>(j, "image", where);
    it.text = json_get<std::string>(j, "text", where);
    if (!j.contains("label")) fail("run_eval: ", where, ": missing key 'label'");
    std::string label = j["label"].is_string() ? j["label"].get<std::string>() : j["label"].dump();
    std::string low;
    for (char c : label)
      if (c != ' ') low += char(std::tolower(static_cast<unsigned char>(c)));
    if (low != "yes" && low != "no")
      fail("run_eval: ", where, ": label '", label, "' is not yes or no");
    it.label = low == "yes";
    it.category = j.contains("category") && j["category"].is_string() ? j["category"].get<std::string>() : stem;
    it.image_path = image_dir.empty() ? it.image : image_dir + "/" + it.image;
    if (!fs::exists(it.image_path)) missing.push_back(where + ": " + it.image_path);
    items.push_back(std::move(it));
  }
  if (!missing.empty()) {
    std::ostringstream os;
    os << "run_eval: " << missing.size() << " image(s) of " << path << " not found, first: " << missing.front();
    fail(os.str());
  }
  if (items.empty()) fail("run_eval: ", path, ": no questions");
  return items;
}

}  // namespace eval_detail

using namespace eval_detail;

Image blank_image(int width, int height) {
  Image im(width, height, 3);
  std::fill(im.pixels.begin(), im.pixels.end(), uint8_t(128));
  return im;
}

Json run_eval(Vlm& vlm, const std::string& world_dir, const EvalOptions& options) {
  static const std::set<std::string> kTasks = {"pope", "chair", "mc", "idk", "reasoning"};
  for (const auto& t : options.suite)
    if (!kTasks.count(t)) fail("run_eval: unknown task '", t, "' (expected pope, chair, mc, idk, reasoning)");
  if (!options.suite.empty() && world_dir.empty()) fail("run_eval: a world directory is needed for the suite");
  if (!options.pope_files.empty() && options.pope_images.empty())
    fail("run_eval: POPE files need an image folder (pope_images)");
  if (options.batch_size < 1) fail("run_eval: batch_size must be >= 1, got ", options.batch_size);
  if (options.short_tokens < 1 || options.description_tokens < 1 || options.reasoning_tokens < 1)
    fail("run_eval: short_tokens, description_tokens and reasoning_tokens must be >= 1");
  if (options.mc_style != "calibration-study" && options.mc_style != "world")
    fail("run_eval: mc_style must be calibration-study or world, got '", options.mc_style, "'");
  vlm.model()->eval();
  EvalContext ctx(vlm, world_dir, options);
  Json results;
  results["split"] = options.split;
  results["suite"] = options.suite;
  results["definition"] = calibration_definition(options.num_bins);
  results["temperatures"] = {{"mc", options.temperatures.mc}, {"yes_no", options.temperatures.yes_no}};
  results["limits"] = {{"pope_per_category", ctx.limit(options.pope_limit)}, {"chair", ctx.limit(options.chair_limit)},
                       {"mc", ctx.limit(options.mc_limit)}, {"idk_per_variant", ctx.limit(options.idk_limit)},
                       {"modality_per_condition", ctx.limit(options.modality_limit)},
                       {"reasoning", ctx.limit(options.reasoning_limit)}};
  for (auto& [k, v] : results["limits"].items())
    if (v.get<int64_t>() == std::numeric_limits<int64_t>::max()) v = "all";
  results["seconds"] = Json::object();
  const auto t_all = std::chrono::steady_clock::now();
  auto timed = [&](const std::string& name, auto&& fn) {
    const auto t0 = std::chrono::steady_clock::now();
    results[name] = fn();
    results["seconds"][name] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  for (const auto& task : options.suite) {
    if (task == "pope") timed("pope", [&] { return eval_pope(ctx); });
    if (task == "chair") timed("chair", [&] { return eval_chair(ctx); });
    if (task == "mc") timed("mc", [&] { return eval_mc(ctx); });
    if (task == "idk") timed("idk", [&] { return eval_idk(ctx); });
    if (task == "reasoning") timed("reasoning", [&] { return eval_reasoning(ctx); });
  }
  if (!options.pope_files.empty()) {
    timed("pope_files", [&] {
      Json files = Json::object();
      const int64_t lim = options.limit > 0 ? options.limit : std::numeric_limits<int64_t>::max();
      for (const auto& f : options.pope_files) {
        auto items = read_pope_file(f, options.pope_images, lim);
        files[fs::path(f).filename().string()] = eval_pope_items(ctx, items, "pope_file");
      }
      return files;
    });
  }
  results["seconds"]["total"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_all).count();
  if (options.keep_samples) results["samples"] = std::move(ctx.samples);
  return results;
}

// ---- headline ------------------------------------------------------------------------------------

namespace {

std::string fmt(const Json& j, const char* key, int digits = 3) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, j[key].get<double>());
  return buf;
}

Json at(const Json& j, std::initializer_list<const char*> path) {
  const Json* p = &j;
  for (const char* k : path) {
    if (!p->is_object() || !p->contains(k)) return nullptr;
    p = &(*p)[k];
  }
  return *p;
}

void pope_rows(std::ostringstream& os, const std::string& prefix, const Json& pope) {
  // The world's categories in POPE's order, then any others (official files), then "all".
  std::vector<std::string> order;
  for (const char* c : {"random", "popular", "adversarial"})
    if (pope.contains(c)) order.push_back(c);
  for (auto& [cat, m] : pope.items())
    if (std::find(order.begin(), order.end(), cat) == order.end() && cat != "all") order.push_back(cat);
  if (pope.contains("all")) order.push_back("all");
  for (const auto& cat : order) {
    const Json& m = pope[cat];
    if (!m.is_object() || !m.contains("f1")) continue;
    os << "  " << prefix << cat << std::string(std::max<int>(1, 22 - int(prefix.size() + cat.size())), ' ')
       << "acc " << fmt(m, "accuracy") << "  prec " << fmt(m, "precision") << "  rec " << fmt(m, "recall")
       << "  F1 " << fmt(m, "f1") << "  yes " << fmt(m, "yes_ratio") << "  ECE " << fmt(m["calibration"], "ece")
       << "  AUROC(p_yes) " << fmt(m, "yes_prob_auroc") << "  n " << m.value("n", 0) << "\n";
  }
}

}  // namespace

std::string format_eval_headline(const Json& r) {
  std::ostringstream os;
  os << "split " << r.value("split", std::string("?")) << " | " << r.value("definition", std::string()) << "\n";
  if (r.contains("pope")) pope_rows(os, "pope/", r["pope"]);
  if (r.contains("pope_files"))
    for (auto& [file, cats] : r["pope_files"].items()) pope_rows(os, file + "/", cats);
  if (r.contains("chair")) {
    const auto& c = r["chair"];
    os << "  chair                 CHAIR_s " << fmt(c, "chair_s") << "  CHAIR_i " << fmt(c, "chair_i")
       << "  sentences " << c.value("sentences", 0) << " (unverifiable " << c.value("unverifiable_sentences", 0)
       << ")  captions " << c.value("captions", 0) << "\n";
  }
  if (r.contains("mc")) {
    const auto& m = r["mc"];
    const Json cal = at(m, {"calibration"});
    os << "  mc (" << m.value("style", std::string()) << ")"
       << std::string(std::max<int>(1, 17 - int(m.value("style", std::string()).size())), ' ') << "acc "
       << fmt(m, "accuracy") << "  ECE " << fmt(cal, "ece") << "  MCE " << fmt(cal, "mce") << "  Brier "
       << fmt(cal, "brier") << "  AUROC " << fmt(cal, "auroc") << "  no letter " << m.value("no_letter", 0) << "/"
       << m.value("n", 0) << "\n";
  }
  if (r.contains("idk")) {
    for (const char* v : {"plain", "hint"}) {
      const Json m = at(r["idk"], {v});
      if (m.is_null()) continue;
      os << "  idk/" << v << std::string(18 - std::string(v).size(), ' ') << "acc(answerable) "
         << fmt(m, "accuracy_answerable") << "  IDK recall " << fmt(m, "idk_recall") << "  false IDK "
         << fmt(m, "false_idk_rate") << "\n";
    }
    const Json mod = at(r["idk"], {"modality"});
    if (mod.is_object())
      for (const char* c : {"image", "blank", "none"}) {
        const Json m = at(mod, {c});
        if (m.is_null()) continue;
        os << "  modality/" << c << std::string(13 - std::string(c).size(), ' ') << "entropy "
           << fmt(m, "mean_entropy") << "  first-token entropy " << fmt(m, "first_token_entropy") << "  confidence "
           << fmt(m, "mean_confidence") << "  acc " << fmt(m, "accuracy") << "\n";
      }
  }
  if (r.contains("reasoning")) {
    const auto& m = r["reasoning"];
    os << "  reasoning             step acc " << fmt(m, "step_accuracy") << "  verifiable step acc "
       << fmt(m, "verifiable_step_accuracy") << "  answer acc " << fmt(m, "answer_accuracy") << "  unverifiable "
       << m.value("unverifiable_steps", 0) << "/" << m.value("steps", 0) << "  step F1 "
       << fmt(at(m, {"step_f1"}), "f1") << "\n";
    const Json st = at(m, {"stated"});
    if (st.is_object() && st.value("steps_stating", 0) > 0)
      os << "  reasoning/stated      MECE " << fmt(st, "mece") << "  coverage " << fmt(st, "coverage")
         << "  step AUROC " << fmt(at(st, {"steps_calibration"}), "auroc") << "  answer ECE "
         << fmt(at(st, {"answer_calibration"}), "ece") << "\n";
  }
  if (r.contains("seconds")) os << "  seconds               " << fmt(r["seconds"], "total", 1) << "\n";
  return os.str();
}

}  // namespace mmb
