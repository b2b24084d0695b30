// generate_world: samples, renders and writes a whole world. Scenes are processed in chunks;
// within a chunk, worker threads render, encode and write the PNGs and serialise each scene's
// records; the calling thread then appends the records in index order, so the files are
// byte-identical whatever the thread count.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>

#include "mmb/atomic_file.h"
#include "mmb/error.h"
#include "mmb/progress.h"
#include "mmb/threads.h"
#include "mmb/world_tasks.h"
#include "stats.h"

namespace mmb::world {
namespace {

constexpr int64_t kChunk = 256;               // scenes per chunk
constexpr int64_t kMinStatsScenes = 1000;     // train scene graphs behind POPE's statistics

Json turn(const char* from, const std::string& value) {
  return Json{{"from", from}, {"value", value}};
}

Json llava_record(const Scene& s, const std::string& suffix, const char* task,
                  const std::vector<std::pair<std::string, std::string>>& turns) {
  Json conv = Json::array();
  for (size_t i = 0; i < turns.size(); ++i) {
    conv.push_back(turn("human", i == 0 ? "<image>\n" + turns[i].first : turns[i].first));
    conv.push_back(turn("gpt", turns[i].second));
  }
  return Json{{"id", s.id + suffix}, {"image", s.image_path()}, {"task", task},
              {"conversations", conv}};
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? " " : "") + parts[i];
  return out;
}

// Everything one scene contributes, serialised by a worker thread.
struct SceneOutput {
  Scene scene;
  std::string scene_line;
  std::vector<std::string> llava;  // compact JSON records
  std::vector<Json> pope;          // question_id is assigned in order by the writer
  std::string mc, reasoning, idk, captions;  // JSONL lines, each ending in '\n'
  int64_t samples = 0, png_bytes = 0;
};

void append_line(std::string& out, const Json& j) {
  out += j.dump();
  out += '\n';
}

void build_scene(const WorldConfig& config, uint64_t seed, Split split, int64_t index,
                 const ShapeStats& stats, const std::string& dir, SceneOutput& out) {
  out = SceneOutput{};
  Scene s = sample_scene(config, seed, split, index);
  Image img = render_scene(s, seed);
  std::string png = encode_png(img);
  out.png_bytes = int64_t(png.size());
  write_file_atomic(dir + "/" + s.image_path(), png);
  SceneTasks t = make_tasks(s, config, stats, seed);
  out.samples = t.sample_count();
  out.scene_line = scene_to_json(s).dump();

  out.llava.push_back(
      llava_record(s, "_desc", "description", {{t.description_prompt, join(t.description)}})
          .dump());
  std::vector<std::pair<std::string, std::string>> qa;
  for (const QA& q : t.qa) qa.emplace_back(q.question, q.answer);
  if (!qa.empty()) out.llava.push_back(llava_record(s, "_qa", "qa", qa).dump());
  for (size_t i = 0; i < t.reasoning.size(); ++i)
    out.llava.push_back(llava_record(s, "_reason" + std::to_string(i), "reasoning",
                                     {{t.reasoning[i].question, t.reasoning[i].text()}})
                            .dump());
  // Multiple choice in two wordings, alternating by scene: the world's ("Answer with the
  // option's letter ...", answer "C") and the calibration study's ("Please provide the option letter
  // directly.", answer "(C)"), so the letter method works in both `mmb eval --mc-style`s.
  for (size_t i = 0; i < t.mc.size(); ++i) {
    const std::string letter(1, char('A' + t.mc[i].answer));
    const bool study_style = (index + int64_t(i)) % 2 == 1;
    out.llava.push_back(llava_record(s, "_mc" + std::to_string(i), "mc",
                                     {{study_style ? t.mc[i].study_prompt() : t.mc[i].prompt(),
                                       study_style ? "(" + letter + ")" : letter}})
                            .dump());
  }

  for (const PopeQuestion& q : t.pope)
    out.pope.push_back(Json{{"question_id", 0},
                            {"image", s.image_path()},
                            {"text", q.text},
                            {"label", q.label ? "yes" : "no"},
                            {"category", q.category},
                            {"scene", s.id}});
  for (size_t i = 0; i < t.mc.size(); ++i) {
    const McQuestion& m = t.mc[i];
    append_line(out.mc, Json{{"question_id", s.id + "_mc" + std::to_string(i)},
                             {"image", s.image_path()},
                             {"question", m.question},
                             {"options", m.options},
                             {"answer", std::string(1, char('A' + m.answer))},
                             {"answer_text", m.options[m.answer]},
                             {"category", m.category},
                             {"prompt", m.prompt()}});
  }
  for (size_t i = 0; i < t.reasoning.size(); ++i) {
    const ReasoningChain& r = t.reasoning[i];
    append_line(out.reasoning, Json{{"question_id", s.id + "_reason" + std::to_string(i)},
                                    {"image", s.image_path()},
                                    {"question", r.question},
                                    {"perception", r.perception},
                                    {"reasoning", r.reasoning},
                                    {"final", r.final_step},
                                    {"answer", r.canonical},
                                    {"category", r.category},
                                    {"text", r.text()}});
  }
  for (size_t i = 0; i < t.idk.size(); ++i) {
    const QA& q = t.idk[i];
    append_line(out.idk, Json{{"question_id", s.id + "_idk" + std::to_string(i)},
                              {"image", s.image_path()},
                              {"question", q.question},
                              {"answer", q.answer},
                              {"canonical", q.canonical},
                              {"answerable", q.answerable},
                              {"category", q.category}});
  }
  append_line(out.captions, Json{{"image", s.image_path()},
                                 {"caption", t.caption},
                                 {"sentences", t.description}});
  out.scene = std::move(s);
}

// The files of one split.
struct SplitFiles {
  std::unique_ptr<AtomicFile> llava, pope, mc, reasoning, idk, captions;
  bool llava_first = true;
  int64_t pope_id = 0;

  explicit SplitFiles(const std::string& dir) {
    llava = std::make_unique<AtomicFile>(dir + "/llava.json");
    pope = std::make_unique<AtomicFile>(dir + "/pope.jsonl");
    mc = std::make_unique<AtomicFile>(dir + "/mc.jsonl");
    reasoning = std::make_unique<AtomicFile>(dir + "/reasoning.jsonl");
    idk = std::make_unique<AtomicFile>(dir + "/idk.jsonl");
    captions = std::make_unique<AtomicFile>(dir + "/captions.jsonl");
    llava->write("[");
  }
  void commit() {
    llava->write(llava_first ? "]\n" : "\n]\n");
    for (auto* f : {&llava, &pope, &mc, &reasoning, &idk, &captions}) (*f)->commit();
  }
};

Json vocabulary_json() {
  Json shapes = Json::array(), colors = Json::array(), sizes = Json::array(),
       cells = Json::array(), foreign = Json::array(), order = Json::array(),
       pairs = Json::array(), typical = Json::object();
  for (int s = 0; s < kNumShapes; ++s) shapes.push_back(shape_name(Shape(s)));
  for (int c = 0; c < kNumColors; ++c) colors.push_back(color_name(Color(c)));
  for (int z = 0; z < kNumSizes; ++z) sizes.push_back(size_name(Size(z)));
  for (int c = 0; c < kNumCells; ++c) cells.push_back(cell_name(c));
  for (int k = 0; k < kNumForeignKinds; ++k) foreign.push_back(foreign_kind_name(k));
  for (Shape s : kShapeFrequencyOrder) order.push_back(shape_name(s));
  for (const ShapePair& p : kCooccurringPairs)
    pairs.push_back(Json::array({shape_name(p.first), shape_name(p.second)}));
  for (int s = 0; s < kNumShapes; ++s)
    if (kTypicalColor[s] != kNoColor)
      typical[shape_name(Shape(s))] = color_name(Color(kTypicalColor[s]));
  return Json{{"shapes", shapes},          {"colors", colors},
              {"sizes", sizes},            {"cells", cells},
              {"foreign_kinds", foreign},  {"shape_frequency_order", order},
              {"cooccurring_pairs", pairs}, {"typical_color", typical}};
}

}  // namespace

GenerateSummary generate_world(const WorldConfig& config, uint64_t seed, const std::string& dir,
                               bool progress) {
  validate(config);
  const auto start = std::chrono::steady_clock::now();
  make_dirs(dir + "/images");
  const int64_t counts[kNumSplits] = {config.train_scenes, config.val_scenes, config.test_scenes,
                                      config.shifted_scenes};
  int64_t total = 0;
  for (int64_t n : counts) total += n;

  // POPE's popular / adversarial negatives come from the training distribution.
  std::vector<Scene> train_graphs;
  const int64_t n_stats = std::max(config.train_scenes, kMinStatsScenes);
  train_graphs.reserve(size_t(n_stats));
  for (int64_t i = 0; i < n_stats; ++i)
    train_graphs.push_back(sample_scene(config, seed, Split::kTrain, i));
  const ShapeStats train_stats = shape_stats(train_graphs);
  train_graphs.clear();
  train_graphs.shrink_to_fit();

  // Workers spend about half their time waiting on fsync of their PNG, so the default runs two
  // per core (more workers than cores write a world faster: docs/performance.md).
  const int threads = config.threads > 0 ? config.threads : 2 * available_cores();
  GenerateSummary summary;
  StatsAccumulator acc;
  AtomicFile scenes_file(dir + "/scenes.jsonl");
  std::unique_ptr<Progress> bar;
  if (progress) bar = std::make_unique<Progress>("world", total, "scenes");

  // Jobs are (split, index) in file order. While the workers build chunk k + 1, this thread
  // appends chunk k to the files, so writing overlaps rendering.
  std::vector<std::pair<Split, int64_t>> jobs;
  jobs.reserve(size_t(total));
  for (int si = 0; si < kNumSplits; ++si)
    for (int64_t i = 0; i < counts[si]; ++i) jobs.emplace_back(Split(si), i);
  std::vector<std::unique_ptr<SplitFiles>> files(kNumSplits);
  for (int si = 0; si < kNumSplits; ++si)
    if (counts[si] > 0) files[si] = std::make_unique<SplitFiles>(dir + "/" + split_name(Split(si)));

  std::vector<SceneOutput> buffers[2] = {std::vector<SceneOutput>(kChunk),
                                         std::vector<SceneOutput>(kChunk)};
  std::exception_ptr error;  // the first failure of a worker or of the writer; under error_mutex
  std::mutex error_mutex;
  auto keep_error = [&](std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(error_mutex);
    if (!error) error = std::move(e);
  };
  auto failed = [&] {
    std::lock_guard<std::mutex> lock(error_mutex);
    return bool(error);
  };
  std::atomic<int64_t> next{0};
  auto start_chunk = [&](int64_t first, std::vector<SceneOutput>& out) {
    const int64_t n = std::min<int64_t>(kChunk, total - first);
    next = 0;
    SceneOutput* slots = out.data();
    std::vector<std::thread> pool;
    for (int t = 0; t < std::min<int64_t>(threads, n); ++t) {
      pool.emplace_back([&, slots, first, n] {
        for (int64_t i; (i = next.fetch_add(1)) < n;) {
          try {
            const auto& [split, index] = jobs[size_t(first + i)];
            build_scene(config, seed, split, index, train_stats, dir, slots[i]);
          } catch (...) {
            keep_error(std::current_exception());
          }
        }
      });
    }
    return pool;
  };
  auto write_chunk = [&](int64_t first, std::vector<SceneOutput>& out) {
    const int64_t n = std::min<int64_t>(kChunk, total - first);
    for (int64_t i = 0; i < n; ++i) {
      SceneOutput& o = out[size_t(i)];
      const Split split = o.scene.split;
      SplitFiles& f = *files[int(split)];
      scenes_file.write(o.scene_line);
      scenes_file.write("\n");
      for (const std::string& rec : o.llava) {
        f.llava->write(f.llava_first ? "\n" : ",\n");
        f.llava->write(rec);
        f.llava_first = false;
      }
      for (Json& q : o.pope) {
        q["question_id"] = f.pope_id++;
        const std::string cat = q["category"];
        acc.add_pope(split, cat == "random" ? 0 : cat == "popular" ? 1 : 2, q["label"] == "yes");
        f.pope->write(q.dump());
        f.pope->write("\n");
      }
      f.mc->write(o.mc);
      f.reasoning->write(o.reasoning);
      f.idk->write(o.idk);
      f.captions->write(o.captions);
      acc.add_scene(o.scene);
      summary.samples += o.samples;
      summary.png_bytes += o.png_bytes;
      summary.scenes++;
    }
    if (bar) bar->tick(n);
  };
  int cur = 0;
  for (int64_t first = 0; first < total; first += kChunk, cur ^= 1) {
    std::vector<std::thread> pool = start_chunk(first, buffers[cur]);
    // A write error (disk full) must not leave the workers joinable: it is kept, the chunk's
    // workers are joined, and then it is thrown.
    if (first > 0 && !failed()) {
      try {
        write_chunk(first - kChunk, buffers[cur ^ 1]);
      } catch (...) {
        keep_error(std::current_exception());
      }
    }
    for (auto& th : pool) th.join();
    if (failed()) std::rethrow_exception(error);
  }
  if (total > 0) write_chunk((total - 1) / kChunk * kChunk, buffers[cur ^ 1]);
  for (auto& f : files)
    if (f) f->commit();
  scenes_file.commit();
  if (bar) bar->done();

  summary.stats = acc.to_json();
  write_json_file(dir + "/stats.json", summary.stats);
  Json splits = Json::object();
  for (int si = 0; si < kNumSplits; ++si) splits[split_name(Split(si))] = counts[si];
  write_json_file(dir + "/world.json",
                  Json{{"format", "mmb-world"},
                       {"version", 1},
                       {"seed", seed},
                       {"config", config_to_json(config)},
                       {"splits", splits},
                       {"vocabulary", vocabulary_json()},
                       {"pope_categories", {"random", "popular", "adversarial"}}});
  summary.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace mmb::world
