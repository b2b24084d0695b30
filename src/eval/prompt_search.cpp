// Iterative prompt optimisation, the calibration study. Departures: the calibration study's paraphraser is an
// external LLM (GPT); ours is pluggable (rules for the world, or the model's own LM); ties in the
// study's sort key are broken by accuracy, then by first appearance, so the search is deterministic.
#include "mmb/prompt_search.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "eval_internal.h"
#include "mmb/error.h"
#include "mmb/metrics.h"
#include "mmb/progress.h"
#include "mmb/sentences.h"

namespace mmb {
namespace {

// ---- the template paraphraser ------------------------------------------------------------------

struct Rule {
  const char* phrase;                     // matched as a whole-word, case-sensitive substring
  std::vector<const char*> alternatives;  // one replaces it
};

const std::vector<Rule>& rules() {
  static const std::vector<Rule> r = {
      {"might be", {"may be", "could be", "is possibly", "is probably", "is likely"}},
      {"must be", {"has to be", "is certainly", "is definitely", "should be", "is surely"}},
      {"may be", {"might be", "could be", "is perhaps"}},
      {"could be", {"might be", "may be", "is possibly"}},
      {"is probably", {"is likely", "might be", "is most likely"}},
      {"is certainly", {"must be", "is definitely", "is clearly"}},
      {"The answer", {"The correct answer", "The right option", "My answer", "The correct option"}},
      {"answer", {"response", "choice", "option"}},
      {"is likely", {"is probably", "may be"}},
      {"is definitely", {"is certainly", "must be"}},
  };
  return r;
}

const std::vector<const char*> kLeadIns = {"I think", "Perhaps", "Honestly,", "Looking at the image,",
                                           "If unsure, guess:"};
const std::vector<const char*> kHedges = {"if I am not mistaken", "I believe", "as far as I can tell"};

bool word_boundary(const std::string& s, size_t pos, size_t len) {
  auto is_word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
  return (pos == 0 || !is_word(s[pos - 1])) && (pos + len >= s.size() || !is_word(s[pos + len]));
}

class TemplateParaphraser : public Paraphraser {
 public:
  std::vector<std::string> paraphrase(const std::string& prompt, int count, uint64_t seed) override {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(0, 1);
    std::set<std::string> seen = {prompt};
    std::vector<std::string> out;
    for (int attempt = 0; attempt < 40 * count && int(out.size()) < count; ++attempt) {
      std::string s = prompt;
      for (const auto& rule : rules()) {
        const std::string ph = rule.phrase;
        const size_t pos = s.find(ph);
        if (pos == std::string::npos || !word_boundary(s, pos, ph.size()) || u(rng) < 0.4) continue;
        s.replace(pos, ph.size(), rule.alternatives[size_t(rng() % rule.alternatives.size())]);
      }
      if (u(rng) < 0.25) {
        std::string lead = kLeadIns[size_t(rng() % kLeadIns.size())];
        if (!s.empty() && std::isupper(static_cast<unsigned char>(s[0])) && s.rfind("I ", 0) != 0)
          s[0] = char(std::tolower(static_cast<unsigned char>(s[0])));
        s = lead + " " + s;
      }
      if (u(rng) < 0.2) s += std::string(", ") + kHedges[size_t(rng() % kHedges.size())];
      if (seen.insert(s).second) out.push_back(s);
    }
    return out;
  }
  std::string name() const override { return "template"; }
};

// ---- the model's own language model -----------------------------------------------------------

class ModelParaphraser : public Paraphraser {
 public:
  ModelParaphraser(Vlm& vlm, int64_t max_new_tokens) : vlm_(vlm), max_new_tokens_(max_new_tokens) {}

  std::vector<std::string> paraphrase(const std::string& prompt, int count, uint64_t seed) override {
    std::set<std::string> seen = {prompt};
    std::vector<std::string> out;
    const std::string ask = "Rewrite in other words: \"" + prompt + "\"";
    for (int attempt = 0; attempt < 3 * count && int(out.size()) < count; ++attempt) {
      SampleOptions s;
      s.temperature = 1.0;
      s.top_p = 0.9;
      s.seed = seed + uint64_t(attempt);
      s.stop = vlm_.default_stop(max_new_tokens_);
      s.stop.stop_at_sentence_end = true;
      auto a = vlm_.answer({ask}, {nullptr}, s)[0];
      auto sentences = split_sentences(a.text);
      if (sentences.empty()) continue;
      std::string cand = sentences.front();
      while (!cand.empty() && (cand.back() == '.' || cand.back() == ' ' || cand.back() == '"')) cand.pop_back();
      while (!cand.empty() && (cand.front() == '"' || cand.front() == ' ')) cand.erase(cand.begin());
      if (cand.empty() || cand.size() > 200) continue;
      if (seen.insert(cand).second) out.push_back(cand);
    }
    return out;
  }
  std::string name() const override { return "model"; }

 private:
  Vlm& vlm_;
  int64_t max_new_tokens_;
};

// ---- scoring ------------------------------------------------------------------------------------

struct Scored {
  std::string prompt, parent;
  int round = 0;
  int64_t order = 0;  // first appearance
  double accuracy = 0, ece = 1;
  int64_t answered = 0, n = 0;
  Json to_json() const {
    return {{"prompt", prompt}, {"parent", parent}, {"round", round}, {"accuracy", accuracy},
            {"ece", ece}, {"answered", answered}, {"n", n}};
  }
};

Scored score(eval_detail::EvalContext& ctx, const eval_detail::McItems& base, const std::string& suffix, int num_bins) {
  eval_detail::McItems items;  // the base questions with the suffix; records are not needed
  items.prompts = base.prompts;
  items.paths = base.paths;
  items.truth = base.truth;
  if (!suffix.empty())
    for (auto& p : items.prompts) p += " " + suffix;
  auto answers = eval_detail::answer_letters(ctx, items, LetterOptions{}, /*with_image=*/true, "prompt");
  std::vector<double> conf;
  std::vector<bool> correct;
  int64_t right = 0;
  for (size_t i = 0; i < answers.size(); ++i) {
    if (answers[i].letter < 0) continue;
    conf.push_back(answers[i].confidence);
    correct.push_back(answers[i].letter == items.truth[i]);
    right += answers[i].letter == items.truth[i];
  }
  Scored s;
  s.prompt = suffix;
  s.n = int64_t(answers.size());
  s.answered = int64_t(conf.size());
  s.accuracy = double(right) / double(answers.size());  // no letter counts as wrong
  s.ece = conf.empty() ? 1.0 : expected_calibration_error(conf, correct, num_bins);
  return s;
}

}  // namespace

std::unique_ptr<Paraphraser> make_template_paraphraser() { return std::make_unique<TemplateParaphraser>(); }
std::unique_ptr<Paraphraser> make_model_paraphraser(Vlm& vlm, int64_t max_new_tokens) {
  return std::make_unique<ModelParaphraser>(vlm, max_new_tokens);
}

Json prompt_search(Vlm& vlm, const std::string& world_dir, Paraphraser& paraphraser, const PromptSearchOptions& o) {
  if (o.start_prompts.empty()) fail("prompt_search: no start prompts");
  if (o.keep < 1 || o.paraphrases < 1 || o.rounds < 0)
    fail("prompt_search: keep and paraphrases must be >= 1 and rounds >= 0 (got ", o.keep, ", ", o.paraphrases, ", ",
         o.rounds, ")");
  if (!(o.accuracy_bucket > 0)) fail("prompt_search: accuracy_bucket must be > 0, got ", o.accuracy_bucket);
  EvalOptions train_opt, test_opt;
  for (EvalOptions* e : {&train_opt, &test_opt}) {
    e->mc_style = o.mc_style;
    e->batch_size = o.batch_size;
    e->progress = false;  // one line per round instead
    e->suite = {};
  }
  train_opt.split = o.train_split;
  test_opt.split = o.test_split;
  vlm.model()->eval();
  eval_detail::EvalContext train_ctx(vlm, world_dir, train_opt), test_ctx(vlm, world_dir, test_opt);
  const auto train_items = eval_detail::world_mc_items(train_ctx, o.train_limit);

  std::map<std::string, Scored> cache;  // a prompt is scored once
  int64_t order = 0;
  auto get = [&](const std::string& prompt, const std::string& parent, int round) -> const Scored& {
    auto it = cache.find(prompt);
    if (it != cache.end()) return it->second;
    Scored s = score(train_ctx, train_items, prompt, o.num_bins);
    s.parent = parent;
    s.round = round;
    s.order = order++;
    return cache.emplace(prompt, s).first->second;
  };
  auto better = [&](const Scored* a, const Scored* b) {
    const double ba = std::floor(a->accuracy / o.accuracy_bucket + 1e-12),
                 bb = std::floor(b->accuracy / o.accuracy_bucket + 1e-12);
    if (ba != bb) return ba > bb;
    if (a->ece != b->ece) return a->ece < b->ece;
    if (a->accuracy != b->accuracy) return a->accuracy > b->accuracy;
    return a->order < b->order;
  };
  Json rounds = Json::array();
  std::vector<const Scored*> kept;
  auto select = [&](std::vector<const Scored*> pool, int round) {
    std::sort(pool.begin(), pool.end(), better);
    pool.erase(std::unique(pool.begin(), pool.end()), pool.end());
    Json r = Json::array();
    for (size_t i = 0; i < pool.size(); ++i) {
      Json j = pool[i]->to_json();
      j["kept"] = i < size_t(o.keep);
      r.push_back(j);
    }
    rounds.push_back(r);
    if (pool.size() > size_t(o.keep)) pool.resize(size_t(o.keep));
    kept = pool;
    log_info("prompt search round " + std::to_string(round) + ": best \"" + kept.front()->prompt + "\" acc " +
             std::to_string(kept.front()->accuracy) + " ECE " + std::to_string(kept.front()->ece) + " (" +
             std::to_string(cache.size()) + " prompts scored)");
  };
  std::vector<const Scored*> pool;
  for (const auto& s : o.start_prompts) pool.push_back(&get(s, "", 0));
  select(pool, 0);
  for (int round = 1; round <= o.rounds; ++round) {
    pool = kept;
    for (size_t k = 0; k < kept.size(); ++k) {
      const std::string parent = kept[k]->prompt;
      for (const auto& p : paraphraser.paraphrase(parent, o.paraphrases, o.seed * 1000003 + uint64_t(round) * 101 + k))
        pool.push_back(&get(p, parent, round));
    }
    select(pool, round);
  }
  Json out;
  out["paraphraser"] = paraphraser.name();
  out["rounds"] = rounds;
  out["candidates_scored"] = int64_t(cache.size());
  out["best"] = kept.front()->to_json();
  out["train"] = {{"split", o.train_split}, {"questions", int64_t(train_items.prompts.size())}};
  // Held-out check: the best prompt, the start prompts and no suffix.
  const auto test_items = eval_detail::world_mc_items(test_ctx, o.test_limit);
  Json test;
  test["split"] = o.test_split;
  test["best"] = score(test_ctx, test_items, kept.front()->prompt, o.num_bins).to_json();
  test["start_prompts"] = Json::array();
  for (const auto& s : o.start_prompts)
    test["start_prompts"].push_back(score(test_ctx, test_items, s, o.num_bins).to_json());
  test["none"] = score(test_ctx, test_items, "", o.num_bins).to_json();
  out["test"] = test;
  return out;
}

}  // namespace mmb
