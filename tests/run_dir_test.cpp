#include "mmb/run_dir.h"

#include "mmb/jsonl.h"
#include "mmb/progress.h"
#include "test_util.h"

using mmb::testing::TempDir;

TEST(RunDir, WritesManifestAndMetrics) {
  TempDir d;
  const std::string dir = d.file("run1");
  {
    mmb::RunInfo info;
    info.argv = {"mmb", "world", "generate"};
    info.config = {{"seed", 7}, {"threads", 2}};
    info.seed = 7;
    mmb::RunDir run(dir, info);
    auto m = mmb::read_json_file(dir + "/manifest.json");
    EXPECT_EQ(m["status"], "running");
    run.log_metrics({{"step", 1}, {"loss", 2.5}});
    run.log_metrics({{"phase", "eval"}});
    mmb::testing::expect_throw_with([&] { run.log_metrics({{"loss", 1.0}}); }, "\"step\" or \"phase\"");
    run.set_result("accuracy", 0.9);
    run.finish();
  }
  auto m = mmb::read_json_file(dir + "/manifest.json");
  EXPECT_EQ(m["status"], "ok");
  EXPECT_EQ(m["seed"], 7);
  EXPECT_EQ(m["command"][1], "world");
  EXPECT_EQ(m["config"]["threads"], 2);
  EXPECT_EQ(m["results"]["accuracy"], 0.9);
  EXPECT_TRUE(m.contains("git_commit"));
  EXPECT_TRUE(m["machine"].contains("cores"));
  EXPECT_TRUE(m["machine"].contains("blas"));
  EXPECT_TRUE(m.contains("end_time"));
  auto rows = mmb::read_jsonl_file(dir + "/metrics.jsonl");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["step"], 1);
  EXPECT_TRUE(rows[0].contains("wall_s"));
  EXPECT_EQ(rows[1]["phase"], "eval");
}

TEST(RunDir, UnfinishedRunIsMarkedFailed) {
  TempDir d;
  { mmb::RunDir run(d.file("r"), {}); }
  EXPECT_EQ(mmb::read_json_file(d.file("r/manifest.json"))["status"], "failed");
}

TEST(Progress, LineShowsCountRateAndEta) {
  mmb::Progress p("generate", 200, "samples", 1e9);
  p.tick(50);
  std::string line = p.line();
  EXPECT_NE(line.find("generate: 50/200 (25%)"), std::string::npos) << line;
  EXPECT_NE(line.find("samples/s"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA"), std::string::npos) << line;
  p.done();
}
