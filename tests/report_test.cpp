// The HTML report: a fake run directory (results.json built with calibration_summary, a
// metrics.jsonl, a manifest, a world image, samples) rendered and checked for its tables, charts,
// embedded image and escaping; two runs side by side; errors; the command; and a headless
// Chromium screenshot proving the page renders (Chromium comes from scripts/setup).
#include <sys/wait.h>

#include <cstdio>
#include <random>
#include <set>

#include "mmb/atomic_file.h"
#include "mmb/image.h"
#include "mmb/json.h"
#include "mmb/metrics.h"
#include "mmb/report.h"
#include "test_util.h"

using mmb::Json;
using mmb::testing::expect_throw_with;
using mmb::testing::TempDir;

namespace {

// Made-up, overconfident predictions: correct with probability confidence - 0.15.
Json made_up_summary(unsigned seed, int n) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<double> conf;
  std::vector<bool> correct;
  for (int i = 0; i < n; ++i) {
    conf.push_back(0.3 + 0.7 * u(rng));
    correct.push_back(u(rng) < conf.back() - 0.15);
  }
  return mmb::calibration_summary(conf, correct);
}

// Shaped like run_eval's results: three calibration summaries (pope/random, pope/adversarial, mc).
Json fake_results(unsigned seed, double mc_accuracy) {
  Json r;
  r["split"] = "test";
  r["suite"] = {"pope", "mc", "idk"};
  r["definition"] = mmb::calibration_definition(10);
  r["seconds"] = {{"total", 12.5}, {"pope", 4.25}};
  r["pope"]["random"] = {{"f1", 0.8}, {"accuracy", 0.81}, {"n", 100}, {"calibration", made_up_summary(seed, 100)}};
  r["pope"]["adversarial"] = {
      {"f1", 0.6}, {"accuracy", 0.62}, {"n", 100}, {"calibration", made_up_summary(seed + 1, 100)}};
  r["pope"]["mean_f1"] = 0.7;
  r["mc"] = {{"accuracy", mc_accuracy},
             {"n", 300},
             {"style", "calibration-study"},
             {"calibration", made_up_summary(seed + 2, 300)}};
  r["idk"]["modality"]["image"] = {{"mean_entropy", 0.4}, {"n", 50}};
  return r;
}

Json fake_samples() {
  return Json::array(
      {{{"task", "pope"}, {"group", "pope/random"}, {"question_id", 1}, {"image", "images/test_000000.png"},
        {"question", "Is there a star in the image?"}, {"answer", "Yes."}, {"label", "yes"}, {"prediction", "yes"},
        {"confidence", 0.9}, {"correct", true}},
       {{"task", "pope"}, {"group", "pope/adversarial"}, {"question_id", 2}, {"image", "images/missing.png"},
        {"question", "Is there a moon in the picture?"}, {"answer", "Yes."}, {"label", "no"},
        {"prediction", "yes"}, {"confidence", 0.7}, {"correct", false}},
       {{"task", "mc"}, {"group", "mc/colour"}, {"question_id", 3}, {"image", "images/test_000000.png"},
        {"question", "Which colour? <b>A</b> red"}, {"answer", "<script>alert('x')</script> & more"},
        {"label", "A"}, {"prediction", "B"}, {"confidence", 0.55}, {"correct", false}}});
}

mmb::Image gradient_image() {
  mmb::Image im(32, 32, 3);
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 32; ++x) {
      uint8_t* p = im.at(x, y);
      p[0] = uint8_t(x * 8), p[1] = uint8_t(y * 8), p[2] = 128;
    }
  return im;
}

// RUN/{manifest.json, metrics.jsonl, results.json, world/images/test_000000.png, sft/metrics.jsonl}.
// Samples go into results.json, or into samples.jsonl beside it (as `mmb eval --out` writes them).
void make_run(const std::string& dir, unsigned seed, double mc_accuracy, bool samples_in_results) {
  Json results = fake_results(seed, mc_accuracy);
  if (samples_in_results) {
    results["samples"] = fake_samples();
  } else {
    std::string lines;
    for (const auto& s : fake_samples()) lines += s.dump() + "\n";
    mmb::write_file_atomic(dir + "/samples.jsonl", lines);
  }
  mmb::write_json_file(dir + "/results.json", results);
  mmb::write_json_file(dir + "/manifest.json",
                       {{"command", {"mmb", "train", "base", "--out", dir}}, {"git_commit", "abc1234"}, {"seed", 7},
                        {"start_time", "2026-12-01T09:00:00Z"}, {"end_time", "2026-12-01T09:15:00Z"},
                        {"status", "ok"}, {"config", {{"seed", 7}, {"out", dir}}}, {"machine", {{"cores", 2}}}});
  mmb::write_file_atomic(dir + "/metrics.jsonl",
                         "{\"phase\":\"world\",\"seconds\":10.5,\"wall_s\":10.5}\n"
                         "{\"phase\":\"sft\",\"seconds\":300,\"wall_s\":311}\n");
  std::string sft;
  for (int step = 1; step <= 60; ++step)
    sft += Json({{"step", step}, {"loss", 3.0 / (1 + 0.1 * step) + 0.05 * (step % 3)}, {"lr", 0.002},
                 {"grad_norm", 1.0 + 0.01 * step}, {"wall_s", 0.5 * step}})
               .dump() +
           "\n";
  mmb::write_file_atomic(dir + "/sft/metrics.jsonl", sft);
  mmb::write_png(dir + "/world/images/test_000000.png", gradient_image());
}

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

// The first table row whose data-key is `key`.
std::string row_of(const std::string& html, const std::string& key) {
  const size_t p = html.find("<tr data-key=\"" + key + "\"");
  if (p == std::string::npos) return "";
  return html.substr(p, html.find("</tr>", p) - p);
}

struct Shell {
  int status;
  std::string out;
};

Shell run_shell(const std::string& cmd) {
  Shell r{0, ""};
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int rc = ::pclose(p);
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return r;
}

}  // namespace

TEST(Report, EscapeAndBase64) {
  EXPECT_EQ(mmb::html_escape("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
  EXPECT_EQ(mmb::base64_encode(""), "");
  EXPECT_EQ(mmb::base64_encode("f"), "Zg==");
  EXPECT_EQ(mmb::base64_encode("fo"), "Zm8=");
  EXPECT_EQ(mmb::base64_encode("foo"), "Zm9v");
  EXPECT_EQ(mmb::base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(mmb::base64_encode(std::string("\xff\x00\x80", 3)), "/wCA");
}

TEST(Report, RendersTablesChartsCurvesAndExamples) {
  TempDir d;
  const std::string run = d.file("demo");
  make_run(run, 1, 0.5, /*samples_in_results=*/true);
  mmb::ReportOptions o;
  o.runs = {run};
  mmb::ReportStats stats;
  const std::string html = mmb::render_report(o, &stats);

  // Tables: flattened keys, the headline, setup scalars; no curve arrays.
  EXPECT_NE(html.find("<tr data-key=\"pope/adversarial/f1\">"), std::string::npos);
  EXPECT_NE(html.find("<tr data-key=\"mc/calibration/ece\">"), std::string::npos);
  EXPECT_NE(html.find("<tr data-key=\"idk/modality/image/mean_entropy\">"), std::string::npos);
  EXPECT_NE(html.find("<tr data-key=\"split\">"), std::string::npos);
  EXPECT_NE(html.find("<tr data-headline=\"mc/accuracy\">"), std::string::npos);
  EXPECT_EQ(html.find("data-key=\"mc/calibration/risk_coverage"), std::string::npos);
  EXPECT_EQ(html.find("data-key=\"mc/calibration/reliability"), std::string::npos);
  EXPECT_EQ(count(row_of(html, "mc/accuracy"), "<td"), 1u) << row_of(html, "mc/accuracy");
  EXPECT_NE(html.find(mmb::html_escape(mmb::calibration_definition(10))), std::string::npos);

  // One reliability diagram and one risk-coverage curve per calibration summary.
  EXPECT_EQ(stats.result_sets, 1);
  EXPECT_EQ(stats.calibration_charts, 3);
  EXPECT_EQ(count(html, "<svg class=\"chart reliability\""), 3u);
  EXPECT_EQ(count(html, "<svg class=\"chart risk-coverage\""), 3u);
  EXPECT_NE(html.find("id=\"cal-pope-adversarial-calibration\""), std::string::npos);
  char ece[32];
  std::snprintf(ece, sizeof ece, "ECE %.3f", fake_results(1, 0.5)["mc"]["calibration"]["ece"].get<double>());
  EXPECT_NE(html.find(ece), std::string::npos) << ece;

  // The training curve (sft/metrics.jsonl) and the recipe's phase times.
  EXPECT_EQ(stats.training_curves, 1);
  EXPECT_NE(html.find("id=\"training-sft\""), std::string::npos);
  EXPECT_NE(html.find("sft: loss"), std::string::npos);
  EXPECT_NE(html.find("world 10.500 s"), std::string::npos);

  // Manifest summary.
  EXPECT_NE(html.find("mmb train base --out"), std::string::npos);
  EXPECT_NE(html.find("abc1234"), std::string::npos);

  // Examples: the image embedded as the exact PNG, the missing one named, text escaped.
  EXPECT_EQ(stats.examples, 3);
  EXPECT_EQ(stats.images, 2);
  const std::string png = mmb::base64_encode(mmb::encode_png(gradient_image()));
  EXPECT_NE(html.find("src=\"data:image/png;base64," + png + "\""), std::string::npos);
  EXPECT_NE(html.find("images/missing.png"), std::string::npos);
  EXPECT_NE(html.find("Is there a moon in the picture?"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"), std::string::npos);
  EXPECT_NE(html.find("Which colour? &lt;b&gt;A&lt;/b&gt; red"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<b>A</b> red"), std::string::npos);

  // Self-contained: nothing fetched from elsewhere.
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
  EXPECT_EQ(html.find("href=\"http"), std::string::npos);
  EXPECT_EQ(html.find("url(http"), std::string::npos);
  EXPECT_EQ(html.find("@import"), std::string::npos);
}

TEST(Report, TwoRunsSideBySideWithDelta) {
  TempDir d;
  make_run(d.file("before"), 1, 0.5, /*samples_in_results=*/true);
  make_run(d.file("after"), 2, 0.625, /*samples_in_results=*/false);
  mmb::ReportOptions o;
  o.runs = {d.file("before"), d.file("after")};
  o.title = "before vs after <temperature>";
  mmb::ReportStats stats;
  const std::string html = mmb::render_report(o, &stats);
  EXPECT_EQ(stats.result_sets, 2);
  EXPECT_NE(html.find("<th>before</th><th>after</th><th title=\"second minus first\">Δ</th>"), std::string::npos);
  const std::string mc = row_of(html, "mc/accuracy");
  EXPECT_EQ(count(mc, "<td"), 3u) << mc;  // before, after, delta
  EXPECT_NE(mc.find("<td>0.500</td><td>0.625</td><td class=\"delta better\">+0.125</td>"), std::string::npos) << mc;
  // Reliability diagrams next to each other, risk-coverage curves overlaid.
  EXPECT_EQ(count(html, "<svg class=\"chart reliability\""), 6u);
  EXPECT_EQ(count(html, "<svg class=\"chart risk-coverage\""), 3u);
  EXPECT_EQ(stats.training_curves, 2);
  EXPECT_EQ(stats.examples, 6);  // samples.jsonl beside results.json is read too
  EXPECT_NE(html.find("<h1>before vs after &lt;temperature&gt;</h1>"), std::string::npos);
}

TEST(Report, SubdirectoryResultsAreColumns) {
  TempDir d;
  make_run(d.file("run"), 1, 0.5, true);
  Json cal = fake_results(5, 0.75);
  mmb::write_json_file(d.file("run/eval_calibrated/results.json"), cal);
  mmb::ReportOptions o;
  o.runs = {d.file("run")};
  mmb::ReportStats stats;
  const std::string html = mmb::render_report(o, &stats);
  EXPECT_EQ(stats.result_sets, 2);
  EXPECT_NE(html.find("<th>run/eval_calibrated</th>"), std::string::npos);
  EXPECT_NE(row_of(html, "mc/accuracy").find("+0.250"), std::string::npos) << row_of(html, "mc/accuracy");
}

TEST(Report, AlignmentRoundsAreATableAndCurves) {
  TempDir d;
  make_run(d.file("align/round1_eval"), 1, 0.5, true);
  const Json align = Json::parse(R"({"method": "corrected", "start": {"model": "m", "eval": {
      "chair_s": 0.217, "chair_i": 0.106, "pope_adversarial": 0.726, "mention_recall": 0.639}},
    "rounds": [
      {"round": 1, "pairs": {"corrected": {"pairs": 1003}, "stats": {}}, "eval": {
        "chair_s": 0.209, "chair_i": 0.097, "pope_adversarial": 0.727, "mention_recall": 0.641}},
      {"round": 2, "eval": {"chair_s": 0.200, "chair_i": 0.093, "pope_adversarial": 0.729, "mention_recall": 0.650}}]})");
  mmb::write_json_file(d.file("align/align.json"), align);
  mmb::ReportOptions o;
  o.runs = {d.file("align")};
  mmb::ReportStats stats;
  const std::string html = mmb::render_report(o, &stats);
  EXPECT_EQ(stats.alignment_tables, 1);
  const size_t at = html.find("<section id=\"alignment\">");
  ASSERT_NE(at, std::string::npos);
  const std::string section = html.substr(at, html.find("</section>", at) - at);
  EXPECT_NE(section.find("align: corrected"), std::string::npos);
  for (const char* row : {"0 (start)", "1", "2"})
    EXPECT_NE(section.find(std::string("data-round=\"") + row + "\""), std::string::npos) << row;
  EXPECT_NE(section.find("<td>1003</td>"), std::string::npos);    // round 1's pairs
  EXPECT_NE(section.find("<td>online</td>"), std::string::npos);  // round 2 built none
  EXPECT_NE(section.find("0.093"), std::string::npos);
  EXPECT_EQ(section.find("POPE rnd"), std::string::npos);  // a number no round has is not a column
  size_t charts = 0;
  for (size_t p = section.find("<svg"); p != std::string::npos; p = section.find("<svg", p + 1)) ++charts;
  EXPECT_EQ(charts, 3u);  // hallucination, POPE, recall and accuracy
  mmb::write_file_atomic(d.file("align/align.json"), "{\"method\": \"csr\"}");
  expect_throw_with([&] { mmb::render_report(o); }, d.file("align/align.json") + ": expected mmb align's summary");
}

TEST(Report, ErrorsNameTheProblem) {
  TempDir d;
  mmb::ReportOptions o;
  expect_throw_with([&] { mmb::render_report(o); }, "no run directories");
  o.runs = {d.file("absent")};
  expect_throw_with([&] { mmb::render_report(o); }, "run directory not found: " + d.file("absent"));
  mmb::make_dirs(d.file("empty/sub"));
  o.runs = {d.file("empty")};
  expect_throw_with([&] { mmb::render_report(o); }, "has no results.json and no metrics.jsonl");
  mmb::write_file_atomic(d.file("bad/results.json"), "{\"pope\": {");
  o.runs = {d.file("bad")};
  expect_throw_with([&] { mmb::render_report(o); }, "malformed results " + d.file("bad/results.json"));
  mmb::write_file_atomic(d.file("arr/results.json"), "[1, 2]");
  o.runs = {d.file("arr")};
  expect_throw_with([&] { mmb::render_report(o); }, d.file("arr/results.json") + ": expected a JSON object");
  // Training only (no results) is a valid run.
  make_run(d.file("ok"), 1, 0.5, true);
  mmb::write_file_atomic(d.file("train_only/metrics.jsonl"), "{\"step\":1,\"loss\":2.0}\n{\"step\":2,\"loss\":1.5}\n");
  o.runs = {d.file("train_only")};
  mmb::ReportStats stats;
  EXPECT_NE(mmb::render_report(o, &stats).find("id=\"training-train\""), std::string::npos);
  EXPECT_EQ(stats.result_sets, 0);
}

TEST(Report, CommandWritesThePageAndPrintsItsPath) {
  TempDir d;
  make_run(d.file("run"), 1, 0.5, true);
  const std::string mmb = std::string(MMB_BINARY_DIR) + "/mmb";
  Shell r = run_shell(mmb + " report " + d.file("run") + " --html " + d.file("out/page.html") +
                    " --title 'My report' 2>/dev/null");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out, d.file("out/page.html") + "\n");
  EXPECT_NE(mmb::read_file(d.file("out/page.html")).find("<h1>My report</h1>"), std::string::npos);
  Shell def = run_shell(mmb + " report " + d.file("run") + "/ 2>/dev/null");
  ASSERT_EQ(def.status, 0) << def.out;
  EXPECT_EQ(def.out, d.file("run") + "/report.html\n");
  EXPECT_NE(mmb::read_file(d.file("run/report.html")).find("<svg class=\"chart reliability\""), std::string::npos);
  Shell bad = run_shell(mmb + " report " + d.file("nope") + " 2>&1");
  EXPECT_EQ(bad.status, 1) << bad.out;
  EXPECT_NE(bad.out.find("error: render_report: run directory not found"), std::string::npos) << bad.out;
}

// Renders the page in headless Chromium: the screenshot must exist, decode and show many colours
// (text, charts, the embedded image), and the DOM must hold the charts.
TEST(Report, HeadlessChromiumRendersThePage) {
  const Shell which = run_shell("command -v chromium || command -v chromium-browser || command -v google-chrome");
  std::string chromium = which.out.substr(0, which.out.find('\n'));
  ASSERT_FALSE(chromium.empty()) << "chromium not found: run scripts/setup (installs Debian's chromium package)";
  TempDir d;
  make_run(d.file("run"), 1, 0.5, true);
  mmb::ReportOptions o;
  o.runs = {d.file("run")};
  mmb::write_report(o, d.file("report.html"));
  const std::string flags = " --headless --no-sandbox --disable-gpu --disable-quic --no-first-run"
                            " --disable-background-networking --disable-component-update --disable-sync"
                            " --hide-scrollbars --user-data-dir=" + d.file("profile");
  const std::string shot = std::string(MMB_BINARY_DIR) + "/report_test_screenshot.png";
  std::remove(shot.c_str());
  Shell s = run_shell("timeout 60 " + chromium + flags + " --window-size=1200,2400 --screenshot=" + shot +
                    " file://" + d.file("report.html") + " 2>&1");
  ASSERT_EQ(s.status, 0) << s.out;
  mmb::Image im = mmb::read_image(shot, 3);
  EXPECT_EQ(im.width, 1200);
  EXPECT_EQ(im.height, 2400);
  std::set<uint32_t> colours;
  size_t not_background = 0;
  for (int y = 0; y < im.height; ++y)
    for (int x = 0; x < im.width; ++x) {
      const uint8_t* p = im.at(x, y);
      colours.insert(uint32_t(p[0]) << 16 | uint32_t(p[1]) << 8 | p[2]);
      not_background += !(p[0] == 0xf5 && p[1] == 0xf7 && p[2] == 0xfa) && !(p[0] == 255 && p[1] == 255 && p[2] == 255);
    }
  EXPECT_GT(colours.size(), 200u) << "screenshot " << shot << " looks blank";
  EXPECT_GT(double(not_background) / (double(im.width) * im.height), 0.02) << shot;
  Shell dom = run_shell("timeout 60 " + chromium + flags + " --dump-dom file://" + d.file("report.html") +
                      " 2>/dev/null");
  ASSERT_EQ(dom.status, 0);
  EXPECT_EQ(count(dom.out, "class=\"chart reliability\""), 3u);
  EXPECT_NE(dom.out.find("data:image/png;base64,"), std::string::npos);
}
