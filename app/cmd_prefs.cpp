// mmb prefs: preference data. `prefs csr` builds CSR pairs (sentence-level search rewarded by
// likelihood and CLIPScore); `prefs stats` measures a pair file's quality with the verifier's
// judgements the builders write (docs/prefs.md).
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "mmb/csr.h"
#include "mmb/prefs.h"

namespace mmb::app {
namespace {

struct CsrCmd {
  CommonOptions common;
  CsrBuildOptions o;
  bool quiet = false;
};

struct StatsCmd {
  CommonOptions common;
  std::string file;
  double error_weight = 1.0;
  bool json = false;
};

void print_stats(const std::string& name, const Json& s) {
  std::printf("%-12s pairs %6lld  words chosen %5.1f rejected %5.1f  edit distance %5.1f (%.2f)", name.c_str(),
              static_cast<long long>(s["pairs"].get<int64_t>()), s["mean_words_chosen"].get<double>(),
              s["mean_words_rejected"].get<double>(), s["mean_word_edit_distance"].get<double>(),
              s["mean_normalised_edit_distance"].get<double>());
  if (s["judged"].get<int64_t>() > 0)
    std::printf(
        "\n%-12s judged %5lld  chosen truly better %.3f  equal %.3f  worse %.3f  errors %.2f vs %.2f  "
        "hallucinated %.2f vs %.2f  recall %.3f vs %.3f",
        "", static_cast<long long>(s["judged"].get<int64_t>()), s["chosen_better"].get<double>(),
        s["chosen_equal"].get<double>(), s["chosen_worse"].get<double>(), s["mean_errors_chosen"].get<double>(),
        s["mean_errors_rejected"].get<double>(), s["mean_hallucinated_chosen"].get<double>(),
        s["mean_hallucinated_rejected"].get<double>(), s["mean_recall_chosen"].get<double>(),
        s["mean_recall_rejected"].get<double>());
  std::printf("\n");
}

void setup_prefs_csr(CLI::App& cmd) {
  auto c = std::make_shared<CsrCmd>();
  auto& o = c->o;
  add_common_options(cmd, c->common, /*with_out=*/false);
  add_examples(cmd,
               "mmb prefs csr --model runs/base/sft/model --clip runs/base/clip/model --world runs/base/world "
               "--limit 200 --pairs runs/csr/pairs.jsonl\n"
               "mmb prefs csr --model M --clip C --data llava.json --image-root DIR --pairs pairs.jsonl\n");
  cmd.add_option("--model", o.model_dir, "The policy's model directory")->required();
  cmd.add_option("--clip", o.clip_dir, "CLIP model directory (R_I = CLIPScore / 100)")->required();
  cmd.add_option("--world", o.world_dir, "World directory: its split's description prompts, judged by the verifier");
  cmd.add_option("--split", o.split, "World split")->capture_default_str();
  cmd.add_option("--data", o.data, "Or: LLaVA-format JSON records (image + first human turn)");
  cmd.add_option("--image-root", o.image_root, "Folder of --data's images");
  cmd.add_option("--limit", o.limit, "Prompts, drawn with --seed (-1: all)")->capture_default_str();
  cmd.add_option("--pairs", o.out, "Output: TRL preference JSONL")->required();
  const char* s = "Search (SPEC: 5 beams in 5 groups, penalty 3.0, 70 tokens, top 1 + bottom 2, lambda 0.9)";
  cmd.add_option("--num-beams", o.search.num_beams, "Beams per node")->group(s)->capture_default_str();
  cmd.add_option("--num-groups", o.search.num_groups, "Beam groups per node")->group(s)->capture_default_str();
  cmd.add_option("--diversity-penalty", o.search.diversity_penalty, "Hamming diversity penalty")
      ->group(s)
      ->capture_default_str();
  cmd.add_option("--max-sentence-tokens", o.search.max_sentence_tokens, "Tokens per sentence")
      ->group(s)
      ->capture_default_str();
  cmd.add_option("--max-sentences", o.search.max_sentences, "Levels (sentences) of the tree")
      ->group(s)
      ->capture_default_str();
  cmd.add_option("--keep-top", o.search.keep_top, "Best children kept per level")->group(s)->capture_default_str();
  cmd.add_option("--keep-bottom", o.search.keep_bottom, "Worst children kept per level")
      ->group(s)
      ->capture_default_str();
  cmd.add_option("--prune-at", o.search.prune_at, "Prune a level's pool of at least this many children")
      ->group(s)
      ->capture_default_str();
  cmd.add_option("--lambda", o.search.lambda, "Weight of the image reward")->group(s)->capture_default_str();
  cmd.add_option("--reward", o.search.reward, "score (the paper: lambda R_I + (1 - lambda) R_T) | rank (the code)")
      ->group(s)
      ->capture_default_str();
  cmd.add_flag("--quiet", c->quiet, "No progress line");
  cmd.callback([c] {
    apply_common_options(c->common);
    c->o.seed = c->common.seed;
    c->o.progress = !c->quiet;
    const PairBuildReport r =
        run_sharded_build(c->o.out, c->o.shard, c->o.progress, [c] { return build_csr_pairs(c->o); });
    std::cout << r.to_json().dump() << "\n";
    std::cerr << "wrote " << c->o.out << "\n";
  });
}

void setup_prefs_stats(CLI::App& cmd) {
  auto c = std::make_shared<StatsCmd>();
  add_common_options(cmd, c->common, /*with_out=*/false);
  add_examples(cmd, "mmb prefs stats runs/csr/pairs.jsonl [--json]\n");
  cmd.add_option("file", c->file, "TRL preference JSONL")->required();
  cmd.add_option("--error-weight", c->error_weight, "The verifier judge's error weight (ResponseJudgement::score)")
      ->capture_default_str();
  cmd.add_flag("--json", c->json, "Print JSON instead of the table");
  cmd.callback([c] {
    apply_common_options(c->common);
    PairFileReport report;
    const auto pairs = read_preference_pairs(c->file, false, &report);
    const Json s = preference_pair_stats(pairs, c->error_weight);
    if (c->json) {
      std::cout << s.dump(2) << "\n";
      return;
    }
    print_stats("all", s);
    if (s["by_source"].size() > 1)
      for (auto& [name, v] : s["by_source"].items()) print_stats(name, v);
  });
}

}  // namespace

void setup_prefs(CLI::App& cmd) {
  cmd.require_subcommand(1);
  setup_prefs_csr(
      *cmd.add_subcommand("csr", "CSR pairs: sentence-level beam search rewarded by likelihood and CLIPScore"));
  setup_prefs_world(cmd);
  setup_prefs_stats(
      *cmd.add_subcommand("stats", "Pair quality: chosen truly better / equal / worse, lengths, edit distance"));
}

}  // namespace mmb::app
