// The evaluation suite (`mmb eval`, and `mmb train base` after training): one call runs the
// chosen tasks on a world split with a loaded model and returns every number as JSON.
//
// Tasks (docs/metrics.md defines each number):
//   pope       POPE random / popular / adversarial: accuracy, precision, recall, F1, yes-ratio of
//              the generated answers; yes-probability confidence p(yes)/(p(yes)+p(no)) of the
//              first answer token -> calibration (ECE, AUROC, ...) and AUROC of p(yes) vs label
//   chair      descriptions: CHAIR_s, CHAIR_i from the world's verifier; unverifiable sentences
//              counted, never dropped
//   mc         multiple choice, the calibration study's letter method: accuracy and calibration
//   idk        answerable + unanswerable questions, plain vs "If you are not sure, say I don't
//              know." prompt: accuracy on answerable, IDK recall, false-IDK rate; and text vs image
//              uncertainty: the same questions with the image, a blank grey image and no image
//   reasoning  reasoning chains: step accuracy (every sentence verified against the scene) and
//              final-answer accuracy
// Also reads official POPE question files ({"question_id", "image", "text", "label"} per line)
// with an image folder.
//
// Speed: prompts run in left-padded batches; the default per-task limits (below) keep the full
// suite on the default 4M-parameter model within a minute on 2 CPU cores. Greedy decoding
// throughout, so results are deterministic.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mmb/calibration.h"
#include "mmb/json.h"
#include "mmb/vlm.h"
#include "mmb/world.h"

namespace mmb {

struct EvalOptions {
  std::string split = "test";   // world split: train, val, test or shifted
  // Tasks to run, any of: pope, chair, mc, idk, reasoning.
  std::vector<std::string> suite = {"pope", "chair", "mc", "idk", "reasoning"};
  // Questions per task: > 0 overrides every per-task limit, -1 = no limit, 0 = per-task defaults.
  int64_t limit = 0;
  int64_t pope_limit = 200;       // per POPE category
  int64_t chair_limit = 100;      // descriptions
  int64_t mc_limit = 300;
  int64_t idk_limit = 200;        // questions per prompt variant
  int64_t modality_limit = 100;   // questions per condition (image / blank / none)
  int64_t reasoning_limit = 100;
  int64_t batch_size = 32;        // prompts per forward pass
  int num_bins = 10;              // ECE bins
  // Multiple-choice prompt: "calibration-study" = question, options, "Please provide the option letter
  // directly." and the answer primed with "(" (the calibration study); "world" = the world's own prompt
  // ("Answer with the option's letter ...") without priming (what the SFT data uses).
  std::string mc_style = "calibration-study";
  std::string idk_hint = world::kIdkHint;  // appended after a space
  std::string reasoning_prompt_suffix;     // appended to reasoning questions after a space ("" = none),
                                           // e.g. a request to state confidence per step
  int64_t short_tokens = 12;         // max new tokens: POPE, IDK answers
  int64_t description_tokens = 128;  // max new tokens: descriptions
  int64_t reasoning_tokens = 128;    // max new tokens: reasoning chains
  // Official POPE question files, evaluated whole unless limit > 0; category = the record's
  // "category" if present, else the file name without extension.
  std::vector<std::string> pope_files;
  std::string pope_images;          // folder the files' "image" names are relative to
  // Confidence temperatures (the model directory's calibration.json, read_confidence_temperatures):
  // MC letter and POPE yes/no confidences use them; when one is not 1 the task also reports
  // "calibration_uncalibrated" (temperature 1) next to "calibration".
  ConfidenceTemperatures temperatures;
  bool keep_samples = false;        // results["samples"]: one record per question (see below)
  bool progress = true;             // progress lines on stderr
};

// Runs the suite. `world_dir` may be empty when the suite is empty (only pope_files). Returns
// {"split", "suite", "limits", "definition", "seconds", "questions", "<task>": {...}, and
// "pope_files": {...} / "samples": [...] when requested}. A sample is {"task", "group",
// "question_id", "image", "question", "answer", "correct", "confidence" (absent when the method
// gave none, e.g. no letter found), "label", "prediction"} — the `mmb metrics --in` format.
// Throws mmb::Error naming the file (and line) on a missing or malformed input, a missing image,
// a POPE label other than yes/no, an unknown task.
Json run_eval(Vlm& vlm, const std::string& world_dir, const EvalOptions& options = {});

// The headline table printed by `mmb eval` (plain text, one metric per row).
std::string format_eval_headline(const Json& results);

// A uniform grey image (RGB, value 128): the "blank image" condition.
Image blank_image(int width, int height);

}  // namespace mmb
