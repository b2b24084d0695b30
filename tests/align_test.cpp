// `mmb align`: the method table, and the phases a rerun skips or re-runs — exactly the ones a
// changed setting affects — on the shipped base model and a small world.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "mmb/align.h"
#include "mmb/atomic_file.h"
#include "test_util.h"

namespace {

const std::string kShipped = std::string(MMB_SOURCE_DIR) + "/models/base";
const std::string kMmb = std::string(MMB_BINARY_DIR) + "/mmb";

std::set<std::string> ran(const mmb::Json& summary) {
  std::set<std::string> names;
  for (auto& [name, seconds] : summary["seconds"].items()) names.insert(name);
  return names;
}

}  // namespace

TEST(Align, MethodsParseAndBadOnesAreNamed) {
  const auto one = mmb::parse_align_method("corrected");
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0]->name, "corrected");
  const auto two = mmb::parse_align_method("corrected + bpo");
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[1]->name, "bpo");
  EXPECT_TRUE(mmb::parse_align_method("online")[0]->online);
  mmb::testing::expect_throw_with([] { mmb::parse_align_method("povid"); },
                                  "unknown method 'povid' (csr, corrected, bpo, bdhs, online");
  mmb::testing::expect_throw_with([] { mmb::parse_align_method("bpo+bpo"); }, "named twice");
  mmb::testing::expect_throw_with([] { mmb::parse_align_method("online+csr"); }, "cannot be combined");
}

TEST(Align, ARerunSkipsDonePhasesAndAChangedSettingReRunsExactlyThoseAfterIt) {
  mmb::testing::TempDir tmp;
  int status = 0;
  const std::string out = mmb::testing::run_capture(
      kMmb + " world generate --config " + kShipped + "/world.toml --train 30 --val 0 --test 20 --shifted 0 --quiet --out " +
          tmp.file("world"),
      &status);
  ASSERT_EQ(status, 0) << out;
  mmb::AlignOptions o;
  o.model_dir = kShipped + "/vlm";
  o.world_dir = tmp.file("world");
  o.out = tmp.file("align");
  o.method = "corrected";
  o.rounds = 2;
  o.limit = 8;
  o.dpo.steps = 2;
  o.dpo.batch_size = 2;
  o.dpo.checkpoint_every = 1;
  o.eval = mmb::default_align_eval();
  o.eval.suite = {"pope", "chair"};
  o.eval.limit = 4;
  o.eval.progress = false;
  o.progress = false;
  const mmb::Json first = mmb::run_align(o, nullptr);
  EXPECT_EQ(ran(first), (std::set<std::string>{"round0 eval", "round1 pairs", "round1 dpo", "round1 eval",
                                               "round2 pairs", "round2 dpo", "round2 eval"}));
  ASSERT_EQ(first["rounds"].size(), 2u);
  EXPECT_GT(first["rounds"][0]["pairs"]["corrected"]["pairs"].get<int64_t>(), 0);
  EXPECT_TRUE(first["rounds"][1]["eval"].contains("chair_s"));
  EXPECT_EQ(first["rounds"][1]["start_model"], o.out + "/round1_dpo/model");
  EXPECT_TRUE(std::filesystem::exists(o.out + "/round2_eval/samples.jsonl"));
  EXPECT_TRUE(std::filesystem::exists(o.out + "/align.json"));

  // The same settings: nothing runs, the summary is the same.
  const mmb::Json again = mmb::run_align(o, nullptr);
  EXPECT_TRUE(ran(again).empty());
  EXPECT_EQ(again["rounds"], first["rounds"]);

  // Evaluation settings reach the evaluations only.
  o.eval.limit = 3;
  EXPECT_EQ(ran(mmb::run_align(o, nullptr)), (std::set<std::string>{"round0 eval", "round1 eval", "round2 eval"}));

  // A DPO setting re-runs round 1's training and everything after it, not round 1's pairs.
  o.dpo.lr = 1e-5;
  EXPECT_EQ(ran(mmb::run_align(o, nullptr)),
            (std::set<std::string>{"round1 dpo", "round1 eval", "round2 pairs", "round2 dpo", "round2 eval"}));
  EXPECT_TRUE(std::filesystem::exists(o.out + "/round1_dpo.replaced"));

  // A killed DPO phase (no final model) resumes from its checkpoint.
  std::filesystem::remove_all(o.out + "/round2_dpo/model");
  EXPECT_EQ(ran(mmb::run_align(o, nullptr)), (std::set<std::string>{"round2 dpo"}));
}
