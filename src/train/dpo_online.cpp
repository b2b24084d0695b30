// Online, mixed and avg DPO (`mmb train dpo --online`, `--mix-online P`, `--avg-gamma γ`; the
// alignment study, SPEC §4.1). Every step the policy samples k responses per prompt in eval mode
// (batched, KV cache), the judge ranks them (the verifier, CLIP, the likelihood or a mix), and DPO
// trains on pairs against the start model kept in memory as the reference (no cache: the
// responses are new every step).
//   online  each prompt of the batch: best vs worst of its samples (ties dropped and counted).
//   mixed   each slot of the batch: an online pair with probability mix_online, else an offline
//           pair of the preference file drawn uniformly (the study's p = 0.5).
//   avg     the batch is offline pairs; for each, the worst of the policy's samples for the same
//           prompt ỹ− gives a second loss: γ·L(y+, y−) + (1 − γ)·L(y+, ỹ−).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>

#include "dpo_internal.h"
#include "mmb/checkpoint.h"
#include "mmb/clip_scorer.h"
#include "mmb/data.h"
#include "mmb/elicitation.h"
#include "mmb/error.h"
#include "mmb/metrics.h"
#include "mmb/pair_builders.h"
#include "mmb/prefs.h"
#include "mmb/progress.h"
#include "mmb/run_dir.h"
#include "mmb/sentences.h"
#include "mmb/vlm.h"
#include "mmb/world.h"
#include "run_util.h"

namespace mmb {
namespace {

// The loss of a set of pairs (policy log-probs with gradients, the reference's without); with
// `corrupt` (mDPO's image term), also the chosen sides on their corrupted images.
DpoInputs pair_inputs(LlavaForConditionalGeneration& model, LlavaForConditionalGeneration& ref, const DpoBatch& batch,
                      const DpoBatch* corrupt = nullptr) {
  auto [lp, n] = sequence_logps(model, batch);
  torch::Tensor ref_lp, ref_corrupt;
  {
    torch::NoGradGuard no_grad;
    ref_lp = sequence_logps(ref, batch).first;
    if (corrupt) ref_corrupt = sequence_logps(ref, *corrupt).first;
  }
  DpoInputs in = split_pair_logps(lp, n, ref_lp);
  if (corrupt) {
    in.policy_chosen_corrupt = sequence_logps(model, *corrupt).first;
    in.ref_chosen_corrupt = ref_corrupt;
  }
  return in;
}

// The judge of a run (DpoRunOptions::judge): each sample's score, a weighted sum of the verifier's
// ResponseJudgement::score, the mean CLIPScore / 100 of its sentences and exp(mean token log-prob).
class OnlineJudge {
 public:
  explicit OnlineJudge(const DpoRunOptions& o)
      : weights_(judge_weights(o.judge, o.judge_mix)),
        mix_(o.judge == "mix"),
        error_weight_(o.judge_error_weight),
        recall_(o.judge_recall),
        false_weight_(o.judge_false_weight) {
    ResponseJudgement{}.score(error_weight_, recall_, false_weight_);  // a bad recall kind or weight fails here
    if (weight("clip") > 0) {
      if (o.clip_dir.empty()) fail("run_dpo: the ", o.judge, " judge scores with a CLIP model: give --clip DIR");
      clip_ = std::make_unique<ClipScorer>(ClipScorer::load(o.clip_dir));
    }
  }
  double weight(const std::string& name) const {
    auto it = weights_.find(name);
    return it == weights_.end() ? 0.0 : it->second;
  }
  std::string describe() const {
    if (!mix_) return weights_.begin()->first + " judge";
    std::string d;
    for (const auto& [name, w] : weights_) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%g", w);
      d += (d.empty() ? "" : " + ") + std::string(buf) + "·" + name;
    }
    return "mix judge (" + d + ")";
  }
  std::vector<double> scores(const std::vector<ResponseJudgement>& judged, const VlmAnswer* answers, const Image& image) {
    std::vector<double> s(judged.size(), 0.0);
    torch::Tensor pixels;
    for (size_t k = 0; k < judged.size(); ++k) {
      if (weight("verifier") > 0) s[k] += weight("verifier") * judged[k].score(error_weight_, recall_, false_weight_);
      if (weight("likelihood") > 0)
        s[k] += weight("likelihood") * (answers[k].generation.logprobs.empty() ? 0.0 : sequence_confidence(answers[k].generation.logprobs));
      if (weight("clip") > 0) {
        const auto sentences = split_sentences(answers[k].text);
        if (sentences.empty()) continue;  // an empty response earns no image reward
        if (!pixels.defined()) pixels = image_to_pixel_values(image, clip_->image_size()).unsqueeze(0);
        double mean = 0;
        for (double c : clip_->score(pixels, sentences)) mean += c;
        s[k] += weight("clip") * mean / double(sentences.size());
      }
    }
    return s;
  }
  // The verifier's recall of a judged response (strict or mention, as its score).
  double recall(const ResponseJudgement& j) const { return recall_ == "mention" ? j.mentioned : j.recall; }

 private:
  std::map<std::string, double> weights_;
  bool mix_;
  double error_weight_;
  std::string recall_;
  double false_weight_;
  std::unique_ptr<ClipScorer> clip_;
};

}  // namespace

std::vector<size_t> qa_balance_drops(const std::vector<int>& polarity) {
  int64_t yes = 0, no = 0;
  for (int p : polarity) yes += p > 0, no += p < 0;
  int64_t excess = std::abs(yes - no);
  const int sign = yes > no ? 1 : -1;
  std::vector<size_t> drops;
  for (size_t i = polarity.size(); i-- > 0 && excess > 0;)
    if (polarity[i] == sign) {
      drops.push_back(i);
      --excess;
    }
  return drops;
}

StepStats run_online_dpo(const DpoRunOptions& o, RunDir* run, Distributed& dist, LlavaForConditionalGeneration& model,
                         const Tokenizer& tok, const ChatTemplate& tmpl, const PairDataset* offline,
                         const std::vector<PreferencePair>& offline_pairs) {
  const bool avg = o.avg_gamma < 1.0;
  const bool mixed = o.online && offline != nullptr;
  if (o.world_dir.empty()) fail("run_dpo: online DPO needs a world directory (--world)");
  if (o.online_weight != "pairs" && o.online_weight != "prompts")
    fail("run_dpo: online_weight must be 'pairs' or 'prompts', got '", o.online_weight, "'");
  OnlineJudge judge(o);
  if (avg && (o.judge != "verifier"))
    fail("run_dpo: avg DPO ranks its samples against y+ with the verifier judge only, not '", o.judge, "'");
  if (o.samples_per_prompt < (avg ? 1 : 2))
    fail("run_dpo: online DPO needs samples_per_prompt >= ", avg ? 1 : 2, ", got ", o.samples_per_prompt);
  if (o.loop_pairs != "none" && o.loop_pairs != "stop" && o.loop_pairs != "name" && o.loop_pairs != "both")
    fail("run_dpo: loop_pairs must be none, stop, name or both, got '", o.loop_pairs, "'");
  const bool with_loop_pairs = o.loop_pairs != "none";
  if (with_loop_pairs && avg) fail("run_dpo: loop_pairs are online DPO's pairs; avg DPO takes none");
  if (o.greedy_sample && o.samples_per_prompt < 2)
    fail("run_dpo: greedy_sample takes one of the samples_per_prompt answers; it needs samples_per_prompt >= 2");
  const std::vector<world::Scene> scenes = world::read_scenes(o.world_dir + "/scenes.jsonl");
  std::map<std::string, size_t> scene_index;
  for (size_t i = 0; i < scenes.size(); ++i) scene_index[scenes[i].id] = i;
  // The prompts the policy answers: the world's description prompts, or (avg DPO) the offline pairs'.
  std::vector<DescriptionPrompt> prompts;
  if (avg) {
    for (int64_t i = 0; i < offline->size(); ++i) {
      const PreferencePair& p = offline_pairs[size_t(offline->source(i))];
      auto sid = p.extra.find("scene");
      if (sid == p.extra.end() || !sid->is_string() || !scene_index.count(sid->get<std::string>()))
        fail("run_dpo: avg DPO: ", p.where, ": no \"scene\" of the world ", o.world_dir,
             " (the judge needs the pair's scene; the world builders write it)");
      if (p.prompt.size() != 1) fail("run_dpo: avg DPO: ", p.where, ": a multi-turn prompt cannot be sampled");
      if (p.image.empty()) fail("run_dpo: avg DPO: ", p.where, ": a text-only pair has no scene to judge");
      auto task = p.extra.find("task");  // a QA pair's sides are short answers, judged as answers
      const bool qa = task != p.extra.end() && task->is_string() && task->get<std::string>() == "qa";
      prompts.push_back({p.prompt[0].user, p.image, scene_index[sid->get<std::string>()], p.chosen,
                         qa ? "qa" : "description"});
    }
  } else {
    if (o.online_tasks.empty()) fail("run_dpo: online DPO needs at least one task (online_tasks)");
    for (const std::string& task : o.online_tasks) {
      auto more = read_task_prompts(o.world_dir, o.online_split, task, scene_index);
      prompts.insert(prompts.end(), more.begin(), more.end());
    }
  }
  std::string tasks;
  for (const std::string& t : o.online_tasks) tasks += (tasks.empty() ? "" : ", ") + t;
  log_info(std::string(avg ? "avg" : mixed ? "mixed" : "online") + " dpo: " + std::to_string(prompts.size()) +
           (avg ? std::string(" offline pairs, ") : " prompts (" + tasks + "), ") +
           std::to_string(o.samples_per_prompt) +
           " samples each, " + judge.describe());
  const std::string ref_dir = o.ref_model_dir.empty() ? o.model_dir : o.ref_model_dir;
  auto ref = load_llava(ref_dir);
  ref->eval();
  const world::Verifier verifier;
  TokenizerOptions topts;
  topts.image_id = int32_t(model->config().image_token_index);
  Vlm sampler(model, Tokenizer::load(o.model_dir + "/tokenizer.model", topts), tmpl);  // shares the policy's weights
  const int64_t image_size = model->config().vision.image_size;
  const int64_t max_length = std::min<int64_t>(o.max_length, model->config().text.max_position_embeddings);
  const std::string image_root = avg ? o.image_root : o.world_dir;

  Trainer trainer(*model, dpo_param_groups(o, model), dpo_train_options(o, dist));
  if (auto eval = dpo_eval_fn(o, model, tok, tmpl)) trainer.set_eval(std::move(eval));
  ShardedIndexBatches batches(int64_t(prompts.size()), o.batch_size, o.seed, dist.rank(), dist.world_size());
  int64_t sampled = 0, tied = 0, saying_less = 0, length_unmatched = 0, qa_unbalanced = 0, sampled_tokens = 0,
          offline_used = 0, loop_pairs = 0;
  double sample_seconds = 0;
  trainer.set_data<std::vector<int64_t>>(batches, [&](std::vector<int64_t>& idx) {
    // 0. Mixed DPO: which slots take an offline pair (seeded by the step, so a resumed run agrees).
    std::vector<int64_t> offline_of(idx.size(), -1);
    if (mixed) {
      std::mt19937_64 rng(o.seed * 1000003ULL + uint64_t(trainer.step_count()) * 7919ULL + uint64_t(idx.front()));
      std::uniform_int_distribution<int64_t> pick(0, offline->size() - 1);
      for (auto& j : offline_of)
        if (std::uniform_real_distribution<double>(0, 1)(rng) >= o.mix_online) j = pick(rng);
    }
    // 1. Sample k responses per online prompt with the current policy (eval mode, no gradients).
    const int64_t K = o.samples_per_prompt;
    std::vector<size_t> online_slots;
    for (size_t b = 0; b < idx.size(); ++b)
      if (offline_of[b] < 0) online_slots.push_back(b);
    std::vector<Image> images;
    std::vector<std::string> qs;
    std::vector<const Image*> ims;
    images.reserve(online_slots.size());
    for (size_t b : online_slots) images.push_back(read_image(image_root + "/" + prompts[size_t(idx[b])].image));
    for (size_t s = 0; s < online_slots.size(); ++s) {
      qs.push_back(prompts[size_t(idx[online_slots[s]])].question);
      ims.push_back(&images[s]);
    }
    std::vector<VlmAnswer> answers;
    if (!qs.empty()) {
      SampleOptions so;
      so.temperature = o.temperature;
      so.top_p = o.top_p;
      so.stop = sampler.default_stop(o.max_new_tokens);
      const auto t0 = std::chrono::steady_clock::now();
      if (o.greedy_sample) {  // rows b·K … b·K + K − 2 sampled, b·K + K − 1 the greedy answer
        auto sampled_rows = sample_rollouts(sampler, *model, qs, ims, K - 1, so, o.seed, trainer.step_count(), idx.front());
        SampleOptions go = so;
        go.temperature = 0;
        go.top_p = 1;
        auto greedy = sample_rollouts(sampler, *model, qs, ims, 1, go, o.seed, trainer.step_count(), idx.front());
        for (size_t b = 0; b < qs.size(); ++b) {
          for (int64_t k = 0; k + 1 < K; ++k) answers.push_back(std::move(sampled_rows[b * size_t(K - 1) + size_t(k)]));
          answers.push_back(std::move(greedy[b]));
        }
      } else {
        answers = sample_rollouts(sampler, *model, qs, ims, K, so, o.seed, trainer.step_count(), idx.front());
      }
      sample_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    // 2. Judge; best vs worst of each prompt (avg: the worst beside the offline pair).
    std::vector<Side> chosen, rejected, worst_sides;  // online pairs; avg: the sampled ỹ−
    std::vector<torch::Tensor> pix, avg_pix;
    std::vector<int64_t> avg_pairs;                   // avg: offline pair of each ỹ−
    std::vector<const Side*> off_c, off_r;            // mixed: the offline slots
    std::vector<torch::Tensor> off_pix;
    double best_errors = 0, worst_errors = 0, best_recall = 0, worst_recall = 0, best_score = 0, worst_score = 0;
    double best_mentioned = 0, worst_mentioned = 0, best_tokens = 0, worst_tokens = 0;
    struct KeptPair {  // an online pair's judgements, for the step's metrics
      ResponseJudgement best, worst;
      double best_score, worst_score, best_tokens, worst_tokens;
      int polarity;  // QA pairs: +1 when the chosen answer is "yes", -1 when "no"; else 0
    };
    std::vector<KeptPair> kept;
    int64_t step_loop_pairs = 0;
    int64_t dummy_truncated = 0;
    for (size_t b = 0; b < idx.size(); ++b) {
      if (offline_of[b] >= 0) {
        off_c.push_back(&offline->chosen(offline_of[b]));
        off_r.push_back(&offline->rejected(offline_of[b]));
        off_pix.push_back(offline->image_u8(offline_of[b]));
        ++offline_used;
      }
    }
    for (size_t s = 0; s < online_slots.size(); ++s) {
      const DescriptionPrompt& p = prompts[size_t(idx[online_slots[s]])];
      std::vector<ResponseJudgement> j;
      for (int64_t k = 0; k < K; ++k) {
        const VlmAnswer& a = answers[s * size_t(K) + size_t(k)];
        sampled_tokens += int64_t(a.generation.tokens.size());
        j.push_back(judge_prompt_response(verifier, scenes[p.scene], p, a.text));
      }
      sampled += K;
      // The verifier alone, with the default recall and weights, ranks by compare_judgements' order.
      const std::vector<double> score = judge.scores(j, &answers[s * size_t(K)], images[s]);
      // Loop pairs (DpoRunOptions::loop_pairs): a description that repeats a sentence, up to the end
      // of the repeat (rejected), against the same text stopping before the repeat or naming a
      // still unmentioned object in its place (chosen): both share everything before the repeat.
      // The greedy answer (the last row with --greedy-sample) is looked at first.
      if (with_loop_pairs && !avg && p.task == "description") {
        for (int64_t n = 0; n < K; ++n) {
          const size_t k = size_t(K - 1 - n);
          const std::string& text = answers[s * size_t(K) + k].text;
          const int64_t r = j[k].repeated > 0 ? first_repeated_sentence(text) : -1;
          if (r < 1) continue;
          const std::vector<SentenceSpan> spans = sentence_spans(text);
          PreferencePair loop;
          loop.prompt = {{p.question, ""}};
          loop.image = p.image;
          const SentenceSpan &last = spans[size_t(r - 1)], &repeat = spans[size_t(r)];
          const std::string looped_text = text.substr(0, repeat.end);
          // "name": the chosen names a still unmentioned object in the repeat's place; "stop": it
          // ends before the repeat; "both": name while an object is unmentioned, else stop.
          const std::string next = o.loop_pairs == "stop" ? std::string()
                                                          : unmentioned_object_sentence(
                                                                verifier, scenes[p.scene], text.substr(0, last.end),
                                                                text.substr(repeat.begin, repeat.end - repeat.begin));
          if (next.empty() && o.loop_pairs == "name") continue;
          const std::string kept_text = next.empty() ? text.substr(0, last.end) : text.substr(0, repeat.begin) + next;
          Side c, w;
          if (!tokenize_side(tok, tmpl, model->config(), loop, kept_text, max_length, true, c, &dummy_truncated) ||
              !tokenize_side(tok, tmpl, model->config(), loop, looped_text, max_length, true, w, &dummy_truncated))
            break;
          if (!next.empty())
            for (Side* side : {&c, &w})
              if (side->ids.back() == tok.eos_id()) side->target.back() = 0;
          const ResponseJudgement jc = judge_response(verifier, scenes[p.scene], kept_text);
          const ResponseJudgement jw = judge_response(verifier, scenes[p.scene], looped_text);
          chosen.push_back(std::move(c));
          rejected.push_back(std::move(w));
          pix.push_back(load_image_u8(o.world_dir + "/" + p.image, image_size));
          const auto response_tokens = [](const Side& side) {
            return double(std::count(side.target.begin(), side.target.end(), uint8_t(1)));
          };
          kept.push_back({jc, jw, score[k], score[k], response_tokens(chosen.back()), response_tokens(rejected.back()), 0});
          ++step_loop_pairs;
          break;
        }
      }
      // With the verifier in the judge, the rejected description is the worst of the samples that
      // recall no more objects than the chosen one, so a pair never teaches that saying less is
      // better (avg DPO: the worst of all, set against y+).
      const bool says_less_rule = !avg && judge.weight("verifier") > 0 && p.task == "description";
      size_t best = 0, worst = 0;
      for (size_t k = 1; k < j.size(); ++k)
        if (score[k] - score[best] > 1e-12) best = k;
      // Length-matched pairs (descriptions and reasoning chains): the rejected's token count within
      // length_tolerance of the chosen's.
      const bool match_length = !avg && judge.weight("verifier") > 0 && o.length_tolerance > 0 &&
                                (p.task == "description" || p.task == "reasoning");
      const auto length_of = [&](size_t k) { return double(answers[s * size_t(K) + k].generation.tokens.size()); };
      // finish_chains: a chain without its final answer is rejected at any length.
      const auto unfinished = [&](size_t k) {
        return o.finish_chains && p.task == "reasoning" &&
               verifier.check_answer(answers[s * size_t(K) + k].text, "yes").answer.empty();
      };
      const auto length_matches = [&](size_t k) {
        return !match_length || std::abs(length_of(k) - length_of(best)) <= o.length_tolerance * length_of(best) ||
               unfinished(k);
      };
      worst = best;
      for (size_t k = 0; k < j.size(); ++k)
        if ((!says_less_rule || judge.recall(j[k]) <= judge.recall(j[best])) && length_matches(k) &&
            score[k] - score[worst] < -1e-12)
          worst = k;
      PreferencePair pair;
      pair.prompt = {{p.question, ""}};
      pair.image = p.image;
      const std::string& cw = answers[s * size_t(K) + worst].text;
      if (avg) {  // ỹ−: the worst sample, against the offline chosen y+ (the ground truth's judgement)
        const int64_t i = idx[online_slots[s]];
        const ResponseJudgement yplus = judge_prompt_response(verifier, scenes[p.scene], p, p.reference);
        Side w;
        if (compare_judgements(yplus, j[worst], o.judge_error_weight) <= 0 || cw == p.reference ||
            !tokenize_side(tok, tmpl, model->config(), pair, cw, max_length, true, w, &dummy_truncated)) {
          ++tied;  // no worse than y+: the pair keeps its offline term only
          continue;
        }
        worst_sides.push_back(std::move(w));
        avg_pairs.push_back(i);
        worst_errors += double(j[worst].errors());
        worst_recall += j[worst].recall;
        continue;
      }
      const std::string& cb = answers[s * size_t(K) + best].text;
      // A chosen description must describe something; with nothing below it that says no more,
      // the prompt is dropped as saying less.
      if (says_less_rule && (judge.recall(j[best]) <= 0 || worst == best)) {
        bool all_tied = true, any_below = false;
        for (size_t k = 0; k < j.size(); ++k) {
          all_tied = all_tied && std::abs(score[k] - score[best]) <= 1e-12;
          any_below = any_below || (judge.recall(j[k]) <= judge.recall(j[best]) && score[k] - score[best] < -1e-12);
        }
        ++(all_tied ? tied : match_length && judge.recall(j[best]) > 0 && any_below ? length_unmatched : saying_less);
        continue;
      }
      if (score[best] - score[worst] <= 1e-12 || cb == cw) {
        // A reasoning prompt whose worse samples all differ in length from the best is unmatched.
        bool any_below = false;
        for (size_t k = 0; k < j.size() && match_length && !says_less_rule; ++k)
          any_below = any_below || score[k] - score[best] < -1e-12;
        ++(any_below ? length_unmatched : tied);
        continue;
      }
      Side c, r;
      if (!tokenize_side(tok, tmpl, model->config(), pair, cb, max_length, true, c, &dummy_truncated) ||
          !tokenize_side(tok, tmpl, model->config(), pair, cw, max_length, true, r, &dummy_truncated))
        continue;
      chosen.push_back(std::move(c));
      rejected.push_back(std::move(r));
      pix.push_back(load_image_u8(o.world_dir + "/" + p.image, image_size));
      kept.push_back({j[best], j[worst], score[best], score[worst], length_of(best), length_of(worst), 0});
      if (p.task == "qa") {
        const std::string said = verifier.check_answer(cb, "yes").answer;
        kept.back().polarity = said == "yes" ? 1 : said == "no" ? -1 : 0;
      }
    }
    // Balanced short answers: as many "yes" as "no" chosen among the step's QA pairs (the last of
    // the larger side dropped), so the pairs cannot teach a bias towards either.
    if (o.qa_balance) {
      std::vector<int> polarity;
      for (const auto& k : kept) polarity.push_back(k.polarity);
      for (size_t i : qa_balance_drops(polarity)) {  // descending: earlier indices stay valid
        kept.erase(kept.begin() + int64_t(i));
        chosen.erase(chosen.begin() + int64_t(i));
        rejected.erase(rejected.begin() + int64_t(i));
        pix.erase(pix.begin() + int64_t(i));
        ++qa_unbalanced;
      }
    }
    int64_t qa_yes = 0, qa_no = 0;
    for (const auto& k : kept) {
      qa_yes += k.polarity > 0, qa_no += k.polarity < 0;
      best_errors += double(k.best.errors());
      worst_errors += double(k.worst.errors());
      best_recall += k.best.recall;
      worst_recall += k.worst.recall;
      best_mentioned += k.best.mentioned;
      worst_mentioned += k.worst.mentioned;
      best_score += k.best_score;
      worst_score += k.worst_score;
      best_tokens += k.best_tokens;
      worst_tokens += k.worst_tokens;
    }
    LossOutput out;
    out.samples = int64_t(idx.size());
    const int64_t pad = model->config().text.pad_token_id;
    if (avg) {
      // 3a. avg DPO: the offline pairs of the batch, and ỹ− where one was found.
      const DpoBatch corrupt = o.loss.image_weight > 0 ? offline->corrupt_batch(idx, o) : DpoBatch{};
      const DpoInputs base = pair_inputs(model, ref, offline->batch(idx), o.loss.image_weight > 0 ? &corrupt : nullptr);
      const DpoLossTerms t = dpo_loss(base, o.loss);
      torch::Tensor loss = t.loss;  // (B,)
      if (!avg_pairs.empty()) {
        std::vector<const Side*> c, w;
        std::vector<torch::Tensor> px;
        for (size_t k = 0; k < avg_pairs.size(); ++k) {
          c.push_back(&offline->chosen(avg_pairs[k]));
          w.push_back(&worst_sides[k]);
          px.push_back(offline->image_u8(avg_pairs[k]));
        }
        DpoLossOptions second = o.loss;  // mDPO's image term is about y+: counted once, in L(y+, y−)
        second.image_weight = 0;
        const DpoLossTerms t2 =
            dpo_loss(pair_inputs(model, ref, collate_pairs(c, w, normalise_u8(torch::stack(px)), pad)), second);
        std::vector<int64_t> slot;  // position of each ỹ− pair in the batch
        for (int64_t i : avg_pairs) slot.push_back(int64_t(std::find(idx.begin(), idx.end(), i) - idx.begin()));
        auto rows = torch::tensor(slot, torch::kLong);
        // γ·L(y+, y−) + (1 − γ)·L(y+, ỹ−) where ỹ− exists, L(y+, y−) elsewhere.
        loss = loss.index_copy(0, rows, o.avg_gamma * loss.index_select(0, rows) + (1.0 - o.avg_gamma) * t2.loss);
        out.metrics["avg/sampled_rejected_rewards"] = t2.rejected_rewards.mean().item<double>();
      }
      const LossOutput step = dpo_step_output(base, o.loss);
      out.loss = loss.mean();
      out.weight = double(idx.size());
      out.tokens = step.tokens;
      out.metrics.update(step.metrics);
      out.metrics["avg/pairs_with_sampled_rejected"] = double(avg_pairs.size()) / double(idx.size());
      if (!avg_pairs.empty()) {
        out.metrics["online/rejected_errors"] = worst_errors / double(avg_pairs.size());
        out.metrics["online/rejected_recall"] = worst_recall / double(avg_pairs.size());
      }
      out.metrics["online/rollout_tokens_per_s"] = double(sampled_tokens) / std::max(1e-9, sample_seconds);
      return out;
    }
    // 3b. online and mixed DPO: the online pairs, then the offline slots, in one batch.
    const int64_t n_online = int64_t(chosen.size());
    out.metrics["online/dropped_prompts"] = double(int64_t(online_slots.size()) - (n_online - step_loop_pairs));
    if (with_loop_pairs) out.metrics["online/loop_pairs"] = double(step_loop_pairs);
    loop_pairs += step_loop_pairs;
    if (mixed) out.metrics["mixed/offline_share"] = double(off_c.size()) / double(idx.size());
    if (chosen.empty() && off_c.empty()) {  // nothing to learn from this micro-batch: no gradient
      out.loss = torch::zeros({}, torch::requires_grad());
      out.weight = 1e-9;
      return out;
    }
    std::vector<const Side*> cp, rp;
    for (size_t i = 0; i < chosen.size(); ++i) cp.push_back(&chosen[i]), rp.push_back(&rejected[i]);
    cp.insert(cp.end(), off_c.begin(), off_c.end());
    rp.insert(rp.end(), off_r.begin(), off_r.end());
    for (auto& t : off_pix) pix.push_back(t);
    const torch::Tensor pixels = normalise_u8(torch::stack(pix));
    const DpoBatch batch = collate_pairs(cp, rp, pixels, pad);
    DpoBatch corrupt;
    if (o.loss.image_weight > 0) {  // m' of each slot, drawn from (seed, step, slot)
      std::vector<uint64_t> seeds;
      for (size_t k = 0; k < cp.size(); ++k) seeds.push_back(corruption_seed(o.seed, trainer.step_count(), int64_t(k)));
      corrupt = collate_pairs(cp, {}, corrupt_images(pixels, o, seeds), pad);
    }
    const DpoInputs in = pair_inputs(model, ref, batch, o.loss.image_weight > 0 ? &corrupt : nullptr);
    const int64_t B = batch.pairs;
    const LossOutput step = dpo_step_output(in, o.loss);
    out.loss = step.loss;
    out.weight = step.weight;
    if (o.online_weight == "prompts") {  // the pairs' losses summed over the batch's slots
      out.loss = step.loss * double(B) / double(idx.size());
      out.weight = double(idx.size());
    }
    out.tokens = step.tokens;
    out.metrics.update(step.metrics);
    if (n_online > 0) {
      out.metrics["online/chosen_errors"] = best_errors / double(n_online);
      out.metrics["online/rejected_errors"] = worst_errors / double(n_online);
      out.metrics["online/chosen_recall"] = best_recall / double(n_online);
      out.metrics["online/rejected_recall"] = worst_recall / double(n_online);
      out.metrics["online/chosen_mention_recall"] = best_mentioned / double(n_online);
      out.metrics["online/rejected_mention_recall"] = worst_mentioned / double(n_online);
      out.metrics["online/chosen_score"] = best_score / double(n_online);
      out.metrics["online/rejected_score"] = worst_score / double(n_online);
      out.metrics["online/chosen_tokens"] = best_tokens / double(n_online);
      if (qa_yes + qa_no > 0) {
        out.metrics["online/qa_chosen_yes"] = double(qa_yes);
        out.metrics["online/qa_chosen_no"] = double(qa_no);
      }
      out.metrics["online/rejected_tokens"] = worst_tokens / double(n_online);
    }
    out.metrics["online/rollout_tokens_per_s"] = double(sampled_tokens) / std::max(1e-9, sample_seconds);
    return out;
  });
  StepStats last = train_and_save(trainer, run, dist, *model, to_json(model->config()), o.model_dir, o.out);
  log_info(
      std::string(avg     ? "avg"
                  : mixed ? "mixed"
                          : "online") +
      " dpo: " + std::to_string(sampled) + " responses sampled, " + std::to_string(tied) +
      (avg ? " sampled negatives no worse than y+, " : " prompts dropped as ties, ") + std::to_string(saying_less) +
      " as saying less" +
      (o.length_tolerance > 0 ? ", " + std::to_string(length_unmatched) + " without a length-matched rejected" : "") +
      (o.qa_balance ? ", " + std::to_string(qa_unbalanced) + " QA pairs dropped to balance yes and no" : "") +
      (with_loop_pairs ? ", " + std::to_string(loop_pairs) + " loop pairs" : "") +
      (mixed ? ", " + std::to_string(offline_used) + " offline pairs used" : ""));
  if (run)
    run->set_result(avg ? "avg" : "online", {{"responses_sampled", sampled},
                                             {"tied_prompts", tied},
                                             {"saying_less_prompts", saying_less},
                                             {"length_unmatched_prompts", length_unmatched},
                                             {"qa_unbalanced_pairs", qa_unbalanced},
                                             {"loop_pairs", loop_pairs},
                                             {"offline_pairs_used", offline_used},
                                             {"rollout_tokens_per_s", double(sampled_tokens) / std::max(1e-9, sample_seconds)}});
  return last;
}

}  // namespace mmb
