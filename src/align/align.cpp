// `mmb align`: rounds of build pairs -> DPO -> evaluate, resumable phase by phase
// (include/mmb/align.h). CSR's loop generalised: the paper runs three rounds of its own builder;
// here every builder of src/prefs/ registers one line in the method table.
#include "mmb/align.h"

#include <filesystem>
#include <set>

#include "mmb/atomic_file.h"
#include "mmb/error.h"
#include "mmb/fingerprint.h"
#include "mmb/jsonl.h"
#include "mmb/phase.h"
#include "mmb/progress.h"
#include "mmb/run_dir.h"
#include "mmb/strings.h"
#include "mmb/vlm.h"

namespace mmb {

// The settings that decide a phase's output, for its fingerprint (every field but the per-round
// paths, which the chain of fingerprints already covers).
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(CsrOptions, num_beams, num_groups, diversity_penalty, max_sentence_tokens,
                                   max_sentences, keep_top, keep_bottom, prune_at, lambda, reward)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(DpoLossOptions, loss, beta, label_smoothing, rpo_alpha, anchor, image_weight)

namespace {

Json corrected_settings(const CorrectedBuildOptions& o) {
  return {{"samples_per_prompt", o.samples_per_prompt}, {"temperature", o.temperature}, {"top_p", o.top_p},
          {"max_new_tokens", o.max_new_tokens},         {"batch_size", o.batch_size},   {"fix", o.fix},
          {"tasks", o.tasks},
          {"judge_error_weight", o.judge_error_weight}};
}

Json bpo_settings(const BpoBuildOptions& o) {
  return {{"tasks", o.tasks},
          {"noise_step", o.noise_step},
          {"sampler", o.sampler},
          {"alpha", o.alpha},
          {"temperature", o.temperature},
          {"top_p", o.top_p},
          {"max_new_tokens", o.max_new_tokens},
          {"batch_size", o.batch_size},
          {"noise_negative", o.noise_negative},
          {"inject_negative", o.inject_negative},
          {"inject_mode", o.inject_mode},
          {"match_sentences", o.match_sentences},
          {"inject_kind", o.inject_kind},
          {"max_words", o.max_words},
          {"judge_error_weight", o.judge_error_weight}};
}

Json bdhs_settings(const BdhsBuildOptions& o) {
  return {{"tasks", o.tasks},         {"keep_threshold", o.keep_threshold}, {"noise_step", o.noise_step},
          {"swap_prob", o.swap_prob}, {"similarity", o.similarity},         {"max_tries", o.max_tries},
          {"temperature", o.temperature}, {"top_p", o.top_p},               {"max_sentence_tokens", o.max_sentence_tokens},
          {"max_new_tokens", o.max_new_tokens}, {"batch_size", o.batch_size},
          {"judge_error_weight", o.judge_error_weight}};
}

Json dpo_settings(const DpoRunOptions& o) {
  return {{"loss", o.loss},
          {"batch_size", o.batch_size},
          {"steps", o.steps},
          {"lr", o.lr},
          {"weight_decay", o.weight_decay},
          {"warmup_ratio", o.warmup_ratio},
          {"grad_clip", o.grad_clip},
          {"grad_accum", o.grad_accum},
          {"max_length", o.max_length},
          {"truncate_response", o.truncate_response},
          {"freeze_vision", o.freeze_vision},
          {"skip_bad", o.skip_bad},
          {"online",
           {{"split", o.online_split},
            {"samples_per_prompt", o.samples_per_prompt},
            {"temperature", o.temperature},
            {"top_p", o.top_p},
            {"max_new_tokens", o.max_new_tokens},
            {"tasks", o.online_tasks},
            {"judge_error_weight", o.judge_error_weight},
            {"judge_recall", o.judge_recall},
            {"judge_false_weight", o.judge_false_weight},
            {"length_tolerance", o.length_tolerance},
            {"finish_chains", o.finish_chains},
            {"qa_balance", o.qa_balance},
            {"greedy_sample", o.greedy_sample},
            {"loop_pairs", o.loop_pairs},
            {"judge", o.judge},
            {"judge_mix", o.judge_mix},
            {"clip", o.judge == "clip" || o.judge == "mix" ? o.clip_dir : ""},
            {"online_weight", o.online_weight},
            {"mix_online", o.mix_online},
            {"avg_gamma", o.avg_gamma}}}};
}

Json eval_settings(const EvalOptions& o) {
  return {{"split", o.split},
          {"suite", o.suite},
          {"limit", o.limit},
          {"limits", {o.pope_limit, o.chair_limit, o.mc_limit, o.idk_limit, o.modality_limit, o.reasoning_limit}},
          {"mc_style", o.mc_style},
          {"tokens", {o.short_tokens, o.description_tokens, o.reasoning_tokens}},
          {"temperatures", {o.temperatures.mc, o.temperatures.yes_no}},
          {"num_bins", o.num_bins}};
}

// Evaluates `model_dir` into `dir` as `mmb eval --out` does: results.json and samples.jsonl.
Json evaluate_into(const std::string& model_dir, const std::string& world_dir, EvalOptions e, const std::string& dir) {
  Vlm vlm = Vlm::load(model_dir);
  e.keep_samples = true;
  Json results = run_eval(vlm, world_dir, e);
  results["model"] = model_dir;
  results["data"] = world_dir;
  JsonlWriter all(dir + "/samples.jsonl");
  for (const auto& s : results["samples"]) all.write(s);
  all.close();
  results.erase("samples");
  write_json_file(dir + "/results.json", results);  // the phase's marker: written last
  return results;
}

const Json* find_path(const Json& j, std::initializer_list<const char*> path) {
  const Json* at = &j;
  for (const char* k : path) {
    if (!at->is_object() || !at->contains(k)) return nullptr;
    at = &(*at)[k];
  }
  return at;
}

std::string model_weights(const std::string& dir) {
  const std::string single = dir + "/model.safetensors";
  if (std::filesystem::exists(single)) return single;
  const std::string index = dir + "/model.safetensors.index.json";
  if (std::filesystem::exists(index)) return index;
  fail("run_align: ", dir, " has no model.safetensors (is it a model directory?)");
}

}  // namespace

namespace {

// A builder's options for one round: its own settings from the alignment options, the round's
// policy, prompts (the world's training split), seed and output.
template <class Options>
Options for_round(Options b, const AlignOptions& a, const std::string& model, const std::string& pairs, uint64_t seed) {
  b.model_dir = model;
  b.world_dir = a.world_dir;
  b.split = "train";
  b.limit = a.limit;
  b.seed = seed;
  b.out = pairs;
  b.progress = a.progress;
  return b;
}

const std::string& need_clip(const AlignOptions& a, const char* method) {
  if (a.clip_dir.empty()) fail("run_align: method ", method, " needs a CLIP (--clip)");
  return a.clip_dir;
}

}  // namespace

const std::vector<AlignMethod>& align_methods() {
  using Build = AlignMethod::Build;
  static const std::vector<AlignMethod> methods = {
      {"csr", "CSR: sentence-level beam search rewarded by likelihood and CLIPScore, best vs worst path", false,
       Build([](const AlignOptions& a, const std::string& model, const std::string& pairs, uint64_t seed) {
         CsrBuildOptions c;
         c.search = a.csr;
         c.clip_dir = need_clip(a, "csr");
         return build_csr_pairs(for_round(c, a, model, pairs, seed));
       })},
      {"corrected", "The policy's own answer vs the same answer with its false sentences corrected", false,
       Build([](const AlignOptions& a, const std::string& model, const std::string& pairs, uint64_t seed) {
         return build_corrected_pairs(for_round(a.corrected, a, model, pairs, seed));
       })},
      {"bpo", "BPO: the ground truth vs the answer to a noised image and vs an injected error", false,
       Build([](const AlignOptions& a, const std::string& model, const std::string& pairs, uint64_t seed) {
         return build_bpo_pairs(for_round(a.bpo, a, model, pairs, seed));
       })},
      {"bdhs", "BDHS: the ground truth vs the policy's rewrite of it with the image masked", false,
       Build([](const AlignOptions& a, const std::string& model, const std::string& pairs, uint64_t seed) {
         BdhsBuildOptions b = a.bdhs;
         b.clip_dir = need_clip(a, "bdhs");
         return build_bdhs_pairs(for_round(b, a, model, pairs, seed));
       })},
      {"online", "Online DPO: each step samples the policy, the verifier judge pairs best vs worst", true, nullptr},
  };
  return methods;
}

std::vector<const AlignMethod*> parse_align_method(const std::string& method) {
  std::vector<const AlignMethod*> out;
  std::set<std::string> seen;
  std::string known;
  for (const auto& m : align_methods()) known += (known.empty() ? "" : ", ") + m.name;
  for (const std::string& name : split_list(method, '+')) {
    const AlignMethod* found = nullptr;
    for (const auto& m : align_methods())
      if (m.name == name) found = &m;
    if (!found) fail("run_align: unknown method '", name, "' (", known, "; join builders with '+')");
    if (!seen.insert(name).second) fail("run_align: method '", name, "' is named twice in '", method, "'");
    out.push_back(found);
  }
  if (out.empty()) fail("run_align: no method given (", known, ")");
  if (out.size() > 1)
    for (const auto* m : out)
      if (m->online) fail("run_align: online DPO cannot be combined with builders ('", method, "')");
  return out;
}

EvalOptions default_align_eval() {
  EvalOptions e;
  e.suite = {"pope", "chair", "mc", "reasoning"};
  e.limit = -1;
  return e;
}

Json align_headline(const Json& r) {
  Json h = Json::object();
  auto put = [&](const char* name, std::initializer_list<const char*> path) {
    if (const Json* v = find_path(r, path); v && v->is_number()) h[name] = *v;
  };
  put("pope_random", {"pope", "random", "accuracy"});
  put("pope_popular", {"pope", "popular", "accuracy"});
  put("pope_adversarial", {"pope", "adversarial", "accuracy"});
  put("chair_s", {"chair", "chair_s"});
  put("chair_i", {"chair", "chair_i"});
  put("object_recall", {"chair", "object_recall"});
  put("mention_recall", {"chair", "mention_recall"});
  put("verifiable_share", {"chair", "verifiable_share"});
  put("repeating_share", {"chair", "repeating_share"});
  put("description_tokens", {"chair", "mean_tokens"});
  put("mc_accuracy", {"mc", "accuracy"});
  put("mc_ece", {"mc", "calibration", "ece"});
  put("pope_ece", {"pope", "all", "calibration", "ece"});
  put("reasoning_step_accuracy", {"reasoning", "step_accuracy"});
  put("reasoning_answer_accuracy", {"reasoning", "answer_accuracy"});
  return h;
}

Json run_align(const AlignOptions& o, RunDir* run) {
  if (o.out.empty()) fail("run_align: no output directory (--out)");
  if (o.model_dir.empty()) fail("run_align: no start model (--model)");
  if (o.world_dir.empty()) fail("run_align: no world directory (--world)");
  if (o.rounds < 1) fail("run_align: --rounds must be >= 1, got ", o.rounds);
  const auto methods = parse_align_method(o.method);
  const bool online = methods.front()->online;
  make_dirs(o.out);
  Json times = Json::object();
  Json summary = {{"method", o.method}, {"rounds", Json::array()}};

  // Round 0: the start model and the world (its config and seed) every later phase depends on.
  Fingerprint start;
  start.add_file("start model", model_weights(o.model_dir));
  start.add_file("world", o.world_dir + "/world.json");
  const Json eval_json = eval_settings(o.eval);
  if (o.eval_start) {
    const std::string dir = o.out + "/round0_eval";
    run_phase("round0 eval", dir, dir + "/results.json", chained_fingerprint(start, "eval", eval_json), run, times,
              [&] { evaluate_into(o.model_dir, o.world_dir, o.eval, dir); });
    summary["start"] = {{"model", o.model_dir}, {"eval", align_headline(read_json_file(dir + "/results.json"))}};
  }

  std::string model = o.model_dir;
  Fingerprint previous = start;
  for (int64_t r = 1; r <= o.rounds; ++r) {
    const std::string tag = "round" + std::to_string(r);
    const uint64_t seed = o.seed + uint64_t(r);
    Json round = {{"round", r}, {"start_model", model}};
    const std::string pairs_dir = o.out + "/" + tag + "_pairs", pairs = pairs_dir + "/pairs.jsonl";
    Fingerprint data_fp = previous;
    if (!online) {
      Json builder = Json::object();
      for (const auto* m : methods) {
        if (m->name == "csr") builder[m->name] = o.csr;
        else if (m->name == "corrected") builder[m->name] = corrected_settings(o.corrected);
        else if (m->name == "bpo") builder[m->name] = bpo_settings(o.bpo);
        else if (m->name == "bdhs") builder[m->name] = bdhs_settings(o.bdhs);
        else builder[m->name] = Json::object();
      }
      data_fp = chained_fingerprint(previous, "pairs",
                                    {{"method", o.method}, {"builders", builder}, {"limit", o.limit}, {"seed", seed}});
      run_phase(tag + " pairs", pairs_dir, pairs_dir + "/report.json", data_fp, run, times, [&] {
        std::vector<PreferencePair> all;
        Json reports = Json::object();
        for (const auto* m : methods) {
          const std::string file = pairs_dir + "/" + m->name + ".jsonl";
          reports[m->name] = m->build(o, model, file, seed).to_json();
          for (auto& p : read_preference_pairs(file)) all.push_back(std::move(p));
        }
        write_preference_pairs(pairs, all);
        write_json_file(pairs_dir + "/stats.json", preference_pair_stats(all));
        write_json_file(pairs_dir + "/report.json", reports);  // the phase's marker: written last
      });
      round["pairs"] = read_json_file(pairs_dir + "/report.json");
      round["pairs"]["stats"] = read_json_file(pairs_dir + "/stats.json");
    }

    const std::string dpo_dir = o.out + "/" + tag + "_dpo";
    DpoRunOptions d = o.dpo;
    d.model_dir = model;
    d.ref_model_dir = "";
    d.out = dpo_dir;
    d.ref_cache = "";
    d.seed = seed;
    d.online = online;
    d.world_dir = o.world_dir;  // online DPO's prompts, avg DPO's judge
    d.clip_dir = o.clip_dir;    // the clip and mix judges
    if (online) {
      d.data = "";
    } else {
      d.data = pairs;
      d.image_root = o.world_dir;
    }
    const Fingerprint dpo_fp = chained_fingerprint(data_fp, "dpo", dpo_settings(d));
    run_phase(tag + " dpo", dpo_dir, dpo_dir + "/model/model.safetensors", dpo_fp, run, times, [&] {
      RunInfo info;
      info.argv = {"mmb align: " + tag + " dpo phase"};
      info.seed = seed;
      info.config = {{"method", o.method}, {"dpo", dpo_settings(d)}, {"model", model}, {"data", d.data}};
      RunDir sub(dpo_dir, info);
      run_dpo(d, &sub);
      sub.finish();
    });
    model = dpo_dir + "/model";

    const std::string eval_dir = o.out + "/" + tag + "_eval";
    run_phase(tag + " eval", eval_dir, eval_dir + "/results.json", chained_fingerprint(dpo_fp, "eval", eval_json), run,
              times, [&] { evaluate_into(model, o.world_dir, o.eval, eval_dir); });
    round["model"] = model;
    round["eval"] = align_headline(read_json_file(eval_dir + "/results.json"));
    summary["rounds"].push_back(round);
    previous = dpo_fp;  // the next round starts from this model; eval settings do not reach it
  }
  summary["seconds"] = times;
  write_json_file(o.out + "/align.json", summary);
  return summary;
}

}  // namespace mmb
