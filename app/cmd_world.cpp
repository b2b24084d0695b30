// mmb world: generate the procedural world, verify sentences against a scene, print statistics.
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "mmb/error.h"
#include "mmb/progress.h"
#include "mmb/verifier.h"
#include "mmb/world_tasks.h"

namespace mmb::app {
namespace {

struct GenerateOptions {
  CommonOptions common;
  world::WorldConfig config;
  std::string qa_weights;  // --sft-qa-weights
  bool quiet = false;  // no progress bar
};

struct VerifyOptions {
  CommonOptions common;
  std::string scenes_file;             // scenes.jsonl
  std::string id;                      // scene id
  std::string scene_json;              // or: one scene as JSON text
  std::vector<std::string> sentences;  // each verified on its own
  std::string expected;                // canonical answer for answer sentences
  bool json = false;
};

struct StatsOptions {
  CommonOptions common;
  std::string dir;
  bool json = false;
};

template <typename T>
void opt(CLI::App& cmd, const char* name, T& field, const char* help, const char* group) {
  cmd.add_option(name, field, help)->group(group)->capture_default_str();
}

void setup_world_generate(CLI::App& cmd) {
  auto o = std::make_shared<GenerateOptions>();
  world::WorldConfig& c = o->config;
  add_common_options(cmd, o->common, /*with_out=*/true);
  add_examples(cmd, "mmb world generate --out DIR [--seed S] [--config configs/world.toml] [--train N ...]\n");
  cmd.get_option("--out")->required();
  const char* sz = "Sizes";
  opt(cmd, "--train", c.train_scenes, "Training scenes (one image each)", sz);
  opt(cmd, "--val", c.val_scenes, "Validation scenes", sz);
  opt(cmd, "--test", c.test_scenes, "Test scenes", sz);
  opt(cmd, "--shifted", c.shifted_scenes, "Out-of-distribution scenes (shifted priors)", sz);
  opt(cmd, "--image-size", c.image_size, "Image width = height, pixels", sz);
  opt(cmd, "--min-objects", c.min_objects, "Fewest objects per scene", sz);
  opt(cmd, "--max-objects", c.max_objects, "Most objects per scene (<= 9)", sz);
  const char* ap = "Appearance and difficulty";
  opt(cmd, "--small-radius", c.small_radius, "Radius of small objects / image size", ap);
  opt(cmd, "--medium-radius", c.medium_radius, "Radius of medium objects / image size", ap);
  opt(cmd, "--large-radius", c.large_radius, "Radius of large objects / image size", ap);
  opt(cmd, "--position-jitter", c.position_jitter, "Max offset from the cell centre, in cells", ap);
  opt(cmd, "--max-rotation", c.max_rotation_deg, "Max rotation of a shape, degrees", ap);
  opt(cmd, "--occlusion-prob", c.occlusion_prob, "P(a scene hides one object behind a box)", ap);
  opt(cmd, "--contrast-min", c.contrast_min, "Lowest object/background contrast (1 = full)", ap);
  opt(cmd, "--noise-std", c.noise_std, "Pixel noise, 0-255 units", ap);
  opt(cmd, "--background-gradient", c.background_gradient, "Max background gradient, 0-255", ap);
  const char* pr = "Priors (train / val / test)";
  opt(cmd, "--shape-zipf", c.priors.shape_zipf, "Zipf exponent of shape frequencies", pr);
  opt(cmd, "--cooccur-prob", c.priors.cooccur_prob, "P(partner present | shape present)", pr);
  opt(cmd, "--typical-color-prob", c.priors.typical_color_prob, "P(typical colour | shape)", pr);
  const char* sh = "Priors of the shifted split";
  opt(cmd, "--shifted-shape-zipf", c.shifted_priors.shape_zipf, "Zipf exponent (<0 reverses)", sh);
  opt(cmd, "--shifted-cooccur-prob", c.shifted_priors.cooccur_prob, "P(partner | shape)", sh);
  opt(cmd, "--shifted-typical-color-prob", c.shifted_priors.typical_color_prob,
      "P(typical colour | shape)", sh);
  const char* tk = "Tasks";
  opt(cmd, "--pope-pairs", c.pope_pairs_per_scene, "POPE yes/no pairs per scene and category", tk);
  opt(cmd, "--adversarial-min-cooccur", c.adversarial_min_cooccur,
      "Adversarial POPE asks only about partners with P(B|A) >= this", tk);
  opt(cmd, "--qa-turns", c.qa_turns_per_scene, "Question-answer turns per SFT conversation", tk);
  opt(cmd, "--sft-idk-fraction", c.sft_idk_fraction, "Share of SFT turns answered I don't know",
      tk);
  opt(cmd, "--sft-hint-fraction", c.sft_hint_fraction,
      "Share of SFT turns whose question ends with the hint \"If you are not sure, say I don't know.\"", tk);
  opt(cmd, "--sft-hint-idk-fraction", c.sft_hint_idk_fraction, "Share of the hinted SFT turns that are unanswerable",
      tk);
  cmd.add_option("--sft-qa-weights", o->qa_weights,
                 "Mix of the answerable SFT turns: type=weight for any of " +
                     world::format_qa_weights(world::QaWeights{}) + " (the defaults)")
      ->group(tk);
  opt(cmd, "--sft-balanced-negatives", c.sft_balanced_negatives,
      "Share of SFT presence questions whose absent shape is drawn so that every shape is "
      "answered yes as often as no (weight f/(1-f), f its train frequency; 0: uniformly)", tk);
  opt(cmd, "--sft-balanced-positives", c.sft_balanced_positives,
      "Share of SFT \"yes\" presence questions whose present object is drawn with weight 1/f "
      "(f its shape's train frequency), so rare shapes get more \"yes\" turns (0: uniformly)", tk);
  opt(cmd, "--idk-per-scene", c.idk_per_scene, "Questions per scene in idk.jsonl", tk);
  opt(cmd, "--idk-answerable-fraction", c.idk_answerable_fraction,
      "Share of answerable questions in idk.jsonl", tk);
  opt(cmd, "--mc-per-scene", c.mc_per_scene, "Multiple-choice questions per scene", tk);
  opt(cmd, "--reasoning-per-scene", c.reasoning_per_scene, "Reasoning chains per scene", tk);
  cmd.add_flag("--quiet", o->quiet, "No progress bar");
  cmd.callback([&cmd, o] {
    apply_common_options(o->common);
    o->config.threads = o->common.threads;
    o->config.sft_qa_weights = world::parse_qa_weights(o->qa_weights);
    world::validate(o->config);
    auto run = open_run_dir(cmd, o->common);
    world::GenerateSummary s =
        world::generate_world(o->config, o->common.seed, o->common.out, !o->quiet);
    std::printf("world %s: %lld scenes, %lld samples, %.1f MB of PNG in %.1f s "
                "(%.0f scenes/s, %.0f samples/s)\n",
                o->common.out.c_str(), static_cast<long long>(s.scenes),
                static_cast<long long>(s.samples), s.png_bytes / 1e6, s.seconds,
                s.scenes / std::max(s.seconds, 1e-9), s.samples / std::max(s.seconds, 1e-9));
    std::cout << world::format_stats(s.stats);
    if (run) {
      Json m{{"phase", "generate"}, {"scenes", s.scenes},   {"samples", s.samples},
             {"png_bytes", s.png_bytes}, {"seconds", s.seconds}};
      run->log_metrics(m);
      run->set_result("generate", m);
      run->finish();
    }
  });
}

void setup_verify(CLI::App& cmd) {
  auto o = std::make_shared<VerifyOptions>();
  add_common_options(cmd, o->common, /*with_out=*/false);
  add_examples(cmd, "mmb world verify --scenes DIR/scenes.jsonl --id ID --sentence \"There is a red circle.\"\n");
  cmd.add_option("--scenes", o->scenes_file, "scenes.jsonl of a world")->group("Scene");
  cmd.add_option("--id", o->id, "Scene id, e.g. test_000042")->group("Scene");
  cmd.add_option("--scene-json", o->scene_json, "Or the scene itself, as one JSON object")
      ->group("Scene");
  cmd.add_option("--sentence,-s", o->sentences, "Sentence to verify (repeatable)")
      ->required()
      ->group("Input");
  cmd.add_option("--expected", o->expected, "Expected answer for answer sentences (yes, red, ...)")
      ->group("Input");
  cmd.add_flag("--json", o->json, "Print one JSON verdict per line");
  cmd.callback([o] {
    apply_common_options(o->common);
    world::Scene scene;
    if (!o->scene_json.empty()) {
      Json j;
      try {
        j = Json::parse(o->scene_json);
      } catch (const nlohmann::json::exception& e) {
        fail("world verify: --scene-json is not valid JSON: ", e.what());
      }
      scene = world::scene_from_json(j, "--scene-json");
    } else {
      if (o->scenes_file.empty() || o->id.empty())
        fail("world verify: give --scenes FILE and --id ID, or --scene-json JSON");
      scene = world::find_scene(world::read_scenes(o->scenes_file), o->id);
    }
    world::Verifier verifier;
    for (const std::string& sentence : o->sentences) {
      world::Verdict v = verifier.verify(scene, sentence, o->expected);
      if (o->json) {
        Json j = v.to_json();
        j["sentence"] = sentence;
        std::cout << j.dump() << "\n";
        continue;
      }
      auto names = [](const std::vector<std::string>& n) {
        std::string s;
        for (const auto& x : n) s += (s.empty() ? "" : ",") + x;
        return s.empty() ? std::string("-") : s;
      };
      std::printf("%-12s %-10s mentioned=%s hallucinated=%s%s%s  | %s\n",
                  world::truth_name(v.truth), world::claim_name(v.kind),
                  names(v.mentioned_names()).c_str(), names(v.hallucinated_names()).c_str(),
                  *v.reason ? "  reason=" : "", v.reason, sentence.c_str());
    }
  });
}

void setup_stats(CLI::App& cmd) {
  auto o = std::make_shared<StatsOptions>();
  add_common_options(cmd, o->common, /*with_out=*/false);
  add_examples(cmd, "mmb world stats DIR [--json]\n");
  cmd.add_option("dir", o->dir, "World directory (written by mmb world generate)")->required();
  cmd.add_flag("--json", o->json, "Print JSON instead of tables");
  cmd.callback([o] {
    apply_common_options(o->common);
    Json stats = world::compute_stats(o->dir);
    if (o->json)
      std::cout << stats.dump(2) << "\n";
    else
      std::cout << world::format_stats(stats);
  });
}

}  // namespace

void setup_world(CLI::App& cmd) {
  cmd.require_subcommand(1);
  setup_world_generate(*cmd.add_subcommand("generate", "Generate a world: images, truth and every task"));
  setup_verify(*cmd.add_subcommand("verify", "Verify sentences against one scene of a world"));
  setup_stats(*cmd.add_subcommand("stats", "Distributions, co-occurrence, POPE balance of a world"));
}

}  // namespace mmb::app
