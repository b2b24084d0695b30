// End-to-end checks of the `mmb` binary: version, help, --config precedence, run directories,
// and errors (non-zero exit, "error: ..." on stderr).
#include <sys/wait.h>

#include "mmb/atomic_file.h"
#include "mmb/json.h"
#include "test_util.h"

using mmb::testing::TempDir;

namespace {

struct Result {
  int status;
  std::string out;  // stdout and stderr together
};

Result run_mmb(const std::string& args) {
  std::string cmd = std::string(MMB_BINARY_DIR) + "/mmb " + args + " 2>&1";
  Result r{0, ""};
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int rc = ::pclose(p);
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return r;
}

}  // namespace

TEST(Cli, VersionNamesCommit) {
  Result r = run_mmb("--version");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("commit"), std::string::npos) << r.out;
}

TEST(Cli, HelpListsSubcommandsAndDefaults) {
  Result r = run_mmb("--help");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("info"), std::string::npos) << r.out;
  Result s = run_mmb("info --help");
  EXPECT_NE(s.out.find("--threads"), std::string::npos) << s.out;
  EXPECT_NE(s.out.find("1234"), std::string::npos) << "seed default not shown:\n" << s.out;
}

TEST(Cli, ConfigFileSetsFlagsAndFlagsOverrideIt) {
  TempDir d;
  mmb::write_file_atomic(d.file("c.toml"), "seed = 99\nthreads = 1\n");
  Result r = run_mmb("info --config " + d.file("c.toml") + " --out " + d.file("run"));
  ASSERT_EQ(r.status, 0) << r.out;
  auto m = mmb::read_json_file(d.file("run/manifest.json"));
  EXPECT_EQ(m["seed"], 99);
  EXPECT_EQ(m["config"]["threads"], 1);
  EXPECT_EQ(m["status"], "ok");
  Result o = run_mmb("info --config " + d.file("c.toml") + " --seed 5 --out " + d.file("run2"));
  ASSERT_EQ(o.status, 0) << o.out;
  EXPECT_EQ(mmb::read_json_file(d.file("run2/manifest.json"))["seed"], 5);
}

TEST(Cli, BadConfigAndBadFlagsFailClearly) {
  TempDir d;
  mmb::write_file_atomic(d.file("unknown.toml"), "no_such_flag = 3\n");
  Result r = run_mmb("info --config " + d.file("unknown.toml"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("error: config: unknown key 'info.no_such_flag'"), std::string::npos) << r.out;
  mmb::write_file_atomic(d.file("broken.toml"), "seed = = 3\n");
  Result b = run_mmb("info --config " + d.file("broken.toml"));
  EXPECT_NE(b.status, 0);
  EXPECT_NE(b.out.find("line 1"), std::string::npos) << b.out;
  Result m = run_mmb("info --config " + d.file("absent.toml"));
  EXPECT_NE(m.status, 0);
  Result f = run_mmb("info --threads notanumber");
  EXPECT_NE(f.status, 0);
}

TEST(Cli, ConfigReachesNestedSubcommandsAndManifestNamesLibraries) {
  TempDir d;
  // Top-level keys are the chosen subcommand's flag names; a [world.generate] table targets it too.
  mmb::write_file_atomic(d.file("w.toml"), "train = 3\nval = 1\ntest = 2\nshifted = 1\nseed = 7\n");
  Result r = run_mmb("world generate --config " + d.file("w.toml") + " --test 1 --quiet --out " + d.file("w"));
  ASSERT_EQ(r.status, 0) << r.out;
  auto m = mmb::read_json_file(d.file("w/manifest.json"));
  EXPECT_EQ(m["seed"], 7);
  EXPECT_EQ(m["config"]["train"], 3);
  EXPECT_EQ(m["config"]["test"], 1);  // the flag beat the file
  auto world = mmb::read_json_file(d.file("w/world.json"));
  EXPECT_EQ(world["splits"]["train"], 3);
  EXPECT_EQ(world["splits"]["test"], 1);
  // What the numbers depend on: libtorch and OpenBLAS, cores and the BLAS library's path.
  ASSERT_TRUE(m.contains("libraries")) << m.dump(2);
  EXPECT_FALSE(m["libraries"]["libtorch"].get<std::string>().empty());
  EXPECT_NE(m["libraries"]["blas"].get<std::string>().find("OpenBLAS"), std::string::npos);
  EXPECT_GT(m["machine"]["cores"].get<int>(), 0);
  mmb::write_file_atomic(d.file("t.toml"), "[world.generate]\ntrain = 2\nval = 1\ntest = 1\nshifted = 1\n");
  Result t = run_mmb("world generate --config " + d.file("t.toml") + " --quiet --out " + d.file("w2"));
  ASSERT_EQ(t.status, 0) << t.out;
  EXPECT_EQ(mmb::read_json_file(d.file("w2/world.json"))["splits"]["train"], 2);
}
