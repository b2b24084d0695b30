// `mmb prefs bpo`: BPO's bootstrapped pairs (include/mmb/pair_builders.h, SPEC §5).
//
// The paper's two negatives: image weakening (the model answers from a diffusion-noised image, so
// its language prior speaks) and error injection (a text LM rewrites the answer with plausible
// errors). On the world the injection is rule-based from the training split's co-occurrence
// statistics by default (inject_error, src/prefs/edits.cpp), or the policy's own language model
// rewrites a sentence with the image hidden (lm_rewrites); the pairs whose negative the verifier
// finds no worse than the positive are dropped and counted, which the paper could not do.
// Departure: the released code's sampler uses a = +1 (contrastive decoding); the default here
// samples from the noised image alone, and `--sampler two_pass --alpha A` offers the formula.
#include <algorithm>
#include <chrono>
#include <memory>
#include <sstream>

#include <torch/torch.h>

#include "builder_util.h"
#include "mmb/error.h"
#include "mmb/image_noise.h"
#include "mmb/pair_builders.h"
#include "mmb/progress.h"
#include "mmb/sentences.h"
#include "mmb/strings.h"
#include "mmb/vlm.h"

namespace mmb {
namespace {

int64_t word_count(const std::string& s) {
  std::istringstream in(s);
  std::string w;
  int64_t n = 0;
  while (in >> w) ++n;
  return n;
}

// Negative 1 of each row: the answer to the noised image.
std::vector<Generation> noised_answers(Vlm& vlm, const PromptBatch& batch, const BpoBuildOptions& o, uint64_t seed) {
  torch::NoGradGuard no_grad;
  const VlmInput clean = vlm.encode_prompts(batch.questions, batch.images);
  VlmInput noised = clean;
  auto gen = at::detail::createCPUGenerator(seed);
  noised.pixel_values = diffusion_noise(clean.pixel_values, o.noise_step, gen);
  SampleOptions s;
  s.temperature = o.temperature;
  s.top_p = o.top_p;
  s.stop = vlm.default_stop(o.max_new_tokens);
  s.seed = seed;
  const int64_t room = o.max_new_tokens + 1;
  if (o.sampler == "noised") {
    DecodeState state = prefill(vlm.model(), noised, room);
    return generate(vlm.model(), state, s);
  }
  DecodeState state = prefill(vlm.model(), clean, room);
  SecondContextProcessor two_pass(vlm.model(), prefill(vlm.model(), noised, room), o.alpha, 0.2);
  return generate(vlm.model(), state, s, {&two_pass});
}

// Negative 2 in "lm" mode: per row, one sentence of the reference (drawn with rng) cut and
// continued by the policy with every image key hidden; a short answer is answered afresh with the
// image hidden. Returns the rewritten text per row ("" when the policy wrote nothing).
std::vector<std::string> lm_rewrites(Vlm& vlm, const PromptBatch& batch, const WorldPromptSet& set,
                                     const BpoBuildOptions& o, std::mt19937_64& rng, uint64_t seed,
                                     int64_t& generated_tokens) {
  const size_t R = batch.prompt_of.size();
  std::vector<std::string> qs, prefixes;
  std::vector<const Image*> ims;
  std::vector<std::vector<std::string>> sentences(R);
  std::vector<size_t> cut(R, 0);
  std::vector<BdhsHead> heads(R);
  for (size_t r = 0; r < R; ++r) {
    const DescriptionPrompt& p = set.prompts[batch.prompt_of[r]];
    std::string prefix;
    if (p.task != "qa") {
      sentences[r] = split_sentences(p.reference);
      if (!sentences[r].empty()) {
        cut[r] = std::uniform_int_distribution<size_t>(0, sentences[r].size() - 1)(rng);
        heads[r] = bdhs_sentence_head(sentences[r][cut[r]], 0.0, rng);
        for (size_t i = 0; i < cut[r]; ++i) prefix += (prefix.empty() ? "" : " ") + sentences[r][i];
        if (!heads[r].text.empty()) prefix += (prefix.empty() ? "" : " ") + heads[r].text;
      }
    }
    qs.push_back(batch.questions[r]);
    ims.push_back(batch.images[r]);
    prefixes.push_back(prefix);
  }
  std::vector<Generation> gens;
  {
    torch::NoGradGuard no_grad;
    VlmInput in = vlm.encode_prompts(qs, ims, prefixes);
    in.key_keep = in.input_ids != vlm.model()->config().image_token_index;  // the language model alone
    SampleOptions s;
    s.temperature = o.temperature;
    s.top_p = o.top_p;
    s.stop = vlm.default_stop(o.max_new_tokens);
    s.stop.stop_at_sentence_end = true;
    s.seed = seed;
    DecodeState state = prefill(vlm.model(), in, o.max_new_tokens + 1);
    gens = generate(vlm.model(), state, s);
  }
  std::vector<std::string> out(R);
  for (size_t r = 0; r < R; ++r) {
    generated_tokens += int64_t(gens[r].tokens.size());
    std::vector<int64_t> ids;
    if (!heads[r].text.empty())
      for (int32_t t : vlm.tokenizer().encode(heads[r].text, /*add_bos=*/false)) ids.push_back(t);
    ids.insert(ids.end(), gens[r].tokens.begin(), gens[r].tokens.end());
    const std::string sentence = trim(vlm.decode(ids));
    if (sentences[r].empty()) {  // a short answer, or a reference without sentences
      out[r] = sentence;
      continue;
    }
    if (sentence.empty()) continue;
    std::string text;
    for (size_t i = 0; i < sentences[r].size(); ++i)
      text += (text.empty() ? "" : " ") + (i == cut[r] ? sentence : sentences[r][i]);
    out[r] = text;
  }
  return out;
}

}  // namespace

PairBuildReport build_bpo_pairs(const BpoBuildOptions& o) {
  if (o.out.empty()) fail("prefs bpo: no output file (--pairs)");
  if (o.world_dir.empty()) fail("prefs bpo: no world directory (--world)");
  if (o.sampler != "noised" && o.sampler != "two_pass")
    fail("prefs bpo: --sampler must be noised or two_pass, got '", o.sampler, "'");
  if (!o.noise_negative && !o.inject_negative) fail("prefs bpo: both negatives are off: nothing to build");
  if (o.batch_size < 1) fail("prefs bpo: --batch must be >= 1, got ", o.batch_size);
  if (o.max_words < 1) fail("prefs bpo: --max-words must be >= 1, got ", o.max_words);
  if (o.inject_mode != "rules" && o.inject_mode != "lm")
    fail("prefs bpo: --inject-mode must be rules or lm, got '", o.inject_mode, "'");
  if (!o.inject_kind.empty() && o.inject_mode == "lm")
    fail("prefs bpo: --inject-kind names a rule; the lm mode writes its own errors");
  if (!o.inject_kind.empty()) {
    const auto& k = injected_error_kinds();
    if (std::find(k.begin(), k.end(), o.inject_kind) == k.end())
      fail("prefs bpo: unknown --inject-kind '", o.inject_kind, "' (add_object, delete, color, shape, size, position, count)");
  }
  const auto t0 = std::chrono::steady_clock::now();
  Vlm vlm = Vlm::load(o.model_dir);
  vlm.model()->eval();
  const WorldPromptSet set = draw_world_prompts(o.world_dir, o.split, o.limit, o.seed, o.tasks);
  std::vector<world::Scene> train;
  for (const auto& sc : set.scenes)
    if (sc.split == world::Split::kTrain) train.push_back(sc);
  if (train.empty()) fail("prefs bpo: ", o.world_dir, " has no training scenes for the co-occurrence statistics");
  const world::ShapeStats stats = world::shape_stats(train);
  const world::Verifier verifier;
  std::mt19937_64 rng(shard_seed(o.seed, o.shard) ^ 0xb0b0b0b0ULL);
  PairBuildReport report;
  std::vector<PreferencePair> pairs;
  std::unique_ptr<Progress> bar;
  const std::pair<size_t, size_t> slice = o.shard.range(set.prompts.size());
  const size_t first = slice.first, last = slice.second;
  if (o.progress) bar = std::make_unique<Progress>("bpo", int64_t(last - first), "prompts");

  auto add_pair = [&](const DescriptionPrompt& p, const world::Scene& scene, const std::string& positive,
                      const ResponseJudgement& pos, const std::string& negative, const char* source, Json detail) {
    if (word_count(positive) > o.max_words || word_count(negative) > o.max_words) {
      report.dropped["too_long"]++;
      return;
    }
    const ResponseJudgement neg = judge_prompt_response(verifier, scene, p, negative);
    if (negative == positive || compare_judgements(pos, neg, o.judge_error_weight) <= 0) {
      report.dropped[std::string("not_worse_") + source]++;
      return;
    }
    pairs.push_back(world_pair(p, scene, positive, negative, source, pos, neg, {{"bpo", std::move(detail)}}));
    report.pairs++;
  };

  for (size_t start = first; start < last; start += size_t(o.batch_size)) {
    const size_t end = std::min(last, start + size_t(o.batch_size));
    const PromptBatch batch(set, o.world_dir, start, end);
    std::vector<Generation> noised;
    if (o.noise_negative) noised = noised_answers(vlm, batch, o, o.seed * 1000003ULL + uint64_t(start));
    std::vector<std::string> rewritten;
    if (o.inject_negative && o.inject_mode == "lm")
      rewritten = lm_rewrites(vlm, batch, set, o, rng, o.seed * 1000033ULL + uint64_t(start), report.generated_tokens);
    for (size_t r = 0; r < batch.prompt_of.size(); ++r) {
      const DescriptionPrompt& p = set.prompts[batch.prompt_of[r]];
      const world::Scene& scene = set.scenes[p.scene];
      if (p.reference.empty()) {
        report.dropped["no_reference"]++;
        continue;
      }
      const ResponseJudgement pos = judge_prompt_response(verifier, scene, p, p.reference);
      if (o.noise_negative) {
        report.generated_tokens += int64_t(noised[r].tokens.size());
        std::string answer = vlm.decode(noised[r].tokens);
        int64_t cut = 0;
        if (o.match_sentences && p.task != "qa") {  // no longer than the positive, in sentences
          const std::vector<SentenceSpan> spans = sentence_spans(answer);
          const size_t keep = split_sentences(p.reference).size();
          if (keep > 0 && spans.size() > keep) {
            cut = int64_t(spans.size() - keep);
            answer = answer.substr(0, spans[keep - 1].end);
          }
        }
        if (answer.find_first_not_of(" \t\n") == std::string::npos) {
          report.dropped["empty_bpo_noise"]++;
        } else {
          Json detail{{"noise_step", o.noise_step}, {"sampler", o.sampler}, {"alpha", o.alpha}};
          if (cut > 0) detail["sentences_cut"] = cut;
          add_pair(p, scene, p.reference, pos, answer, "bpo_noise", std::move(detail));
        }
      }
      if (o.inject_negative && o.inject_mode == "lm") {
        if (rewritten[r].empty()) {
          report.dropped["empty_bpo_inject"]++;
        } else {
          add_pair(p, scene, p.reference, pos, rewritten[r], "bpo_inject", Json{{"mode", "lm"}});
        }
      } else if (o.inject_negative && p.task == "qa") {  // a short answer's plausible error: the other yes/no
        const std::string flipped = opposite_yes_no(p.reference);
        if (flipped.empty()) {
          report.dropped["no_injection"]++;
        } else {
          add_pair(p, scene, p.reference, pos, flipped, "bpo_inject", Json{{"edits", {{{"kind", "yes_no"}}}}});
        }
      } else if (o.inject_negative) {
        EditedResponse injected;
        if (!inject_error(verifier, scene, p.reference, stats, rng, injected, o.inject_kind)) {
          report.dropped["no_injection"]++;
        } else {
          add_pair(p, scene, p.reference, pos, injected.text, "bpo_inject", Json{{"edits", injected.edits_json()}});
        }
      }
    }
    report.prompts += int64_t(end - start);
    if (bar) {
      bar->set_note(pairs_note(report, t0));
      bar->tick(int64_t(end - start));
    }
  }
  if (bar) bar->done();
  finish_build("prefs bpo", o.out, pairs, report, t0, o.shard);
  return report;
}

}  // namespace mmb
