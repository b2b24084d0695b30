// The tasks of the evaluation suite: POPE, CHAIR, multiple choice (the calibration study's letter method),
// "I don't know" with prompt variants and text-vs-image uncertainty, reasoning step accuracy.
// Truth comes from the world's verifier; nothing a verifier cannot judge is dropped: it is
// counted as "unverifiable" (as the papers score vague text: it earns nothing).
#include <algorithm>
#include <cmath>
#include <map>

#include "eval_internal.h"
#include "mmb/error.h"
#include "mmb/metrics.h"
#include "mmb/progress.h"
#include "mmb/sentences.h"

namespace mmb::eval_detail {
namespace {

std::vector<const Image*> images_of(EvalContext& ctx, const std::vector<std::string>& paths) {
  std::vector<const Image*> out;
  for (const auto& p : paths) out.push_back(&ctx.image(p));
  return out;
}

// Verifies every sentence of `text`; a sentence the verifier rejects as empty is unverifiable.
std::vector<world::Verdict> verify_sentences(EvalContext& ctx, const world::Scene& scene, const std::string& text,
                                             const std::string& expected = {}) {
  std::vector<world::Verdict> out;
  for (const auto& s : split_sentences(text)) {
    try {
      out.push_back(ctx.verifier.verify(scene, s, expected));
    } catch (const Error&) {
      out.push_back(world::Verdict{});  // unverifiable, kind none
    }
  }
  return out;
}

}  // namespace

// ---- POPE ----------------------------------------------------------------------------------------

Json eval_pope_items(EvalContext& ctx, const std::vector<PopeItem>& items, const std::string& task) {
  std::vector<std::string> prompts, paths;
  for (const auto& it : items) {
    prompts.push_back(it.text);
    paths.push_back(it.image_path);
  }
  auto answers = ctx.answer_all(task, prompts, images_of(ctx, paths), ctx.opt.short_tokens, /*with_yes_no=*/true);
  std::map<std::string, std::vector<size_t>> by_cat;
  std::vector<size_t> all;
  for (size_t i = 0; i < items.size(); ++i) {
    by_cat[items[i].category].push_back(i);
    all.push_back(i);
  }
  auto measure = [&](const std::vector<size_t>& idx) {
    std::vector<int> pred;
    std::vector<bool> label, correct, prob_correct;
    std::vector<double> conf, conf_raw, p_yes;
    // Confidence of the generated answer from the yes/no probability; unparsed: the larger side.
    auto answer_conf = [](int p, double py) { return p == 1 ? py : p == 0 ? 1 - py : std::max(py, 1 - py); };
    for (size_t i : idx) {
      const int p = parse_yes_no(answers[i].text);
      const double py = answers[i].p_yes;
      pred.push_back(p);
      label.push_back(items[i].label);
      p_yes.push_back(py);
      conf.push_back(answer_conf(p, py));
      conf_raw.push_back(answer_conf(p, answers[i].p_yes_raw));
      correct.push_back((p == 1 && items[i].label) || (p == 0 && !items[i].label));
      prob_correct.push_back((py >= 0.5) == items[i].label);
    }
    Json m = pope_metrics(pred, label).to_json();
    m["yes_prob_auroc"] = num(auroc(p_yes, label));
    m["prob_accuracy"] = accuracy(prob_correct);
    double mean_py = 0;
    for (double v : p_yes) mean_py += v;
    m["mean_p_yes"] = mean_py / double(p_yes.size());
    m["calibration"] = maybe_calibration(conf, correct, ctx.opt.num_bins);
    if (ctx.opt.temperatures.yes_no != 1.0) {
      m["temperature"] = ctx.opt.temperatures.yes_no;
      m["calibration_uncalibrated"] = maybe_calibration(conf_raw, correct, ctx.opt.num_bins);
    }
    return m;
  };
  Json out = Json::object();
  double f1 = 0, acc = 0;
  for (const auto& [cat, idx] : by_cat) {
    out[cat] = measure(idx);
    f1 += out[cat]["f1"].get<double>();
    acc += out[cat]["accuracy"].get<double>();
  }
  out["all"] = measure(all);
  out["mean_f1"] = f1 / double(by_cat.size());
  out["mean_accuracy"] = acc / double(by_cat.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const int p = parse_yes_no(answers[i].text);
    const double py = answers[i].p_yes;
    ctx.add_sample({{"task", task},
                    {"group", task + "/" + items[i].category},
                    {"question_id", items[i].question_id},
                    {"image", items[i].image},
                    {"question", items[i].text},
                    {"answer", answers[i].text},
                    {"label", items[i].label ? "yes" : "no"},
                    {"prediction", p == 1   ? "yes"
                                   : p == 0 ? "no"
                                            : "unparsed"},
                    {"p_yes", py},
                    {"confidence", p == 1   ? py
                                   : p == 0 ? 1 - py
                                            : std::max(py, 1 - py)},
                    {"correct", (p == 1 && items[i].label) || (p == 0 && !items[i].label)}});
  }
  return out;
}

std::vector<PopeItem> world_pope_items(EvalContext& ctx, int64_t lim) {
  auto records = ctx.read_split_jsonl("pope.jsonl", std::numeric_limits<int64_t>::max());
  std::map<std::string, int64_t> taken;
  std::vector<PopeItem> items;
  for (const auto& j : records) {
    const std::string where = j["_where"].get<std::string>();
    PopeItem it;
    it.category = json_get<std::string>(j, "category", where);
    if (taken[it.category] >= lim) continue;
    it.question_id = j.value("question_id", Json(nullptr));
    it.image = json_get<std::string>(j, "image", where);
    it.image_path = ctx.world_dir + "/" + it.image;
    it.text = json_get<std::string>(j, "text", where);
    const auto label = json_get<std::string>(j, "label", where);
    if (label != "yes" && label != "no") fail("run_eval: ", where, ": label '", label, "' is not yes or no");
    it.label = label == "yes";
    taken[it.category]++;
    items.push_back(std::move(it));
  }
  if (items.empty()) fail("run_eval: ", ctx.split_file("pope.jsonl"), ": no questions");
  return items;
}

Json eval_pope(EvalContext& ctx) {
  return eval_pope_items(ctx, world_pope_items(ctx, ctx.limit(ctx.opt.pope_limit)), "pope");
}

// ---- CHAIR ---------------------------------------------------------------------------------------

Json eval_chair(EvalContext& ctx) {
  const int64_t lim = ctx.limit(ctx.opt.chair_limit);
  const std::string path = ctx.split_file("llava.json");
  Json records = read_json_file(path);
  if (!records.is_array()) fail("run_eval: ", path, ": expected a JSON array");
  std::vector<std::string> prompts, paths, images;
  for (size_t i = 0; i < records.size() && int64_t(prompts.size()) < lim; ++i) {
    const auto& r = records[i];
    const std::string where = path + " record " + std::to_string(i);
    if (r.value("task", std::string()) != "description") continue;
    const auto conv = json_get<Json>(r, "conversations", where);
    if (!conv.is_array() || conv.empty()) fail("run_eval: ", where, ": empty conversations");
    std::string q = json_get<std::string>(conv[0], "value", where);
    if (auto p = q.find("<image>"); p != std::string::npos) q.erase(p, 7);
    q.erase(0, q.find_first_not_of("\n "));
    prompts.push_back(q);
    images.push_back(json_get<std::string>(r, "image", where));
    paths.push_back(ctx.world_dir + "/" + images.back());
  }
  if (prompts.empty()) fail("run_eval: ", path, ": no description records");
  auto answers = ctx.answer_all("chair", prompts, images_of(ctx, paths), ctx.opt.description_tokens);
  std::vector<std::vector<world::Verdict>> verdicts;
  std::vector<double> conf;
  std::vector<bool> clean;
  double recall_sum = 0, mention_sum = 0;
  int64_t repeating = 0;
  // Hallucinated kinds that are the co-occurrence partner of a shape in the scene (the world's
  // kCooccurringPairs: a moon where there is a star): the papers' kind of hallucination.
  int64_t hallucinated_kinds = 0, partner_kinds = 0;
  for (size_t i = 0; i < answers.size(); ++i) {
    const auto& scene = ctx.scene_of(images[i]);
    verdicts.push_back(verify_sentences(ctx, scene, answers[i].text));
    recall_sum += object_recall(scene, verdicts.back());
    mention_sum += mention_recall(scene, verdicts.back());
    repeating += repeats_a_sentence(answers[i].text);
    bool halluc = false;
    Json hall = Json::array();
    uint32_t partners = 0;  // kinds that co-occur with a shape of the scene
    for (const auto& pr : world::kCooccurringPairs)
      for (const auto& o : scene.objects)
        if (o.shape == pr.first) partners |= 1u << int(pr.second);
    for (const auto& v : verdicts.back()) {
      halluc |= v.hallucinated != 0;
      for (int k = 0; k < 32; ++k)
        if (v.hallucinated >> k & 1u) {
          ++hallucinated_kinds;
          partner_kinds += partners >> k & 1u;
        }
      for (auto& n : v.hallucinated_names()) hall.push_back(n);
    }
    conf.push_back(sequence_confidence(answers[i].gen.logprobs));
    clean.push_back(!halluc);
    ctx.add_sample({{"task", "chair"}, {"group", "chair"}, {"question_id", scene.id + "_desc"}, {"image", images[i]},
                    {"question", prompts[i]}, {"answer", answers[i].text}, {"confidence", conf.back()},
                    {"correct", !halluc}, {"hallucinated", hall}});
  }
  Json out = chair_metrics(verdicts).to_json();
  out["object_recall"] = recall_sum / double(answers.size());
  out["mention_recall"] = mention_sum / double(answers.size());
  out["repeating_share"] = double(repeating) / double(answers.size());
  out["hallucinated_kinds"] = hallucinated_kinds;
  out["cooccurrence_share"] = hallucinated_kinds > 0 ? double(partner_kinds) / double(hallucinated_kinds) : 0.0;
  out["verifiable_share"] =
      out["sentences"].get<double>() > 0
          ? 1.0 - out["unverifiable_sentences"].get<double>() / out["sentences"].get<double>()
          : 0.0;
  out["mean_tokens"] = [&] {
    double s = 0;
    for (const auto& a : answers) s += double(a.gen.tokens.size());
    return s / double(answers.size());
  }();
  // Caption confidence exp(mean log-prob) vs "no hallucinated object".
  out["calibration"] = maybe_calibration(conf, clean, ctx.opt.num_bins);
  return out;
}

// ---- multiple choice -----------------------------------------------------------------------------

McItems world_mc_items(EvalContext& ctx, int64_t lim) {
  McItems m;
  m.records = ctx.read_split_jsonl("mc.jsonl", lim);
  if (m.records.empty()) fail("run_eval: ", ctx.split_file("mc.jsonl"), ": no questions");
  const bool study_style = ctx.opt.mc_style == "calibration-study";
  for (const auto& j : m.records) {
    const std::string where = j["_where"].get<std::string>();
    const auto options = json_get<std::vector<std::string>>(j, "options", where);
    const auto answer = json_get<std::string>(j, "answer", where);
    if (answer.size() != 1 || answer[0] < 'A' || answer[0] >= char('A' + options.size()))
      fail("run_eval: ", where, ": answer '", answer, "' is not an option letter");
    m.truth.push_back(answer[0] - 'A');
    m.prompts.push_back(study_style ? calibration_study_mc_prompt(json_get<std::string>(j, "question", where), options)
                                    : json_get<std::string>(j, "prompt", where));
    m.paths.push_back(ctx.world_dir + "/" + json_get<std::string>(j, "image", where));
  }
  return m;
}

std::vector<LetterAnswer> answer_letters(EvalContext& ctx, const McItems& items, LetterOptions lo, bool with_image,
                                         const std::string& label) {
  lo.response_prefix = ctx.opt.mc_style == "calibration-study" ? "(" : "";
  std::vector<LetterAnswer> answers;
  std::unique_ptr<Progress> bar;
  if (ctx.opt.progress) bar = std::make_unique<Progress>(label, int64_t(items.prompts.size()), "questions");
  const size_t B = size_t(ctx.opt.batch_size);
  for (size_t s = 0; s < items.prompts.size(); s += B) {
    const size_t e = std::min(items.prompts.size(), s + B);
    std::vector<std::string> p(items.prompts.begin() + long(s), items.prompts.begin() + long(e));
    std::vector<const Image*> im(p.size(), nullptr);
    if (with_image)
      im = images_of(ctx, std::vector<std::string>(items.paths.begin() + long(s), items.paths.begin() + long(e)));
    for (auto& a : letter_answers(ctx.vlm, p, im, lo)) answers.push_back(std::move(a));
    if (bar) bar->set(int64_t(e));
  }
  if (bar) bar->done();
  return answers;
}

Json eval_mc(EvalContext& ctx) {
  const McItems items = world_mc_items(ctx, ctx.limit(ctx.opt.mc_limit));
  const auto& records = items.records;
  const auto& prompts = items.prompts;
  const auto& truth = items.truth;
  LetterOptions lo;
  lo.temperature = ctx.opt.temperatures.mc;
  const std::vector<LetterAnswer> answers = answer_letters(ctx, items, lo, /*with_image=*/true, "mc");
  std::vector<double> conf, conf_raw;
  std::vector<bool> correct;
  int64_t no_letter = 0, right = 0;
  std::map<int, int64_t> letter_counts;
  for (size_t i = 0; i < answers.size(); ++i) {
    const auto& a = answers[i];
    const std::string where = records[i]["_where"].get<std::string>();
    Json sample = {{"task", "mc"}, {"group", "mc/" + records[i].value("category", std::string("mc"))},
                   {"question_id", records[i].value("question_id", Json(nullptr))},
                   {"image", records[i].value("image", std::string())}, {"question", prompts[i]},
                   {"label", std::string(1, char('A' + truth[i]))}};
    if (a.letter < 0) {
      no_letter++;
      sample["prediction"] = nullptr;
      sample["correct"] = false;
    } else {
      conf.push_back(a.confidence);
      conf_raw.push_back(a.raw_confidence);
      correct.push_back(a.letter == truth[i]);
      right += a.letter == truth[i];
      letter_counts[a.letter]++;
      sample["prediction"] = std::string(1, char('A' + a.letter));
      sample["confidence"] = a.confidence;
      sample["correct"] = a.letter == truth[i];
      sample["step"] = a.step;
    }
    ctx.add_sample(std::move(sample));
  }
  Json out;
  out["style"] = ctx.opt.mc_style;
  out["n"] = int64_t(answers.size());
  out["answered"] = int64_t(conf.size());
  out["no_letter"] = no_letter;
  out["accuracy"] = double(right) / double(answers.size());           // no letter counts as wrong
  out["accuracy_answered"] =
      num(ratio(double(right), double(conf.size())));  // the calibration study's accuracy (skipped ones out)
  Json dist = Json::object();
  for (int l = 0; l < kMaxOptions; ++l) dist[std::string(1, char('A' + l))] = letter_counts[l];
  out["predicted_letters"] = dist;
  out["calibration"] = maybe_calibration(conf, correct, ctx.opt.num_bins);
  if (ctx.opt.temperatures.mc != 1.0) {
    out["temperature"] = ctx.opt.temperatures.mc;
    out["calibration_uncalibrated"] = maybe_calibration(conf_raw, correct, ctx.opt.num_bins);
  }
  return out;
}

// ---- "I don't know" and text vs image ------------------------------------------------------------

namespace {

struct IdkItem {
  std::string question, canonical, image, category;
  bool answerable = true;
  Json question_id;
};

}  // namespace

Json eval_idk(EvalContext& ctx) {
  const int64_t lim = ctx.limit(ctx.opt.idk_limit), mod_lim = ctx.limit(ctx.opt.modality_limit);
  auto records = ctx.read_split_jsonl("idk.jsonl", std::max(lim, mod_lim * 3));
  std::vector<IdkItem> items;
  for (const auto& j : records) {
    const std::string where = j["_where"].get<std::string>();
    IdkItem it;
    it.question = json_get<std::string>(j, "question", where);
    it.canonical = json_get<std::string>(j, "canonical", where);
    it.answerable = json_get<bool>(j, "answerable", where);
    it.image = json_get<std::string>(j, "image", where);
    it.category = j.value("category", std::string());
    it.question_id = j.value("question_id", Json(nullptr));
    if (it.canonical.empty()) fail("run_eval: ", where, ": empty 'canonical'");
    items.push_back(std::move(it));
  }
  if (items.empty()) fail("run_eval: ", ctx.split_file("idk.jsonl"), ": no questions");
  Json out;
  // Prompt variants on the first `lim` questions.
  const size_t n = std::min(items.size(), size_t(lim));
  std::vector<std::string> paths;
  for (size_t i = 0; i < n; ++i) paths.push_back(ctx.world_dir + "/" + items[i].image);
  const auto images = images_of(ctx, paths);
  for (const char* variant : {"plain", "hint"}) {
    const bool hint = std::string(variant) == "hint";
    std::vector<std::string> prompts;
    for (size_t i = 0; i < n; ++i)
      prompts.push_back(hint ? items[i].question + " " + ctx.opt.idk_hint : items[i].question);
    auto answers = ctx.answer_all(std::string("idk/") + variant, prompts, images, ctx.opt.short_tokens);
    int64_t n_ans = 0, n_unans = 0, right_ans = 0, idk_ans = 0, idk_unans = 0, no_answer = 0, right = 0;
    std::vector<double> conf;
    std::vector<bool> correct;
    for (size_t i = 0; i < n; ++i) {
      auto check = ctx.verifier.check_answer(answers[i].text, items[i].canonical);
      const bool ok = check.truth == world::Truth::kTrue;
      if (check.truth == world::Truth::kUnverifiable && !check.is_idk) no_answer++;
      right += ok;
      if (items[i].answerable) {
        n_ans++;
        right_ans += ok;
        idk_ans += check.is_idk;
      } else {
        n_unans++;
        idk_unans += check.is_idk;
      }
      conf.push_back(sequence_confidence(answers[i].gen.logprobs));
      correct.push_back(ok);
      ctx.add_sample({{"task", "idk"}, {"group", std::string("idk/") + variant}, {"question_id", items[i].question_id},
                      {"image", items[i].image}, {"question", prompts[i]}, {"answer", answers[i].text},
                      {"label", items[i].canonical}, {"prediction", check.answer}, {"is_idk", check.is_idk},
                      {"answerable", items[i].answerable}, {"confidence", conf.back()}, {"correct", ok}});
    }
    Json m;
    m["n"] = int64_t(n);
    m["answerable"] = n_ans;
    m["unanswerable"] = n_unans;
    m["accuracy"] = double(right) / double(n);  // IDK on an unanswerable question is correct
    m["accuracy_answerable"] = num(ratio(double(right_ans), double(n_ans)));
    m["idk_recall"] = num(ratio(double(idk_unans), double(n_unans)));
    m["false_idk_rate"] = num(ratio(double(idk_ans), double(n_ans)));
    m["idk_precision"] = num(ratio(double(idk_unans), double(idk_unans + idk_ans)));
    m["no_answer"] = no_answer;  // neither an answer the checker found nor "I don't know"
    m["prompt_suffix"] = hint ? ctx.opt.idk_hint : "";
    m["calibration"] = maybe_calibration(conf, correct, ctx.opt.num_bins);
    out[variant] = m;
  }
  // Text vs image: answerable questions with the image, a blank grey image, no image.
  std::vector<const IdkItem*> mod;
  for (const auto& it : items)
    if (it.answerable && int64_t(mod.size()) < mod_lim) mod.push_back(&it);
  if (!mod.empty()) {
    std::vector<std::string> prompts, mpaths;
    for (const auto* it : mod) {
      prompts.push_back(it->question);
      mpaths.push_back(ctx.world_dir + "/" + it->image);
    }
    const auto with = images_of(ctx, mpaths);
    const Image blank = blank_image(with.front()->width, with.front()->height);
    Json modality;
    for (const char* cond : {"image", "blank", "none"}) {
      const std::string c = cond;
      std::vector<const Image*> ims =
          c == "image" ? with : std::vector<const Image*>(mod.size(), c == "blank" ? &blank : nullptr);
      auto answers = ctx.answer_all("modality/" + c, prompts, ims, ctx.opt.short_tokens);
      double ent = 0, first = 0, confsum = 0;
      int64_t right = 0, idk = 0;
      for (size_t i = 0; i < mod.size(); ++i) {
        ent += mean_entropy(answers[i].gen.entropies);
        first += answers[i].gen.entropies.front();
        confsum += sequence_confidence(answers[i].gen.logprobs);
        auto check = ctx.verifier.check_answer(answers[i].text, mod[i]->canonical);
        right += check.truth == world::Truth::kTrue;
        idk += check.is_idk;
      }
      const double N = double(mod.size());
      modality[c] = {{"n", int64_t(mod.size())}, {"mean_entropy", ent / N}, {"first_token_entropy", first / N},
                     {"mean_confidence", confsum / N}, {"accuracy", right / N}, {"idk_rate", idk / N}};
    }
    out["modality"] = modality;
  }
  return out;
}

// ---- reasoning -----------------------------------------------------------------------------------

Json eval_reasoning(EvalContext& ctx) {
  const int64_t lim = ctx.limit(ctx.opt.reasoning_limit);
  auto records = ctx.read_split_jsonl("reasoning.jsonl", lim);
  if (records.empty()) fail("run_eval: ", ctx.split_file("reasoning.jsonl"), ": no questions");
  std::vector<std::string> prompts, paths, images, canon;
  std::vector<std::vector<std::string>> reference_keys, predicted_keys;
  for (const auto& j : records) {
    const std::string where = j["_where"].get<std::string>();
    const std::string q = json_get<std::string>(j, "question", where);
    prompts.push_back(ctx.opt.reasoning_prompt_suffix.empty() ? q : q + " " + ctx.opt.reasoning_prompt_suffix);
    canon.push_back(json_get<std::string>(j, "answer", where));
    std::vector<std::string> ref;
    for (const char* key : {"perception", "reasoning"})
      if (j.contains(key) && j[key].is_array())
        for (const auto& st : j[key]) ref.push_back(claim_key(st.get<std::string>()));
    if (j.contains("final") && j["final"].is_string()) ref.push_back(claim_key(j["final"].get<std::string>()));
    reference_keys.push_back(std::move(ref));
    images.push_back(json_get<std::string>(j, "image", where));
    paths.push_back(ctx.world_dir + "/" + images.back());
  }
  auto answers = ctx.answer_all("reasoning", prompts, images_of(ctx, paths), ctx.opt.reasoning_tokens);
  std::vector<std::vector<world::Truth>> chains;
  std::vector<double> conf;
  std::vector<bool> correct;
  // Stated confidence: per step (MECE) and of the final step (the answer's).
  std::vector<double> step_conf, answer_conf;
  std::vector<bool> step_ok, answer_ok;
  int64_t all_steps = 0;
  int64_t right = 0;
  for (size_t i = 0; i < answers.size(); ++i) {
    const auto& scene = ctx.scene_of(images[i]);
    auto verdicts = verify_sentences(ctx, scene, answers[i].text, canon[i]);
    const auto sentences = split_sentences(answers[i].text);
    std::vector<world::Truth> chain;
    std::vector<std::string> keys;
    Json steps = Json::array(), stated = Json::array();
    for (size_t k = 0; k < verdicts.size(); ++k) {
      const auto& v = verdicts[k];
      chain.push_back(v.truth);
      steps.push_back(world::truth_name(v.truth));
      keys.push_back(claim_key(sentences[k]));
      const VerbalConfidence vc = parse_verbal_confidence(sentences[k]);
      stated.push_back(vc.found ? Json(vc.value) : Json(nullptr));
      ++all_steps;
      if (vc.found) {
        step_conf.push_back(vc.value);
        step_ok.push_back(v.truth == world::Truth::kTrue);
      }
    }
    predicted_keys.push_back(std::move(keys));
    chains.push_back(chain);
    auto check = ctx.verifier.check_answer(answers[i].text, canon[i]);
    const bool ok = check.truth == world::Truth::kTrue;
    right += ok;
    conf.push_back(sequence_confidence(answers[i].gen.logprobs));
    correct.push_back(ok);
    if (!stated.empty() && !stated.back().is_null()) {
      answer_conf.push_back(stated.back().get<double>());
      answer_ok.push_back(ok);
    }
    ctx.add_sample({{"task", "reasoning"}, {"group", "reasoning/" + records[i].value("category", std::string())},
                    {"question_id", records[i].value("question_id", Json(nullptr))}, {"image", images[i]},
                    {"question", prompts[i]}, {"answer", answers[i].text}, {"label", canon[i]},
                    {"prediction", check.answer}, {"steps", steps}, {"stated_confidence", stated},
                    {"confidence", conf.back()}, {"correct", ok}});
  }
  Json out = step_metrics(chains).to_json();
  out["answer_accuracy"] = double(right) / double(answers.size());
  out["mean_steps"] = double(out["steps"].get<int64_t>()) / double(chains.size());
  out["calibration"] = maybe_calibration(conf, correct, ctx.opt.num_bins);
  out["step_f1"] = step_f1(predicted_keys, reference_keys).to_json();
  if (!ctx.opt.reasoning_prompt_suffix.empty()) out["prompt_suffix"] = ctx.opt.reasoning_prompt_suffix;
  // MMBoundary's metrics of stated confidence: MECE = ECE of (stated step confidence, step
  // truth) over the steps that state one; the answer's calibration from its final step's.
  Json stated = {{"steps", all_steps},
                 {"steps_stating", int64_t(step_conf.size())},
                 {"coverage", all_steps ? double(step_conf.size()) / double(all_steps) : 0.0}};
  stated["steps_calibration"] = maybe_calibration(step_conf, step_ok, ctx.opt.num_bins);
  stated["answer_calibration"] = maybe_calibration(answer_conf, answer_ok, ctx.opt.num_bins);
  stated["mece"] = step_conf.empty() ? Json(nullptr) : stated["steps_calibration"]["ece"];
  out["stated"] = stated;
  return out;
}

}  // namespace mmb::eval_detail
