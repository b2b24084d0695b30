// MMBoundary on a world: answers with step signals and truth, signal AUROCs, the SFT warm-up data
// (include/mmb/boundary.h).
#include "mmb/boundary.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <random>

#include "mmb/error.h"
#include "mmb/jsonl.h"
#include "mmb/metrics.h"
#include "mmb/progress.h"
#include "mmb/vlm.h"
#include "mmb/world.h"

namespace mmb {

std::vector<BoundaryQuestion> read_boundary_questions(const std::string& world_dir, const std::string& split,
                                                      const std::vector<std::string>& tasks, int64_t limit) {
  const std::string dir = world_dir + "/" + split;
  std::vector<BoundaryQuestion> out;
  for (const auto& task : tasks) {
    int64_t n = 0;
    auto full = [&] { return limit >= 0 && n >= limit; };
    if (task == "reasoning") {
      const std::string path = dir + "/reasoning.jsonl";
      JsonlReader reader(path);
      Json j;
      while (!full() && reader.next(j)) {
        const std::string where = path + ":" + std::to_string(reader.line_number());
        int64_t ref = j.contains("final") ? 1 : 0;
        for (const char* key : {"perception", "reasoning"})
          if (j.contains(key) && j[key].is_array()) ref += int64_t(j[key].size());
        out.push_back({json_get<std::string>(j, "question_id", where), task, json_get<std::string>(j, "question", where),
                       json_get<std::string>(j, "image", where), json_get<std::string>(j, "answer", where), ref});
        ++n;
      }
    } else if (task == "description") {
      const std::string path = dir + "/llava.json";
      const Json records = read_json_file(path);
      if (!records.is_array()) fail("read_boundary_questions: ", path, ": expected a JSON array");
      for (size_t i = 0; i < records.size() && !full(); ++i) {
        const Json& r = records[i];
        if (r.value("task", std::string()) != "description") continue;
        const std::string where = path + " record " + std::to_string(i);
        const Json conv = json_get<Json>(r, "conversations", where);
        if (!conv.is_array() || conv.empty()) fail("read_boundary_questions: ", where, ": no conversation");
        std::string q = json_get<std::string>(conv[0], "value", where);
        for (const std::string m : {"<image>\n", "<image>"})
          if (auto k = q.find(m); k != std::string::npos) q.erase(k, m.size());
        out.push_back({json_get<std::string>(r, "id", where), task, q, json_get<std::string>(r, "image", where), "", 0});
        ++n;
      }
    } else {
      fail("read_boundary_questions: unknown task \"", task, "\" (expected reasoning or description)");
    }
    if (n == 0) fail("read_boundary_questions: no ", task, " questions in ", dir);
  }
  return out;
}

BoundaryJudge::BoundaryJudge(const std::string& world_dir) : scenes_(world::read_scenes(world_dir + "/scenes.jsonl")) {
  for (const auto& s : scenes_) scene_of_["images/" + s.id + ".png"] = &s;
  for (const auto& p : ConfidencePhrases::builtin().table()) verifier_.add_hedge(p.first);
}

world::Truth BoundaryJudge::step_truth(const std::string& image, const std::string& step,
                                       const std::string& canonical) const {
  auto it = scene_of_.find(image);
  if (it == scene_of_.end()) fail("BoundaryJudge: no scene for image ", image);
  try {
    return verifier_.verify(*it->second, step, canonical).truth;
  } catch (const Error&) {
    return world::Truth::kUnverifiable;  // an empty sentence
  }
}

std::vector<BoundaryAnswer> collect_boundary_answers(const BoundaryAnswerOptions& o) {
  if (o.batch_size < 1) fail("collect_boundary_answers: batch_size must be >= 1, got ", o.batch_size);
  const auto questions = read_boundary_questions(o.world_dir, o.split, o.tasks, o.limit);
  Vlm vlm = Vlm::load(o.model_dir);
  ClipScorer clip = ClipScorer::load(o.clip_dir);
  const BoundaryJudge judge(o.world_dir);

  std::vector<BoundaryAnswer> out;
  std::unique_ptr<Progress> bar;
  if (o.progress) bar = std::make_unique<Progress>("boundary", int64_t(questions.size()), "answers");
  for (size_t b = 0; b < questions.size(); b += size_t(o.batch_size)) {
    const size_t e = std::min(questions.size(), b + size_t(o.batch_size));
    std::vector<Image> images;
    std::vector<std::string> prompts;
    for (size_t i = b; i < e; ++i) {
      images.push_back(read_image(o.world_dir + "/" + questions[i].image));
      prompts.push_back(o.prompt_suffix.empty() ? questions[i].question
                                                : questions[i].question + " " + o.prompt_suffix);
    }
    std::vector<const Image*> image_ptrs;
    for (const auto& im : images) image_ptrs.push_back(&im);
    SampleOptions sample;
    sample.stop = vlm.default_stop(o.max_new_tokens);
    auto answers = vlm.answer(prompts, image_ptrs, sample);
    for (size_t i = b; i < e; ++i) {
      const BoundaryQuestion& q = questions[i];
      const auto& a = answers[i - b];
      BoundaryAnswer r{q.id, q.task, q.question, q.image, q.canonical, a.text, false, {}};
      auto pixels = image_to_pixel_values(images[i - b], clip.image_size()).unsqueeze(0);
      const auto sig = response_signals(vlm.tokenizer(), clip, pixels, a.generation.tokens,
                                        a.generation.logprobs, a.generation.entropies);
      for (size_t s = 0; s < sig.steps.size(); ++s) {
        r.steps.push_back({sig.steps[s].text, judge.step_truth(q.image, sig.steps[s].text, q.canonical),
                           sig.signals[s]});
      }
      if (!q.canonical.empty())
        r.answer_correct = judge.verifier().check_answer(a.text, q.canonical).truth == world::Truth::kTrue;
      out.push_back(std::move(r));
    }
    if (bar) bar->tick(int64_t(e - b));
  }
  if (bar) bar->done();
  return out;
}

void write_boundary_steps(const std::string& path, const std::vector<BoundaryAnswer>& answers,
                          const ConfidenceEstimator* estimator) {
  JsonlWriter w(path);
  for (const auto& a : answers)
    for (size_t s = 0; s < a.steps.size(); ++s) {
      const auto& st = a.steps[s];
      Json j = {{"id", a.id},          {"task", a.task},
                {"step", s},           {"text", st.text},
                {"truth", world::truth_name(st.truth)}, {"correct", st.correct()}};
      for (int i = 0; i < kNumSignals; ++i) j[signal_name(i)] = st.signals[size_t(i)];
      if (estimator) {
        const double f = estimator->fuse(st.signals);
        j["fused"] = f;
        j["level"] = estimator->level(f);
      }
      w.write(j);
    }
  w.close();
}

StepTable read_boundary_steps(const std::string& path) {
  StepTable t;
  JsonlReader reader(path);
  Json j;
  while (reader.next(j)) {
    const std::string where = path + ":" + std::to_string(reader.line_number());
    StepSignals s{};
    for (int i = 0; i < kNumSignals; ++i) {
      s[size_t(i)] = json_get<double>(j, signal_name(i), where);
      if (!std::isfinite(s[size_t(i)])) fail(where, ": \"", signal_name(i), "\" is not finite");
    }
    t.signals.push_back(s);
    t.correct.push_back(json_get<bool>(j, "correct", where));
    t.task.push_back(json_get<std::string>(j, "task", where));
  }
  if (t.signals.empty()) fail("read_boundary_steps: ", path, ": no steps");
  return t;
}

Json signal_report(const StepTable& t, const ConfidenceEstimator* estimator) {
  auto report = [&](const std::vector<size_t>& idx) {
    std::vector<bool> label;
    for (size_t i : idx) label.push_back(t.correct[i]);
    Json auc = Json::object();
    for (int s = 0; s < kNumSignals; ++s) {
      std::vector<double> score;
      for (size_t i : idx) score.push_back(is_uncertainty(s) ? -t.signals[i][size_t(s)] : t.signals[i][size_t(s)]);
      const double a = auroc(score, label);
      auc[signal_name(s)] = a == a ? Json(a) : Json(nullptr);
    }
    Json level_ece = nullptr;
    if (estimator) {
      std::vector<double> score, stated;
      for (size_t i : idx) {
        score.push_back(estimator->fuse(t.signals[i]));
        stated.push_back(ConfidencePhrases::builtin().at(estimator->level(score.back())).confidence);
      }
      const double a = auroc(score, label);
      auc["fused"] = a == a ? Json(a) : Json(nullptr);
      if (!idx.empty()) level_ece = expected_calibration_error(stated, label);
    }
    int64_t right = 0;
    for (bool c : label) right += c;
    Json out{{"steps", idx.size()}, {"accuracy", idx.empty() ? 0.0 : double(right) / double(idx.size())},
             {"auroc", auc}};
    // The MECE a model would reach stating exactly its internal level's probability.
    if (estimator) out["level_ece"] = level_ece;
    return out;
  };
  std::vector<size_t> all;
  std::map<std::string, std::vector<size_t>> by_task;
  for (size_t i = 0; i < t.signals.size(); ++i) {
    all.push_back(i);
    by_task[t.task[i]].push_back(i);
  }
  Json out = report(all);
  out["by_task"] = Json::object();
  for (const auto& [task, idx] : by_task) out["by_task"][task] = report(idx);
  return out;
}

Json boundary_sft_records(const std::vector<BoundaryAnswer>& answers, const ConfidenceEstimator& estimator,
                          const ConfidencePhrases& phrases, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Json out = Json::array();
  for (const auto& a : answers) {
    if (a.steps.empty()) continue;
    std::string response;
    for (const auto& s : a.steps) {
      const int level = estimator.level(estimator.fuse(s.signals));
      if (!response.empty()) response += " ";
      response += attach_phrase(s.text, phrases.sample(level, rng));
    }
    out.push_back({{"id", a.id + "_boundary"},
                   {"image", a.image},
                   {"task", "boundary"},
                   {"conversations",
                    Json::array({{{"from", "human"}, {"value", "<image>\n" + a.question}},
                                 {{"from", "gpt"}, {"value", response}}})}});
  }
  return out;
}

BoundaryReward boundary_reward(const std::vector<StepOutcome>& steps, const BoundaryRewardOptions& o, bool abstained,
                               bool abstaining_is_right, int64_t reference_steps) {
  if (o.ec_form != "absolute" && o.ec_form != "brier")
    fail("boundary_reward: unknown ec_form \"", o.ec_form, "\" (expected absolute or brier)");
  if (o.ka_form != "reference" && o.ka_form != "steps")
    fail("boundary_reward: unknown ka_form \"", o.ka_form, "\" (expected reference or steps)");
  BoundaryReward r;
  if (!steps.empty()) {
    double ka = 0, ec = 0, cs = 0;
    for (const auto& s : steps) {
      const double a = s.correct ? 1.0 : 0.0;
      ka += a;
      if (s.stated < 0) {
        ec += 1;
        cs += 1;
        continue;
      }
      const double gap = std::fabs(s.stated - a);
      ec += o.ec_form == "brier" ? gap * gap : gap;
      cs += std::fabs(s.stated - s.internal);
    }
    const double n = double(steps.size());
    r.knowledge = ka / (o.ka_form == "reference" ? std::max(n, double(reference_steps)) : n);
    r.calibration = 1 - ec / n;
    r.self = 1 - cs / n;
  }
  if (abstained) r.idk = abstaining_is_right ? 1.0 : -1.0;
  r.total = o.alpha * r.knowledge + o.beta * r.calibration + o.gamma * r.self + o.delta * r.idk;
  return r;
}

}  // namespace mmb
