// Fitting a model's confidence temperatures on the world (the calibration study, `mmb calibrate`):
// answer-step logits on a calibration split -> fit_temperature -> ECE before / after on the test
// split. Fitting with the image is our default; `fit_with_image = false` reproduces the calibration
// study's released code, which dropped it.
#include <algorithm>
#include <limits>

#include "eval_internal.h"
#include "mmb/calibrate.h"
#include "mmb/error.h"
#include "mmb/metrics.h"
#include "mmb/progress.h"

namespace mmb {
namespace {

using eval_detail::EvalContext;

// Logits at the answer step and the mask of the true columns, plus each row's predicted column.
struct FitData {
  torch::Tensor logits;     // (N, C) float
  torch::Tensor true_mask;  // (N, C) bool
  std::vector<int64_t> predicted_column;  // argmax column (MC) or -1 (yes/no: decided by p(yes))
  std::vector<bool> label_yes;            // yes/no only
  int64_t questions = 0, skipped = 0;
};

FitData mc_data(EvalContext& ctx, int64_t limit, bool with_image) {
  const auto items = eval_detail::world_mc_items(ctx, limit);
  LetterOptions lo;
  lo.keep_logits = true;
  const auto answers = eval_detail::answer_letters(ctx, items, lo, with_image, "calibrate mc/" + ctx.opt.split);
  const LetterTokens letters = letter_tokens(ctx.vlm.tokenizer());
  FitData d;
  d.questions = int64_t(answers.size());
  std::vector<torch::Tensor> rows, masks;
  for (size_t i = 0; i < answers.size(); ++i) {
    if (answers[i].letter < 0) {
      d.skipped++;  // as the calibration study: no letter within 20 steps -> skipped
      continue;
    }
    const auto& l = answers[i].logits;  // (V,)
    auto mask = torch::zeros({l.size(0)}, torch::kBool);
    for (auto id : letters.ids[size_t(items.truth[i])]) mask[id] = true;
    rows.push_back(l);
    masks.push_back(mask);
    // The letter step's argmax is a letter token: the prediction, whatever T.
    d.predicted_column.push_back(l.argmax().item<int64_t>());
  }
  if (rows.empty()) return d;  // no letter at all: the caller reports the task as not fitted
  d.logits = torch::stack(rows);
  d.true_mask = torch::stack(masks);
  return d;
}

FitData yes_no_data(EvalContext& ctx, int64_t limit, bool with_image) {
  // All POPE categories, `limit` questions in all (split evenly).
  auto items = eval_detail::world_pope_items(ctx, std::max<int64_t>(1, limit / 3));
  const YesNoTokens yn = yes_no_tokens(ctx.vlm.tokenizer());
  std::vector<int64_t> cols = yn.yes;
  cols.insert(cols.end(), yn.no.begin(), yn.no.end());
  const auto col_index = torch::tensor(cols, torch::kLong);
  FitData d;
  d.questions = int64_t(items.size());
  std::vector<torch::Tensor> parts;
  torch::NoGradGuard ng;
  const size_t B = size_t(ctx.opt.batch_size);
  std::unique_ptr<Progress> bar;
  if (ctx.opt.progress) bar = std::make_unique<Progress>("calibrate yes_no/" + ctx.opt.split, d.questions, "questions");
  for (size_t s = 0; s < items.size(); s += B) {
    const size_t e = std::min(items.size(), s + B);
    std::vector<std::string> prompts;
    std::vector<const Image*> images;
    for (size_t i = s; i < e; ++i) {
      prompts.push_back(items[i].text);
      images.push_back(with_image ? &ctx.image(items[i].image_path) : nullptr);
    }
    auto state = prefill(ctx.vlm.model(), ctx.vlm.encode_prompts(prompts, images), 1);
    parts.push_back(state.last_logits.to(torch::kFloat32).cpu().index_select(1, col_index));  // (b, |yes|+|no|)
    if (bar) bar->set(int64_t(e));
  }
  if (bar) bar->done();
  d.logits = torch::cat(parts);
  d.true_mask = torch::zeros(d.logits.sizes(), torch::kBool);
  const int64_t n_yes = int64_t(yn.yes.size());
  for (size_t i = 0; i < items.size(); ++i) {
    d.label_yes.push_back(items[i].label);
    using torch::indexing::Slice;
    if (items[i].label)
      d.true_mask.index_put_({int64_t(i), Slice(0, n_yes)}, true);
    else
      d.true_mask.index_put_({int64_t(i), Slice(n_yes, torch::indexing::None)}, true);
    d.predicted_column.push_back(-1);
  }
  return d;
}

// Calibration summary of the data's predictions at temperature T.
Json measure(const FitData& d, double T, bool yes_no, int num_bins) {
  torch::NoGradGuard ng;
  auto probs = torch::softmax(d.logits.to(torch::kFloat64) / T, -1);  // (N, C)
  std::vector<double> conf;
  std::vector<bool> correct;
  const int64_t N = probs.size(0);
  auto pa = probs.accessor<double, 2>();
  auto ma = d.true_mask.accessor<bool, 2>();
  for (int64_t i = 0; i < N; ++i) {
    if (yes_no) {
      // The columns are the yes and no tokens only, so the softmax is p(yes)/(p(yes)+p(no)) of
      // elicitation.h; p(label side) sums the masked columns, p(yes) is that or its complement.
      double p_true = 0;
      for (int64_t c = 0; c < probs.size(1); ++c)
        if (ma[i][c]) p_true += pa[i][c];
      const double p_yes = d.label_yes[size_t(i)] ? p_true : 1 - p_true;
      const bool say_yes = p_yes >= 0.5;
      conf.push_back(say_yes ? p_yes : 1 - p_yes);
      correct.push_back(say_yes == d.label_yes[size_t(i)]);
    } else {
      const int64_t c = d.predicted_column[size_t(i)];
      conf.push_back(pa[i][c]);
      correct.push_back(ma[i][c]);
    }
  }
  CalibrationOptions o;
  o.num_bins = num_bins;
  return calibration_summary(conf, correct, o);
}

}  // namespace

Json calibrate_temperatures(Vlm& vlm, const std::string& world_dir, const CalibrateOptions& o) {
  if (o.tasks.empty()) fail("calibrate_temperatures: no tasks (expected mc and/or yes_no)");
  for (const auto& t : o.tasks)
    if (t != "mc" && t != "yes_no") fail("calibrate_temperatures: unknown task '", t, "' (expected mc, yes_no)");
  if (o.fit_limit == 0 || o.test_limit == 0) fail("calibrate_temperatures: limits must be > 0 or -1 (all)");
  const int64_t all = std::numeric_limits<int64_t>::max();
  EvalOptions fit_opt, test_opt;
  for (EvalOptions* e : {&fit_opt, &test_opt}) {
    e->mc_style = o.mc_style;
    e->batch_size = o.batch_size;
    e->progress = o.progress;
    e->suite = {};
  }
  fit_opt.split = o.fit_split;
  test_opt.split = o.test_split;
  vlm.model()->eval();
  EvalContext fit_ctx(vlm, world_dir, fit_opt), test_ctx(vlm, world_dir, test_opt);
  const std::string other = o.fit.method == "grid" ? "optimize" : "grid";
  Json out, calibration = Json::object();
  for (const auto& task : o.tasks) {
    const bool yes_no = task == "yes_no";
    const int64_t fit_n = o.fit_limit < 0 ? all : o.fit_limit, test_n = o.test_limit < 0 ? all : o.test_limit;
    FitData fit_data =
        yes_no ? yes_no_data(fit_ctx, fit_n, o.fit_with_image) : mc_data(fit_ctx, fit_n, o.fit_with_image);
    FitData test_data = yes_no ? yes_no_data(test_ctx, test_n, true) : mc_data(test_ctx, test_n, true);
    if (!fit_data.logits.defined() || !test_data.logits.defined()) {
      // Counted and reported, not fitted: the model never gave an option letter (the calibration study skips it).
      out[task] = {{"fitted", false}, {"fit_questions", fit_data.questions}, {"test_questions", test_data.questions},
                   {"skipped_no_letter", fit_data.skipped + test_data.skipped},
                   {"reason", "no answer with an option letter on the " +
                                  std::string(fit_data.logits.defined() ? o.test_split : o.fit_split) + " split"}};
      log_info("calibrate: " + task + " not fitted: " + out[task]["reason"].get<std::string>());
      continue;
    }
    const TemperatureFit fit = fit_temperature(fit_data.logits, fit_data.true_mask, o.fit);
    TemperatureFitOptions other_opt = o.fit;
    other_opt.method = other;
    const TemperatureFit alt = fit_temperature(fit_data.logits, fit_data.true_mask, other_opt);
    Json r;
    r["fitted"] = true;
    r["fit"] = fit.to_json();
    r[other] = alt.to_json();
    r["fit"]["split"] = o.fit_split;
    r["fit"]["with_image"] = o.fit_with_image;
    r["fit_questions"] = fit_data.questions;
    r["test_questions"] = test_data.questions;
    r["skipped_no_letter"] = fit_data.skipped + test_data.skipped;
    r["test_nll_before"] = temperature_nll(test_data.logits, test_data.true_mask, 1.0);
    r["test_nll_after"] = temperature_nll(test_data.logits, test_data.true_mask, fit.temperature);
    r["test_before"] = measure(test_data, 1.0, yes_no, o.num_bins);
    r["test_after"] = measure(test_data, fit.temperature, yes_no, o.num_bins);
    out[task] = r;
    calibration[task] = r["fit"];
  }
  calibration["fitted"] = {{"world", world_dir}, {"fit_split", o.fit_split}, {"with_image", o.fit_with_image},
                           {"method", o.fit.method}};
  out["calibration"] = calibration;
  return out;
}

}  // namespace mmb
