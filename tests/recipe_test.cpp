// The default recipe end to end at toy sizes (configs/quick.toml) through `mmb train base`:
// every phase runs and leaves its run directory, the evaluation writes results.json and
// samples.jsonl, and a second run with the same --out reuses every phase (the model is not
// retrained). Then the calibration study's tail on the same run: `mmb calibrate` and `mmb eval`.
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "mmb/atomic_file.h"
#include "mmb/json.h"
#include "test_util.h"

using mmb::testing::run_capture;

TEST(QuickRecipe, RunsEveryPhaseThenReusesThemAndCalibrates) {
  mmb::testing::TempDir tmp;
  const std::string mmb = std::string(MMB_BINARY_DIR) + "/mmb";
  const std::string out = tmp.file("base");
  const std::string cmd =
      mmb + " train base --config " + std::string(MMB_SOURCE_DIR) + "/configs/quick.toml --out " + out;
  int status = 0;
  auto t0 = std::chrono::steady_clock::now();
  std::string log = run_capture(cmd, &status);
  const double first = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(status, 0) << log;
  std::printf("[          ] quick recipe: %.1f s\n", first);
  for (const char* f : {"world/world.json", "tokenizer/tokenizer.model", "clip/model/model.safetensors",
                        "clip/manifest.json", "sft/model/model.safetensors", "sft/model/config.json",
                        "sft/manifest.json", "sft/metrics.jsonl", "sft_curriculum/model/model.safetensors",
                        "sft_curriculum/metrics.jsonl", "results.json", "samples.jsonl", "manifest.json"})
    EXPECT_TRUE(std::filesystem::exists(out + "/" + f)) << f;
  auto manifest = mmb::read_json_file(out + "/manifest.json");
  EXPECT_EQ(manifest["status"], "ok");
  for (const char* phase : {"world", "tokenizer", "clip", "sft-curriculum", "sft", "eval"})
    EXPECT_TRUE(manifest["results"]["recipe"]["phases"].contains(phase)) << phase << "\n" << manifest.dump(2);
  // The curriculum stage saw the QA conversations only (one per scene), the second stage all of them.
  const auto curriculum_data = mmb::read_json_file(out + "/sft_curriculum/manifest.json")["results"]["data"];
  const auto sft_data = mmb::read_json_file(out + "/sft/manifest.json")["results"]["data"];
  EXPECT_GT(curriculum_data["samples"].get<int64_t>(), 0) << curriculum_data.dump();
  EXPECT_LE(curriculum_data["samples"].get<int64_t>(), 300) << curriculum_data.dump();  // train-scenes
  EXPECT_GT(sft_data["samples"].get<int64_t>(), 3 * curriculum_data["samples"].get<int64_t>()) << sft_data.dump();
  // ... and, with sft-task-repeat "qa=3", the QA conversations twice more.
  const int64_t conversations = int64_t(mmb::read_json_file(out + "/world/train/llava.json").size());
  EXPECT_EQ(sft_data["samples"].get<int64_t>(), conversations + 2 * curriculum_data["samples"].get<int64_t>())
      << sft_data.dump();
  // Each stage its own batch (configs/quick.toml: sft-curriculum-batch 4, sft-batch 8).
  for (auto [stage, batch] : {std::pair<const char*, int64_t>{"sft_curriculum", 4}, {"sft", 8}}) {
    std::ifstream metrics(out + "/" + stage + "/metrics.jsonl");
    std::string first;
    ASSERT_TRUE(std::getline(metrics, first)) << stage;
    EXPECT_EQ(mmb::Json::parse(first)["samples"].get<int64_t>(), batch) << stage << ": " << first;
  }
  // The recipe's SFT mix reached the world (configs/quick.toml: existence=9, the rest default).
  auto mix = mmb::read_json_file(out + "/world/world.json")["config"]["sft_qa_weights"];
  EXPECT_EQ(mix["existence"].get<double>(), 9.0) << mix.dump();
  EXPECT_EQ(mix["color"].get<double>(), 2.0) << mix.dump();
  auto results = mmb::read_json_file(out + "/results.json");
  for (const char* task : {"pope", "chair", "mc", "idk", "reasoning"}) EXPECT_TRUE(results.contains(task)) << task;
  EXPECT_NE(log.find("pope/adversarial"), std::string::npos) << log;  // the headline table

  // Rerun: every training phase is reused, the model file is untouched.
  const auto mtime = std::filesystem::last_write_time(out + "/sft/model/model.safetensors");
  log = run_capture(cmd, &status);
  ASSERT_EQ(status, 0) << log;
  for (const char* phase : {"world", "tokenizer", "clip", "sft-curriculum", "sft"})
    EXPECT_NE(log.find(std::string("phase ") + phase + ": already done"), std::string::npos) << phase << "\n" << log;
  EXPECT_EQ(std::filesystem::last_write_time(out + "/sft/model/model.safetensors"), mtime);

  // A changed setting re-runs its phase (and the ones after it), says what changed, keeps the old
  // output aside, and leaves the earlier phases alone.
  log = run_capture(cmd + " --sft-steps 6 --no-eval", &status);
  ASSERT_EQ(status, 0) << log;
  for (const char* phase : {"world", "tokenizer", "clip", "sft-curriculum"})
    EXPECT_NE(log.find(std::string("phase ") + phase + ": already done"), std::string::npos) << phase << "\n" << log;
  EXPECT_NE(log.find("phase sft: settings changed (sft)"), std::string::npos) << log;
  EXPECT_TRUE(std::filesystem::exists(out + "/sft.replaced/model/model.safetensors"));
  {
    std::ifstream metrics(out + "/sft/metrics.jsonl");
    std::string line, last;
    while (std::getline(metrics, line))
      if (line.find("\"step\"") != std::string::npos) last = line;
    EXPECT_EQ(mmb::Json::parse(last)["step"].get<int64_t>(), 6) << last;
  }
  // Back to the recipe's own settings: sft runs again (its fingerprint is the 6-step one now).
  log = run_capture(cmd + " --no-eval", &status);
  ASSERT_EQ(status, 0) << log;
  EXPECT_NE(log.find("phase sft: settings changed"), std::string::npos) << log;

  // The calibration study's tail: temperatures on val, evaluation with them.
  log = run_capture(mmb + " calibrate --model " + out + "/sft/model --data " + out +
                        "/world --fit-limit 30 --test-limit 30" + " --out " + out + "/calibrate",
                    &status);
  ASSERT_EQ(status, 0) << log;
  EXPECT_TRUE(std::filesystem::exists(out + "/sft/model/calibration.json"));
  log = run_capture(mmb + " eval --model " + out + "/sft/model --data " + out +
                        "/world --suite mc,pope --limit 10 --out " + out + "/eval_calibrated",
                    &status);
  ASSERT_EQ(status, 0) << log;
  auto cal = mmb::read_json_file(out + "/calibrate/results.json");
  auto after = mmb::read_json_file(out + "/eval_calibrated/results.json");
  // A 10-step model may give no option letter: then MC is reported as not fitted (T stays 1),
  // never silently dropped; yes/no always has logits to fit.
  ASSERT_TRUE(cal["yes_no"]["fitted"].get<bool>()) << cal.dump(2);
  EXPECT_TRUE(after["pope"]["random"].contains("calibration_uncalibrated")) << after["pope"].dump(2);
  if (cal["mc"]["fitted"].get<bool>())
    EXPECT_TRUE(after["mc"].contains("calibration_uncalibrated")) << after["mc"].dump(2);
  else
    EXPECT_FALSE(cal["mc"]["reason"].get<std::string>().empty());
}
