// End-to-end checks of the `mmb` binary: version, help, --config precedence, run directories,
// and errors (non-zero exit, "error: ..." on stderr).
#include <sys/wait.h>

#include <cctype>

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
  // "mmb <version> (commit <7+ hex digits>[-dirty])": the build knows its commit.
  const size_t at = r.out.find("(commit ");
  ASSERT_NE(at, std::string::npos) << r.out;
  size_t hex = 0;
  while (std::isxdigit(static_cast<unsigned char>(r.out[at + 8 + hex]))) ++hex;
  EXPECT_GE(hex, 7u) << "no commit hash in: " << r.out;
  EXPECT_EQ(r.out.rfind("mmb ", 0), 0u) << r.out;
}

TEST(Cli, HelpListsSubcommandsAndDefaults) {
  Result r = run_mmb("--help");
  EXPECT_EQ(r.status, 0);
  for (const char* c : {"info", "world", "tokenizer", "model", "generate", "score", "eval", "calibrate",
                        "prompt-search", "metrics", "report", "prefs", "boundary", "train", "align"})
    EXPECT_NE(r.out.find(std::string("\n  ") + c + " "), std::string::npos) << c << " not listed:\n" << r.out;
  Result s = run_mmb("info --help");
  EXPECT_EQ(s.status, 0);
  EXPECT_NE(s.out.find("--threads"), std::string::npos) << s.out;
  EXPECT_NE(s.out.find("--seed"), std::string::npos) << s.out;
  EXPECT_NE(s.out.find("1234"), std::string::npos) << "seed default not shown:\n" << s.out;
  // Every group lists its own commands, and options show their defaults.
  Result t = run_mmb("train --help");
  for (const char* c : {"sft", "clip", "dpo", "base"})
    EXPECT_NE(t.out.find(std::string("\n  ") + c + " "), std::string::npos) << c << " not listed:\n" << t.out;
  Result p = run_mmb("prefs --help");
  for (const char* c : {"csr", "corrected", "bpo", "bdhs", "stats"})
    EXPECT_NE(p.out.find(std::string("\n  ") + c + " "), std::string::npos) << c << " not listed:\n" << p.out;
  Result a = run_mmb("align --help");
  for (const char* c : {"csr:", "corrected:", "bpo:", "bdhs:", "online:", "--rounds", "--mix-online", "--avg-gamma"})
    EXPECT_NE(a.out.find(c), std::string::npos) << c << " not in align's help:\n" << a.out;
  Result g = run_mmb("generate --help");
  for (const char* o :
       {"--max-new-tokens", "--temperature", "--top-p", "--repetition-penalty", "--no-repeat-ngram-size"})
    EXPECT_NE(g.out.find(o), std::string::npos) << o << ":\n" << g.out;
  EXPECT_NE(g.out.find("--max-new-tokens INT=64"), std::string::npos) << "max-new-tokens default not shown:\n" << g.out;
}

TEST(Cli, UnknownCommandsAreErrorsThatNameThemAndListTheRealOnes) {
  Result top = run_mmb("frobnicate");
  EXPECT_EQ(top.status, 2) << top.out;
  EXPECT_NE(top.out.find("error: unknown command 'mmb frobnicate'"), std::string::npos) << top.out;
  EXPECT_NE(top.out.find("train"), std::string::npos) << top.out;
  // --help after an unknown subcommand must not print the parent's help and succeed.
  Result sub = run_mmb("train ppo --help");
  EXPECT_EQ(sub.status, 2) << sub.out;
  EXPECT_NE(sub.out.find("unknown command 'mmb train ppo' (mmb train has: sft, clip, dpo, rl, base)"), std::string::npos)
      << sub.out;
  Result none = run_mmb("train");
  EXPECT_EQ(none.status, 2) << none.out;
  EXPECT_NE(none.out.find("'mmb train' needs a command: sft, clip, dpo, rl, base"), std::string::npos) << none.out;
  EXPECT_EQ(run_mmb("train --help").status, 0);
  EXPECT_EQ(run_mmb("world stats --help").status, 0);
}

TEST(Cli, HelpShowsExamplesAndFlagsWithoutValues) {
  for (const char* c : {"eval", "calibrate", "prompt-search", "generate", "score", "metrics", "report", "train sft",
                        "train dpo", "train base", "world generate", "tokenizer encode", "model init"}) {
    Result r = run_mmb(std::string(c) + " --help");
    EXPECT_EQ(r.status, 0) << c;
    EXPECT_NE(r.out.find("Examples:\n  mmb " + std::string(c).substr(0, std::string(c).find(' '))), std::string::npos)
        << c << ":\n"
        << r.out;
    EXPECT_EQ(r.out.find("{false}"), std::string::npos) << c << ":\n" << r.out;
    EXPECT_EQ(r.out.find("{true}"), std::string::npos) << c << ":\n" << r.out;
  }
}

TEST(Cli, TokenizerEncodeUsesTheModelDirectorysChatTemplate) {
  TempDir d;
  std::string corpus;
  const char* colors[] = {"red", "blue", "green", "yellow", "purple", "gray"};
  const char* shapes[] = {"cube", "sphere", "cylinder", "cone", "torus", "star", "ring"};
  for (int i = 0; i < 3000; ++i)
    corpus += std::string("Is there a ") + colors[i % 6] + " " + shapes[(i / 6) % 7] + " left of the " +
              colors[(i / 42) % 6] + " " + shapes[i % 7] + "? There are " + std::to_string(i % 13) + ".\n";
  mmb::write_file_atomic(d.file("corpus.txt"), corpus);
  Result t = run_mmb("tokenizer train --corpus " + d.file("corpus.txt") + " --vocab-size 400 --out " + d.file("tok"));
  ASSERT_EQ(t.status, 0) << t.out;
  mmb::write_file_atomic(d.file("tok/chat_template.json"), R"({"name": "vicuna_v1", "system": "Zebra talk."})");
  for (const std::string& model : {d.file("tok"), d.file("tok/tokenizer.model")}) {
    Result r = run_mmb("tokenizer encode --model " + model + " --text \"Is there a circle?\" --chat --json");
    ASSERT_EQ(r.status, 0) << r.out;
    const std::string json = r.out.substr(r.out.rfind("\n{") + 1);  // after the log lines
    EXPECT_EQ(mmb::Json::parse(json)["text"].get<std::string>().rfind("Zebra talk. USER: <image>", 0), 0u) << r.out;
  }
  Result v = run_mmb("tokenizer encode --model " + d.file("tok") + " --text Q --chat --json --template vicuna_v1");
  ASSERT_EQ(v.status, 0) << v.out;
  EXPECT_EQ(mmb::Json::parse(v.out.substr(v.out.rfind("\n{") + 1))["text"].get<std::string>().find("Zebra"),
            std::string::npos)
      << v.out;
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
