// Benchmarks of the world: scene sampling, rendering, PNG encoding, task generation, the
// verifier (sentences/s on one core) and a whole world of >= 50k samples written to disk.
//   build/bench/world_bench                                   # everything
//   build/bench/world_bench --benchmark_filter=Verify         # the verifier only
// Results on the reference machine are in docs/world.md ("Speed").
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>

#include "mmb/image.h"
#include "mmb/verifier.h"
#include "mmb/world_tasks.h"

using namespace mmb::world;

namespace {

const ShapeStats& train_stats() {
  static const ShapeStats st = [] {
    WorldConfig c;
    std::vector<Scene> scenes;
    for (int i = 0; i < 2000; ++i) scenes.push_back(sample_scene(c, 1, Split::kTrain, i));
    return shape_stats(scenes);
  }();
  return st;
}

// Ground-truth sentences (descriptions and reasoning steps) of 500 scenes, plus a perturbed copy
// of each description sentence (a colour changed), so that true and false verdicts are mixed.
struct Corpus {
  std::vector<Scene> scenes;
  std::vector<std::pair<int, std::string>> sentences;  // (scene index, sentence)
};

const Corpus& corpus() {
  static const Corpus c = [] {
    Corpus out;
    WorldConfig config;
    for (int i = 0; i < 500; ++i) {
      out.scenes.push_back(sample_scene(config, 2, Split::kTest, i));
      SceneTasks t = make_tasks(out.scenes.back(), config, train_stats(), 2);
      for (const std::string& d : t.description) {
        out.sentences.emplace_back(i, d);
        std::string w = d;
        for (int k = 0; k < kNumColors; ++k) {
          size_t at = w.find(color_name(Color(k)));
          if (at == std::string::npos) continue;
          w.replace(at, std::string(color_name(Color(k))).size(),
                    color_name(Color((k + 1) % kNumColors)));
          out.sentences.emplace_back(i, w + ", but I'm not sure");
          break;
        }
      }
      for (const ReasoningChain& r : t.reasoning)
        for (const auto* steps : {&r.perception, &r.reasoning})
          for (const std::string& s : *steps) out.sentences.emplace_back(i, s);
    }
    return out;
  }();
  return c;
}

void BM_SampleScene(benchmark::State& state) {
  WorldConfig c;
  int64_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(sample_scene(c, 1, Split::kTrain, i++));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SampleScene);

void BM_RenderScene(benchmark::State& state) {
  WorldConfig c;
  c.image_size = int(state.range(0));
  int64_t i = 0;
  for (auto _ : state) {
    Scene s = sample_scene(c, 1, Split::kTrain, i++);
    benchmark::DoNotOptimize(render_scene(s, 1));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RenderScene)->Arg(64)->Arg(96);

void BM_RenderAndEncodePng(benchmark::State& state) {
  WorldConfig c;
  int64_t i = 0, bytes = 0;
  for (auto _ : state) {
    Scene s = sample_scene(c, 1, Split::kTrain, i++);
    bytes += int64_t(mmb::encode_png(render_scene(s, 1)).size());
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["png_bytes"] = double(bytes) / double(state.iterations());
}
BENCHMARK(BM_RenderAndEncodePng);

void BM_MakeTasks(benchmark::State& state) {
  WorldConfig c;
  int64_t i = 0, samples = 0;
  for (auto _ : state) {
    Scene s = sample_scene(c, 1, Split::kTrain, i++);
    samples += make_tasks(s, c, train_stats(), 1).sample_count();
  }
  state.SetItemsProcessed(samples);  // samples/s
}
BENCHMARK(BM_MakeTasks);

void BM_VerifySentence(benchmark::State& state) {
  const Corpus& c = corpus();
  Verifier v;
  size_t k = 0;
  int64_t n_true = 0;
  for (auto _ : state) {
    const auto& [scene, sentence] = c.sentences[k];
    n_true += v.verify(c.scenes[scene], sentence).is_true();
    if (++k == c.sentences.size()) k = 0;
  }
  state.SetItemsProcessed(state.iterations());  // sentences/s
  state.counters["share_true"] = double(n_true) / double(state.iterations());
}
BENCHMARK(BM_VerifySentence);

void BM_CheckAnswer(benchmark::State& state) {
  Verifier v;
  const char* responses[] = {"Yes.", "So, the answer is three.", "I don't know.", "At the top left.",
                             "Red, but I'm not sure."};
  const char* expected[] = {"yes", "three", "I don't know", "top left", "blue"};
  int k = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(v.check_answer(responses[k], expected[k]));
    k = (k + 1) % 5;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CheckAnswer);

// A whole world with >= 50k samples (all tasks), written to disk with every core.
void BM_GenerateWorld50k(benchmark::State& state) {
  WorldConfig c;
  c.train_scenes = 2600;
  c.val_scenes = 200;
  c.test_scenes = 300;
  c.shifted_scenes = 300;  // 3400 scenes × ~15 samples ≈ 52k samples
  std::string dir = (std::filesystem::temp_directory_path() / "mmb_world_bench").string();
  GenerateSummary s;
  for (auto _ : state) {
    std::filesystem::remove_all(dir);
    s = generate_world(c, 1, dir, false);
  }
  state.counters["samples"] = double(s.samples);
  state.counters["scenes"] = double(s.scenes);
  state.counters["seconds"] = s.seconds;
  state.counters["samples_per_s"] = double(s.samples) / s.seconds;
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_GenerateWorld50k)->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
