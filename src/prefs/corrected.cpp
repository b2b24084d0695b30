// `mmb prefs corrected`: verifier-corrected on-policy pairs (include/mmb/pair_builders.h).
//
// Beyond the papers (the idea of OPA-DPO and TPR, which correct the policy's answers with humans
// or GPT-4V; SPEC §7): the rejected response is the policy's own answer and the chosen one is the
// same answer with each false sentence rewritten to a true one of the world's grammar, so the pair
// differs exactly where the answer is wrong and nowhere else — no length, style or topic signal
// for DPO to pick up instead of the truth.
#include <chrono>
#include <memory>

#include <torch/torch.h>

#include "builder_util.h"
#include "mmb/error.h"
#include "mmb/pair_builders.h"
#include "mmb/progress.h"
#include "mmb/sentences.h"
#include "mmb/vlm.h"

namespace mmb {

PairBuildReport build_corrected_pairs(const CorrectedBuildOptions& o) {
  if (o.out.empty()) fail("prefs corrected: no output file (--pairs)");
  if (o.world_dir.empty()) fail("prefs corrected: no world directory (--world): corrections need the verifier");
  if (o.samples_per_prompt < 1) fail("prefs corrected: --samples-per-prompt must be >= 1, got ", o.samples_per_prompt);
  if (o.batch_size < 1) fail("prefs corrected: --batch must be >= 1, got ", o.batch_size);
  if (o.temperature < 0) fail("prefs corrected: --temperature must be >= 0, got ", o.temperature);
  if (o.fix != "false" && o.fix != "hallucinated")
    fail("prefs corrected: --fix must be false or hallucinated, got '", o.fix, "'");
  const bool only_hallucinated = o.fix == "hallucinated";
  if (o.samples_per_prompt > 1 && o.temperature == 0)
    fail("prefs corrected: ", o.samples_per_prompt, " samples per prompt need --temperature > 0 (greedy repeats itself)");
  const auto t0 = std::chrono::steady_clock::now();
  Vlm vlm = Vlm::load(o.model_dir);
  vlm.model()->eval();
  const WorldPromptSet set = draw_world_prompts(o.world_dir, o.split, o.limit, o.seed, o.tasks);
  const world::Verifier verifier;
  PairBuildReport report;
  std::vector<PreferencePair> pairs;
  std::unique_ptr<Progress> bar;
  const std::pair<size_t, size_t> slice = o.shard.range(set.prompts.size());
  const size_t first = slice.first, last = slice.second;
  if (o.progress) bar = std::make_unique<Progress>("corrected", int64_t(last - first), "prompts");
  for (size_t start = first; start < last; start += size_t(o.batch_size)) {
    const size_t end = std::min(last, start + size_t(o.batch_size));
    const PromptBatch batch(set, o.world_dir, start, end, o.samples_per_prompt);
    SampleOptions s;
    s.temperature = o.temperature;
    s.top_p = o.top_p;
    s.stop = vlm.default_stop(o.max_new_tokens);
    s.seed = o.seed * 1000003ULL + uint64_t(start);
    std::vector<VlmAnswer> answers;
    {
      torch::NoGradGuard no_grad;
      answers = vlm.answer(batch.questions, batch.images, s);
    }
    for (size_t r = 0; r < answers.size(); ++r) {
      const DescriptionPrompt& p = set.prompts[batch.prompt_of[r]];
      const world::Scene& scene = set.scenes[p.scene];
      report.generated_tokens += int64_t(answers[r].generation.tokens.size());
      const std::string& answer = answers[r].text;
      if (p.task == "qa") {  // a short answer: wrong ones are corrected to the ground truth's
        const ResponseJudgement a = judge_answer(verifier, scene, p.reference, answer);
        if (a.false_sentences == 0 || answer == p.reference || answer.find_first_not_of(" \t\n") == std::string::npos) {
          report.dropped[a.false_sentences == 0 ? "all_true" : "empty"]++;
          continue;
        }
        pairs.push_back(world_pair(p, scene, p.reference, answer, "corrected",
                                   judge_answer(verifier, scene, p.reference, p.reference), a));
        report.pairs++;
        continue;
      }
      const ResponseJudgement before = judge_response(verifier, scene, answer);
      if (before.false_sentences == 0 || (only_hallucinated && before.hallucinated == 0)) {
        report.dropped["all_true"]++;
        continue;
      }
      const EditedResponse fixed = correct_response(verifier, scene, answer, only_hallucinated);
      const ResponseJudgement after = judge_response(verifier, scene, fixed.text);
      if (fixed.edits.empty() || compare_judgements(after, before, o.judge_error_weight) <= 0) {
        report.dropped["not_better"]++;
        continue;
      }
      pairs.push_back(world_pair(
          p, scene, fixed.text, answer, "corrected", after, before,
          {{"corrected", {{"fix", o.fix}, {"rewritten", int64_t(fixed.edits.size())}, {"edits", fixed.edits_json()}}}}));
      report.pairs++;
    }
    report.prompts += int64_t(end - start);
    if (bar) {
      bar->set_note(pairs_note(report, t0));
      bar->tick(int64_t(end - start));
    }
  }
  if (bar) bar->done();
  finish_build("prefs corrected", o.out, pairs, report, t0, o.shard);
  return report;
}

}  // namespace mmb
