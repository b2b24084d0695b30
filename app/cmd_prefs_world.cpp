// mmb prefs corrected | bpo | bdhs: the world's builders — verifier-corrected on-policy pairs,
// BPO's noised-image and injected-error negatives, BDHS's masked rewrites (docs/prefs.md).
#include <iostream>

#include "commands.h"
#include "common.h"
#include "mmb/pair_builders.h"
#include "mmb/strings.h"

namespace mmb::app {
namespace {

struct CorrectedCmd {
  CommonOptions common;
  CorrectedBuildOptions o;
  std::string tasks = "description,qa,pope:adversarial";
  bool quiet = false;
};

struct BdhsCmd {
  CommonOptions common;
  BdhsBuildOptions o;
  std::string tasks = "description,qa";
  bool quiet = false;
};

struct BpoCmd {
  CommonOptions common;
  BpoBuildOptions o;
  std::string tasks = "description";
  bool quiet = false, no_noise = false, no_inject = false;
};

// The options every world builder has.
template <class Options>
void add_world_builder_options(CLI::App& cmd, Options& o) {
  cmd.add_option("--model", o.model_dir, "The policy's model directory")->required();
  cmd.add_option("--world", o.world_dir, "World directory (mmb world generate --out): prompts, scenes, verifier")
      ->required();
  cmd.add_option("--split", o.split, "World split whose description prompts are answered")->capture_default_str();
  cmd.add_option("--limit", o.limit, "Prompts, drawn with --seed (-1: all)")->capture_default_str();
  cmd.add_option("--pairs", o.out, "Output: TRL preference JSONL")->required();
  cmd.add_option("--batch", o.batch_size, "Prompts per generation batch")->capture_default_str();
  cmd.add_option("--max-new-tokens", o.max_new_tokens, "Tokens per generated answer")->capture_default_str();
  cmd.add_option("--top-p", o.top_p, "Nucleus sampling of the generated answers")->capture_default_str();
  cmd.add_option("--judge-error-weight", o.judge_error_weight,
                 "The verifier judge's error weight (ResponseJudgement::score)")
      ->capture_default_str();
}

void print_report(const PairBuildReport& r, const std::string& out) {
  std::cout << r.to_json().dump() << "\n";
  std::cerr << "wrote " << out << "\n";
}

void setup_prefs_corrected(CLI::App& cmd) {
  auto c = std::make_shared<CorrectedCmd>();
  add_common_options(cmd, c->common, /*with_out=*/false);
  add_examples(cmd,
               "mmb prefs corrected --model models/base/vlm --world runs/world --limit 1000 "
               "--pairs runs/corrected/pairs.jsonl\n");
  add_world_builder_options(cmd, c->o);
  cmd.add_option("--samples-per-prompt", c->o.samples_per_prompt, "Answers per prompt (> 1 needs --temperature)")
      ->capture_default_str();
  cmd.add_option("--temperature", c->o.temperature, "Sampling of the policy's answers (0 = greedy)")
      ->capture_default_str();
  cmd.add_option("--tasks", c->tasks,
                 "Prompts: description, qa (a wrong short answer vs the ground truth's), pope or pope:<categories>")
      ->capture_default_str();
  cmd.add_option("--fix", c->o.fix, "hallucinated: the false sentences naming an absent kind | false: every false sentence")
      ->capture_default_str();
  cmd.add_flag("--quiet", c->quiet, "No progress line");
  cmd.callback([c] {
    apply_common_options(c->common);
    c->o.seed = c->common.seed;
    c->o.progress = !c->quiet;
    c->o.tasks = split_list(c->tasks);
    print_report(run_sharded_build(c->o.out, c->o.shard, c->o.progress, [c] { return build_corrected_pairs(c->o); }),
                 c->o.out);
  });
}

void setup_prefs_bpo(CLI::App& cmd) {
  auto c = std::make_shared<BpoCmd>();
  add_common_options(cmd, c->common, /*with_out=*/false);
  add_examples(cmd,
               "mmb prefs bpo --model models/base/vlm --world runs/world --limit 1000 --pairs runs/bpo/pairs.jsonl\n"
               "mmb prefs bpo ... --sampler two_pass --alpha 1      # the released code's sampler\n"
               "mmb prefs bpo ... --no-noise --inject-kind add_object\n"
               "mmb prefs bpo ... --inject-mode lm                  # the policy's language model writes the error\n");
  add_world_builder_options(cmd, c->o);
  const char* n = "Negative 1: the answer to the diffusion-noised image";
  cmd.add_option("--noise-step", c->o.noise_step, "Diffusion step t of the noised image (0-based, of 1000)")
      ->group(n)
      ->capture_default_str();
  cmd.add_option("--sampler", c->o.sampler,
                 "noised: from the noised image alone (the paper's intent) | two_pass: (1+a)l - a l', cut at log 0.2")
      ->group(n)
      ->capture_default_str();
  cmd.add_option("--alpha", c->o.alpha, "a of the two-pass sampler (+1: the released code, contrastive)")
      ->group(n)
      ->capture_default_str();
  cmd.add_option("--temperature", c->o.temperature, "Sampling temperature")->group(n)->capture_default_str();
  cmd.add_flag("--no-noise", c->no_noise, "Do not write negative 1")->group(n);
  cmd.add_flag("--match-sentences,!--no-match-sentences", c->o.match_sentences,
               "Cut a description's negative 1 to the positive's sentence count")
      ->group(n);
  const char* i = "Negative 2: the ground truth with one injected error";
  cmd.add_option("--inject-mode", c->o.inject_mode,
                 "rules: one error by the co-occurrence rules | lm: one sentence cut and continued by the policy's own "
                 "language model (image hidden)")
      ->group(i)
      ->capture_default_str();
  cmd.add_option("--inject-kind", c->o.inject_kind,
                 "add_object | delete | color | shape | size | position | count (default: drawn per pair)")
      ->group(i);
  cmd.add_flag("--no-inject", c->no_inject, "Do not write negative 2")->group(i);
  cmd.add_option("--max-words", c->o.max_words, "Drop pairs with a longer response")->capture_default_str();
  cmd.add_option("--tasks", c->tasks,
                 "Prompts: description, qa (first QA turn), pope or pope:<categories> (POPE's yes/no questions)")
      ->capture_default_str();
  cmd.add_flag("--quiet", c->quiet, "No progress line");
  cmd.callback([c] {
    apply_common_options(c->common);
    c->o.seed = c->common.seed;
    c->o.progress = !c->quiet;
    c->o.tasks = split_list(c->tasks);
    c->o.noise_negative = !c->no_noise;
    c->o.inject_negative = !c->no_inject;
    print_report(run_sharded_build(c->o.out, c->o.shard, c->o.progress, [c] { return build_bpo_pairs(c->o); }),
                 c->o.out);
  });
}

void setup_prefs_bdhs(CLI::App& cmd) {
  auto c = std::make_shared<BdhsCmd>();
  auto& o = c->o;
  add_common_options(cmd, c->common, /*with_out=*/false);
  add_examples(cmd,
               "mmb prefs bdhs --model models/base/vlm --clip models/base/clip --world runs/world --limit 1000 "
               "--pairs runs/bdhs/pairs.jsonl\n"
               "mmb prefs bdhs ... --noise-step 500      # BDHS_noise\n");
  add_world_builder_options(cmd, o);
  cmd.add_option("--clip", o.clip_dir, "CLIP whose text tower measures similarity")->required();
  cmd.add_option("--tasks", c->tasks,
                 "Prompts: description (descriptions), qa (first QA turn), pope or pope:<categories>")
      ->capture_default_str();
  const char* m = "Masked sampling (SPEC: rho 0.99, swap 0.5, similarity 0.97, 5 tries)";
  cmd.add_option("--keep-threshold", o.keep_threshold, "Image key kept when u >= this (u ~ U(0,1))")
      ->group(m)
      ->capture_default_str();
  cmd.add_option("--noise-step", o.noise_step, "Diffusion noise on the image at this step (-1: none; 500: BDHS_noise)")
      ->group(m)
      ->capture_default_str();
  cmd.add_option("--swap-prob", o.swap_prob, "Probability of swapping a leading yes/no")->group(m)->capture_default_str();
  cmd.add_option("--similarity", o.similarity, "Resample when sim(negative, ground truth) >= this")
      ->group(m)
      ->capture_default_str();
  cmd.add_option("--max-tries", o.max_tries, "Draws per prompt; the last is a free generation")
      ->group(m)
      ->capture_default_str();
  cmd.add_option("--temperature", o.temperature, "Sampling of the masked continuation (0 = greedy)")
      ->group(m)
      ->capture_default_str();
  cmd.add_option("--max-sentence-tokens", o.max_sentence_tokens, "Tokens per continued sentence")
      ->group(m)
      ->capture_default_str();
  cmd.add_flag("--quiet", c->quiet, "No progress line");
  cmd.callback([c] {
    apply_common_options(c->common);
    c->o.seed = c->common.seed;
    c->o.progress = !c->quiet;
    c->o.tasks = split_list(c->tasks);
    print_report(run_sharded_build(c->o.out, c->o.shard, c->o.progress, [c] { return build_bdhs_pairs(c->o); }),
                 c->o.out);
  });
}

}  // namespace

void setup_prefs_world(CLI::App& prefs) {
  setup_prefs_bdhs(*prefs.add_subcommand(
      "bdhs", "BDHS pairs: the ground truth vs the policy's rewrite of it with the image masked"));
  setup_prefs_corrected(*prefs.add_subcommand(
      "corrected", "On-policy pairs: the policy's answer vs the same answer with its false sentences corrected"));
  setup_prefs_bpo(*prefs.add_subcommand(
      "bpo", "BPO pairs: the ground truth vs the answer to a noised image and vs an injected error"));
}

}  // namespace mmb::app
