// Shared by eval.cpp (data, batching, the runner) and eval_tasks.cpp (one function per task).
#pragma once
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "mmb/elicitation.h"
#include "mmb/eval.h"
#include "mmb/verifier.h"
#include "mmb/world.h"

namespace mmb::eval_detail {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// One generated answer: text, tokens with log-probs / entropies, and p(yes) of its first token
// when asked for (NaN otherwise).
struct Answered {
  std::string text;
  Generation gen;
  double p_yes = kNaN;      // at the yes/no temperature (EvalOptions::temperatures)
  double p_yes_raw = kNaN;  // at temperature 1
};

// A POPE question from the world's pope.jsonl or an official POPE file.
struct PopeItem {
  Json question_id;
  std::string image;     // path as written in the file (relative)
  std::string image_path;  // path to read
  std::string text;
  bool label = false;
  std::string category;
};

class EvalContext {
 public:
  EvalContext(Vlm& vlm, const std::string& world_dir, const EvalOptions& options);

  Vlm& vlm;
  const EvalOptions& opt;
  const std::string world_dir;
  world::Verifier verifier;
  Json samples = Json::array();

  // The effective limit of a task from its default (see EvalOptions::limit).
  int64_t limit(int64_t task_default) const;
  // Decoded image (cached by path). Throws mmb::Error naming the path.
  const Image& image(const std::string& path);
  // Scene of a world image path ("images/test_000042.png"); scenes.jsonl is read on first use.
  const world::Scene& scene_of(const std::string& image_rel);
  // <world_dir>/<split>/<name>
  std::string split_file(const std::string& name) const;
  // Records of a JSONL file of the split, at most `limit` (< 0 = all).
  std::vector<Json> read_split_jsonl(const std::string& name, int64_t limit) const;

  // Generates answers for prompts in batches of opt.batch_size, greedy, at most max_new_tokens.
  // images[i] may be null (text only); a batch must not mix null and non-null. With
  // `with_yes_no`, Answered::p_yes is read from the first answer token's logits.
  std::vector<Answered> answer_all(const std::string& label, const std::vector<std::string>& prompts,
                                   const std::vector<const Image*>& images, int64_t max_new_tokens,
                                   bool with_yes_no = false);

  void add_sample(Json sample) {
    if (opt.keep_samples) samples.push_back(std::move(sample));
  }

 private:
  std::map<std::string, Image> images_;
  std::vector<world::Scene> scenes_;
  std::unordered_map<std::string, size_t> scene_index_;
  bool yes_no_ready_ = false;
  YesNoTokens yes_no_;
};

// JSON number or null for NaN.
inline Json num(double v) { return v == v ? Json(v) : Json(nullptr); }
// a / b, NaN when b == 0.
inline double ratio(double a, double b) { return b > 0 ? a / b : kNaN; }
// Calibration summary or null when there is nothing to measure.
Json maybe_calibration(const std::vector<double>& confidence, const std::vector<bool>& correct, int num_bins);

// The tasks (eval_tasks.cpp). Each returns its results object.
Json eval_pope_items(EvalContext& ctx, const std::vector<PopeItem>& items, const std::string& task);
Json eval_pope(EvalContext& ctx);
Json eval_chair(EvalContext& ctx);
Json eval_mc(EvalContext& ctx);
Json eval_idk(EvalContext& ctx);
Json eval_reasoning(EvalContext& ctx);

// The world split's POPE questions (pope.jsonl), at most `per_category` of each category.
std::vector<PopeItem> world_pope_items(EvalContext& ctx, int64_t per_category);

// The world split's multiple-choice questions (mc.jsonl) in the prompt style of opt.mc_style.
struct McItems {
  std::vector<Json> records;
  std::vector<std::string> prompts, paths;  // user text with options; image path
  std::vector<int> truth;                   // 0..4
};
McItems world_mc_items(EvalContext& ctx, int64_t limit);
// The calibration study's letter method over the items in batches (response prefix "(" in the calibration study's
// style); without the image when !with_image (the calibration study's released calibration code).
std::vector<LetterAnswer> answer_letters(EvalContext& ctx, const McItems& items, LetterOptions options,
                                         bool with_image, const std::string& progress_label);

// Reads an official POPE question file; checks every image exists and every label is yes/no.
std::vector<PopeItem> read_pope_file(const std::string& path, const std::string& image_dir, int64_t limit);

}  // namespace mmb::eval_detail
