// `mmb prefs bdhs`: bias-driven hallucination sampling (the alignment study; include/mmb/pair_builders.h,
// SPEC §4.2). The policy rewrites the ground truth while it barely sees the image, so what it
// writes comes from its language prior: the hallucinations it is prone to, in its own words.
// The paper's choices are the defaults (ρ_th = 0.99, yes/no swap 0.5, similarity 0.97, 5 tries);
// ours: the cut is uniform over word positions, the continuation greedy (`--temperature` samples),
// the similarity encoder is the model's own CLIP text tower, and on the world a negative the
// verifier finds no worse than the ground truth is dropped and counted.
#include <algorithm>
#include <chrono>
#include <memory>
#include <sstream>

#include <torch/torch.h>

#include "builder_util.h"
#include "mmb/clip_scorer.h"
#include "mmb/error.h"
#include "mmb/image_noise.h"
#include "mmb/pair_builders.h"
#include "mmb/progress.h"
#include "mmb/sentences.h"
#include "mmb/strings.h"
#include "mmb/vlm.h"

namespace mmb {
namespace {

std::vector<std::string> words_of(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> w;
  for (std::string x; in >> x;) w.push_back(x);
  return w;
}

}  // namespace

BdhsHead bdhs_sentence_head(const std::string& sentence, double swap_prob, std::mt19937_64& rng) {
  std::vector<std::string> w = words_of(sentence);
  if (w.empty()) return {};
  const std::string other = opposite_yes_no(w[0]);
  bool swapped = false;
  if (!other.empty() && std::bernoulli_distribution(swap_prob)(rng)) {
    w[0] = other;
    swapped = true;
  }
  if (swapped && w.size() == 1) return {w[0], true, true};
  const size_t k = std::uniform_int_distribution<size_t>(swapped ? 1 : 0, w.size() - 1)(rng);
  BdhsHead h;
  h.swapped = swapped;
  for (size_t i = 0; i < k; ++i) h.text += (i ? " " : "") + w[i];
  return h;
}

namespace {

}  // namespace

torch::Tensor bdhs_key_keep(const torch::Tensor& input_ids, int64_t image_token_index, double keep_threshold,
                            at::Generator generator) {
  const auto u = torch::rand(input_ids.sizes(), generator, torch::kFloat64);
  return (input_ids != image_token_index).logical_or(u >= keep_threshold);
}

PairBuildReport build_bdhs_pairs(const BdhsBuildOptions& o) {
  if (o.out.empty()) fail("prefs bdhs: no output file (--pairs)");
  if (o.world_dir.empty()) fail("prefs bdhs: no world directory (--world)");
  if (o.clip_dir.empty()) fail("prefs bdhs: no CLIP (--clip): its text tower measures similarity");
  if (!(o.keep_threshold >= 0 && o.keep_threshold <= 1))
    fail("prefs bdhs: --keep-threshold must be in [0, 1], got ", o.keep_threshold);
  if (!(o.swap_prob >= 0 && o.swap_prob <= 1)) fail("prefs bdhs: --swap-prob must be in [0, 1], got ", o.swap_prob);
  if (o.max_tries < 1) fail("prefs bdhs: --max-tries must be >= 1, got ", o.max_tries);
  if (o.batch_size < 1) fail("prefs bdhs: --batch must be >= 1, got ", o.batch_size);
  if (o.noise_step >= kDiffusionSteps) fail("prefs bdhs: --noise-step must be < ", kDiffusionSteps);
  const auto t0 = std::chrono::steady_clock::now();
  Vlm vlm = Vlm::load(o.model_dir);
  vlm.model()->eval();
  ClipScorer clip = ClipScorer::load(o.clip_dir);
  const WorldPromptSet set = draw_world_prompts(o.world_dir, o.split, o.limit, o.seed, o.tasks);
  const world::Verifier verifier;
  const int64_t image_id = vlm.model()->config().image_token_index;
  std::mt19937_64 rng(shard_seed(o.seed, o.shard) ^ 0xbd45ULL);
  PairBuildReport report;
  std::vector<PreferencePair> pairs;
  std::unique_ptr<Progress> bar;
  const std::pair<size_t, size_t> slice = o.shard.range(set.prompts.size());
  const size_t first = slice.first, last = slice.second;
  if (o.progress) bar = std::make_unique<Progress>("bdhs", int64_t(last - first), "prompts");
  uint64_t draw = uint64_t(o.shard.index) << 32;  // one mask (and noise) draw per decode; shards apart

  for (size_t start = first; start < last; start += size_t(o.batch_size)) {
    const size_t end = std::min(last, start + size_t(o.batch_size));
    const PromptBatch batch(set, o.world_dir, start, end);
    std::vector<std::string> negative(end - start);
    std::vector<int64_t> tries(end - start, 0);
    std::vector<size_t> pending;
    for (size_t i = start; i < end; ++i) pending.push_back(i - start);
    for (int64_t attempt = 1; attempt <= o.max_tries && !pending.empty(); ++attempt) {
      const bool free_run = attempt == o.max_tries && o.max_tries > 1;
      // Rows: one per sentence of each pending prompt (one per prompt on the free run).
      std::vector<std::string> qs, prefixes;
      std::vector<BdhsHead> heads;
      std::vector<const Image*> ims;
      std::vector<size_t> row_prompt;
      std::vector<bool> swapped_answer(end - start, false);  // a short answer whose yes/no was swapped
      for (size_t b : pending) {
        const DescriptionPrompt& p = set.prompts[start + b];
        const auto sentences = split_sentences(p.reference);
        if (free_run || sentences.empty()) {
          qs.push_back(p.question);
          ims.push_back(batch.images[b]);
          prefixes.push_back("");
          heads.push_back({});
          row_prompt.push_back(b);
          continue;
        }
        std::string before;
        for (const auto& s : sentences) {
          const BdhsHead head = bdhs_sentence_head(s, o.swap_prob, rng);
          if (p.task == "qa" && head.swapped) swapped_answer[b] = true;
          qs.push_back(p.question);
          ims.push_back(batch.images[b]);
          prefixes.push_back(trim(before + (before.empty() || head.text.empty() ? "" : " ") + head.text));
          heads.push_back(head);
          row_prompt.push_back(b);
          before += (before.empty() ? "" : " ") + s;
        }
      }
      std::vector<Generation> gens;
      {
        torch::NoGradGuard no_grad;
        VlmInput in = vlm.encode_prompts(qs, ims, prefixes);
        auto gen = at::detail::createCPUGenerator(o.seed * 7919ULL + draw++);
        in.key_keep = bdhs_key_keep(in.input_ids, image_id, o.keep_threshold, gen);
        if (o.noise_step >= 0) in.pixel_values = diffusion_noise(in.pixel_values, o.noise_step, gen);
        SampleOptions s;
        s.temperature = o.temperature;
        s.top_p = o.top_p;
        s.stop = vlm.default_stop(free_run ? o.max_new_tokens : o.max_sentence_tokens);
        s.stop.stop_at_sentence_end = !free_run;
        s.seed = o.seed * 1000003ULL + draw;
        DecodeState state = prefill(vlm.model(), in, s.stop.max_new_tokens + 1);
        gens = generate(vlm.model(), state, s);
      }
      // Each row's sentence: its head followed by what the masked model wrote (decoded together,
      // so the space between them is the tokenizer's).
      std::vector<std::string> rewritten(end - start);
      for (size_t r = 0; r < gens.size(); ++r) {
        report.generated_tokens += int64_t(gens[r].tokens.size());
        std::vector<int64_t> ids;
        if (!heads[r].text.empty())
          for (int32_t t : vlm.tokenizer().encode(heads[r].text, /*add_bos=*/false)) ids.push_back(t);
        if (!heads[r].complete) ids.insert(ids.end(), gens[r].tokens.begin(), gens[r].tokens.end());
        const std::string sentence = trim(vlm.decode(ids));
        std::string& y = rewritten[row_prompt[r]];
        if (!sentence.empty()) y += (y.empty() ? "" : " ") + sentence;
      }
      std::vector<std::string> a, b;
      for (size_t k : pending) {
        a.push_back(rewritten[k].empty() ? std::string(".") : rewritten[k]);
        b.push_back(set.prompts[start + k].reference);
      }
      const std::vector<double> sim = clip.similarity(a, b);
      std::vector<size_t> still;
      for (size_t i = 0; i < pending.size(); ++i) {
        const size_t k = pending[i];
        tries[k] = attempt;
        // A swapped yes/no differs in meaning by construction; the text tower cannot tell "Yes." from
        // "No." apart (similarity near 1), so the similarity rule does not apply to it.
        if (!rewritten[k].empty() && rewritten[k] != b[i] && (sim[i] < o.similarity || swapped_answer[k]))
          negative[k] = rewritten[k];
        else still.push_back(k);
      }
      pending = std::move(still);
    }
    for (size_t k = 0; k < end - start; ++k) {
      const DescriptionPrompt& p = set.prompts[start + k];
      const world::Scene& scene = set.scenes[p.scene];
      if (negative[k].empty()) {
        report.dropped["similar"]++;
        continue;
      }
      const ResponseJudgement pos = judge_prompt_response(verifier, scene, p, p.reference);
      const ResponseJudgement neg = judge_prompt_response(verifier, scene, p, negative[k]);
      if (compare_judgements(pos, neg, o.judge_error_weight) <= 0) {
        report.dropped["not_worse"]++;
        continue;
      }
      pairs.push_back(world_pair(
          p, scene, p.reference, negative[k], "bdhs", pos, neg,
          {{"bdhs", {{"tries", tries[k]}, {"keep_threshold", o.keep_threshold}, {"noise_step", o.noise_step}}}}));
      report.pairs++;
    }
    report.prompts += int64_t(end - start);
    if (bar) {
      bar->set_note(pairs_note(report, t0));
      bar->tick(int64_t(end - start));
    }
  }
  if (bar) bar->done();
  finish_build("prefs bdhs", o.out, pairs, report, t0, o.shard);
  return report;
}

}  // namespace mmb
