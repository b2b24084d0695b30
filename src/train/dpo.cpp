// Offline DPO (`mmb train dpo`): the losses of dpo_loss.cpp over a preference file, the reference
// log-probs computed once and cached under a fingerprint of what they depend on.
//
// A pair is one forward of 2B rows (TRL's concatenated forward): the B chosen rows, then the B
// rejected rows; each image goes through the vision tower once and its features serve both rows.
#include "mmb/dpo.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>

#include "mmb/checkpoint.h"
#include "mmb/data.h"
#include "mmb/distributed.h"
#include "mmb/error.h"
#include "mmb/fingerprint.h"
#include "mmb/model.h"
#include "mmb/prefs.h"
#include "mmb/progress.h"
#include "mmb/run_dir.h"
#include "mmb/tokenizer.h"
#include "mmb/vlm.h"
#include "mmb/world.h"
#include "run_util.h"

namespace mmb {
namespace {

namespace fs = std::filesystem;

// One tokenized side of a pair: prompt + response + EOS, image tokens expanded.
struct Side {
  std::vector<int32_t> ids;
  std::vector<uint8_t> target;  // 1 on the response's tokens and its EOS
};

struct DpoBatch {
  torch::Tensor input_ids;       // (2B, T): chosen rows, then rejected rows; right-padded
  torch::Tensor attention_mask;  // (2B, T)
  torch::Tensor target;          // (2B, T) bool: response tokens (predicted from t - 1)
  torch::Tensor pixel_values;    // (n, 3, S, S) for the pairs with an image, in row order
  int64_t pairs = 0;
};

// Tokenizes prompt + response into `out`; false when it does not fit (and cannot be cut to fit).
bool tokenize_side(const Tokenizer& tok, const ChatTemplate& tmpl, const LlavaConfig& cfg, const PreferencePair& p,
                   const std::string& response, int64_t max_length, bool truncate, Side& out, int64_t* truncated) {
  std::vector<ChatTurn> turns = p.prompt;
  turns.back().assistant = response;
  ChatExample ex = expand_image_tokens(tokenize_chat(tok, tmpl, turns, !p.image.empty()), tok.image_id(),
                                       cfg.image_seq_length());
  out.ids = std::move(ex.ids);
  out.target.assign(out.ids.size(), 0);
  for (size_t t = ex.response_begin; t < out.ids.size(); ++t) out.target[t] = ex.loss_mask[t];
  if (int64_t(out.ids.size()) <= max_length) return true;
  // Only the response's end may be cut: the prompt (and the image span in it) stays whole.
  if (!truncate || int64_t(ex.response_begin) + 1 > max_length) return false;
  out.ids.resize(size_t(max_length));
  out.target.resize(size_t(max_length));
  ++*truncated;
  return true;
}

// The 2B rows of B pairs: chosen rows, then rejected rows, right-padded. `pixels` holds the
// images of the pairs that have one, in pair order.
DpoBatch collate_pairs(const std::vector<const Side*>& chosen, const std::vector<const Side*>& rejected,
                       const torch::Tensor& pixels, int64_t pad_id) {
  const int64_t B = int64_t(chosen.size());
  size_t T = 0;
  for (int64_t b = 0; b < B; ++b) T = std::max({T, chosen[size_t(b)]->ids.size(), rejected[size_t(b)]->ids.size()});
  auto ids = torch::full({2 * B, int64_t(T)}, pad_id, torch::kLong);
  auto mask = torch::zeros({2 * B, int64_t(T)}, torch::kLong);
  auto target = torch::zeros({2 * B, int64_t(T)}, torch::kBool);
  auto ia = ids.accessor<int64_t, 2>();
  auto ma = mask.accessor<int64_t, 2>();
  auto ta = target.accessor<bool, 2>();
  for (int64_t row = 0; row < 2 * B; ++row) {
    const Side& s = row < B ? *chosen[size_t(row)] : *rejected[size_t(row - B)];
    for (size_t t = 0; t < s.ids.size(); ++t) {
      ia[row][t] = s.ids[t];
      ma[row][t] = 1;
      ta[row][t] = s.target[t] != 0;
    }
  }
  return DpoBatch{ids, mask, target, pixels, B};
}

class PairDataset {
 public:
  PairDataset(const std::vector<PreferencePair>& pairs, const std::string& image_root, const Tokenizer& tok,
              const ChatTemplate& tmpl, const LlavaConfig& cfg, int64_t max_length, bool truncate)
      : pad_id_(cfg.text.pad_token_id) {
    std::map<std::string, int64_t> image_index;
    std::vector<torch::Tensor> images;
    for (const PreferencePair& p : pairs) {
      if (!p.image.empty()) check_under_root(p.image, p.where, "run_dpo");
      Side c, r;
      const bool ok = tokenize_side(tok, tmpl, cfg, p, p.chosen, max_length, truncate, c, &truncated_) &&
                      tokenize_side(tok, tmpl, cfg, p, p.rejected, max_length, truncate, r, &truncated_);
      if (!ok) {
        ++rejected_too_long_;
        if (rejected_examples_.size() < 5) rejected_examples_.push_back(p.where);
        continue;
      }
      int64_t img = -1;
      if (!p.image.empty()) {
        auto it = image_index.find(p.image);
        if (it == image_index.end()) {
          const std::string path = image_root.empty() ? p.image : image_root + "/" + p.image;
          try {
            images.push_back(load_image_u8(path, cfg.vision.image_size));
          } catch (const Error& e) {
            fail("run_dpo: ", p.where, ": ", e.what());
          }
          it = image_index.emplace(p.image, int64_t(images.size()) - 1).first;
        }
        img = it->second;
      }
      chosen_.push_back(std::move(c));
      rejected_.push_back(std::move(r));
      image_of_.push_back(img);
    }
    if (chosen_.empty()) fail("run_dpo: no usable pair (", rejected_too_long_, " over max_length ", max_length, ")");
    if (!images.empty()) images_ = torch::stack(images);
  }

  int64_t size() const { return int64_t(chosen_.size()); }
  int64_t rejected_too_long() const { return rejected_too_long_; }
  int64_t truncated() const { return truncated_; }
  const std::vector<std::string>& rejected_examples() const { return rejected_examples_; }

  DpoBatch batch(const std::vector<int64_t>& indices) const {
    std::vector<const Side*> c, r;
    std::vector<int64_t> imgs;
    for (int64_t i : indices) {
      c.push_back(&chosen_.at(size_t(i)));
      r.push_back(&rejected_.at(size_t(i)));
      if (image_of_[size_t(i)] >= 0) imgs.push_back(image_of_[size_t(i)]);
    }
    torch::Tensor pixels;
    if (!imgs.empty()) pixels = normalise_u8(images_.index_select(0, torch::tensor(imgs, torch::kLong)));
    return collate_pairs(c, r, pixels, pad_id_);
  }

 private:
  std::vector<Side> chosen_, rejected_;
  std::vector<int64_t> image_of_;
  torch::Tensor images_;  // (n, 3, S, S) uint8
  int64_t pad_id_;
  int64_t rejected_too_long_ = 0, truncated_ = 0;
  std::vector<std::string> rejected_examples_;
};

// Summed log-probs of each row's response tokens and their count: (2B,), (2B,).
std::pair<torch::Tensor, torch::Tensor> sequence_logps(LlavaForConditionalGeneration& model, const DpoBatch& b) {
  torch::Tensor feats;
  if (b.pixel_values.defined()) {
    auto f = model->image_features(b.pixel_values);  // (n, N, C): once per image, for both rows
    feats = torch::cat({f, f}, 0);                   // (2n, N, C): chosen rows' slots, then rejected rows'
  }
  auto hidden = model->forward_hidden({b.input_ids, b.attention_mask, {}, feats});  // (2B, T, C)
  const int64_t R = hidden.size(0), T = hidden.size(1), C = hidden.size(2);
  auto is_target = b.target.narrow(1, 1, T - 1);                                   // (2B, T-1)
  auto rows = is_target.reshape({-1}).nonzero().view({-1});                        // (N,)
  auto h = hidden.narrow(1, 0, T - 1).reshape({-1, C}).index_select(0, rows);      // (N, C)
  auto tgt = b.input_ids.narrow(1, 1, T - 1).reshape({-1}).index_select(0, rows);  // (N,)
  auto lp = torch::log_softmax(model->logits(h).to(torch::kFloat32), -1).gather(1, tgt.unsqueeze(1)).squeeze(1);
  auto logps = torch::zeros({R}, lp.options()).index_add(0, torch::div(rows, T - 1, "floor"), lp);  // (2B,)
  return {logps, is_target.sum(1).to(torch::kFloat32)};
}

struct RefLogps {
  std::vector<double> chosen, rejected, chosen_tokens, rejected_tokens;
};

Fingerprint reference_fingerprint(const DpoRunOptions& o, const std::string& ref_dir, const ChatTemplate& tmpl) {
  Fingerprint f;
  const std::string single = ref_dir + "/model.safetensors", index = ref_dir + "/model.safetensors.index.json";
  if (fs::exists(single)) {
    f.add_file("reference weights", single);
  } else if (fs::exists(index)) {
    f.add_file("reference weights", index);
    const Json idx = read_json_file(index);
    std::vector<std::string> shards;
    const Json weight_map = json_get<Json>(idx, "weight_map", index);
    if (!weight_map.is_object()) fail("run_dpo: ", index, ": 'weight_map' must be an object");
    for (auto it = weight_map.begin(); it != weight_map.end(); ++it) {
      if (!it->is_string()) fail("run_dpo: ", index, ": shard of '", it.key(), "' is not a file name");
      shards.push_back(it->get<std::string>());
    }
    std::sort(shards.begin(), shards.end());
    shards.erase(std::unique(shards.begin(), shards.end()), shards.end());
    for (const auto& s : shards) {
      check_under_root(s, index, "run_dpo");
      f.add_file("reference weights " + s, ref_dir + "/" + s);
    }
  } else {
    fail("run_dpo: ", ref_dir, " has no model.safetensors");
  }
  f.add_file("reference config", ref_dir + "/config.json");
  f.add_file("data", o.data);
  f.add("data options", Json{{"skip_bad", o.skip_bad}, {"image_root", o.image_root}});
  f.add("template", Json{{"name", tmpl.name}, {"system", tmpl.system}});
  f.add_file("tokenizer", o.model_dir + "/tokenizer.model");
  f.add("length", Json{{"max_length", o.max_length}, {"truncate_response", o.truncate_response}});
  return f;
}

RefLogps compute_reference(const std::string& ref_dir, const PairDataset& data, int64_t batch) {
  auto ref = load_llava(ref_dir);
  ref->eval();
  torch::NoGradGuard no_grad;
  RefLogps out;
  Progress progress("dpo reference", data.size(), "pairs");
  for (int64_t i = 0; i < data.size(); i += batch) {
    std::vector<int64_t> idx;
    for (int64_t k = i; k < std::min(data.size(), i + batch); ++k) idx.push_back(k);
    auto [lp, n] = sequence_logps(ref, data.batch(idx));
    const int64_t B = int64_t(idx.size());
    for (int64_t k = 0; k < B; ++k) {
      out.chosen.push_back(lp[k].item<double>());
      out.rejected.push_back(lp[B + k].item<double>());
      out.chosen_tokens.push_back(n[k].item<double>());
      out.rejected_tokens.push_back(n[B + k].item<double>());
    }
    progress.set(i + B);
  }
  progress.done();
  return out;
}

// The optimiser's parameter groups and the trainer's options of a DPO run.
std::vector<ParamGroup> dpo_param_groups(const DpoRunOptions& o, LlavaForConditionalGeneration& model) {
  ParamGroupOptions popts;
  popts.lr = o.lr;
  popts.weight_decay = o.weight_decay;
  if (o.freeze_vision) popts.frozen_prefixes.push_back("vision_tower.");
  return make_param_groups(*model, popts);
}

TrainOptions dpo_train_options(const DpoRunOptions& o, const Distributed& dist) {
  check_batch("run_dpo", o.batch_size, dist);
  return base_train_options(o.out, o.steps, o.warmup_ratio, o.grad_clip, o.grad_accum, o.checkpoint_every, o.seed);
}

// The step's loss (mean over its pairs; micro-batches and ranks weigh by their pairs) and TRL's
// metrics, each a mean over the pairs.
LossOutput dpo_step_output(const DpoInputs& in, const DpoLossOptions& options) {
  const DpoLossTerms t = dpo_loss(in, options);
  const int64_t B = t.loss.numel();
  LossOutput out;
  out.loss = t.loss.mean();
  out.weight = double(B);
  out.tokens = int64_t((in.chosen_tokens.sum() + in.rejected_tokens.sum()).item<double>());
  out.metrics["rewards/chosen"] = t.chosen_rewards.mean().item<double>();
  out.metrics["rewards/rejected"] = t.rejected_rewards.mean().item<double>();
  out.metrics["rewards/margins"] = (t.chosen_rewards - t.rejected_rewards).mean().item<double>();
  out.metrics["rewards/accuracies"] = (t.chosen_rewards > t.rejected_rewards).to(torch::kFloat32).mean().item<double>();
  out.metrics["logps/chosen"] = in.policy_chosen.detach().mean().item<double>();
  out.metrics["logps/rejected"] = in.policy_rejected.detach().mean().item<double>();
  return out;
}

StepStats run_online_dpo(const DpoRunOptions& o, RunDir* run, Distributed& dist, LlavaForConditionalGeneration& model,
                         const Tokenizer& tok, const ChatTemplate& tmpl) {
  if (o.world_dir.empty()) fail("run_dpo: online DPO needs a world directory (--world)");
  if (o.online_weight != "pairs" && o.online_weight != "prompts")
    fail("run_dpo: online_weight must be 'pairs' or 'prompts', got '", o.online_weight, "'");
  if (o.samples_per_prompt < 2) fail("run_dpo: online DPO needs samples_per_prompt >= 2, got ", o.samples_per_prompt);
  const std::vector<world::Scene> scenes = world::read_scenes(o.world_dir + "/scenes.jsonl");
  std::map<std::string, size_t> scene_index;
  for (size_t i = 0; i < scenes.size(); ++i) scene_index[scenes[i].id] = i;
  const std::vector<DescriptionPrompt> prompts = read_description_prompts(o.world_dir, o.online_split, scene_index);
  log_info("online dpo: " + std::to_string(prompts.size()) + " description prompts, " +
           std::to_string(o.samples_per_prompt) + " samples each, verifier judge");
  const std::string ref_dir = o.ref_model_dir.empty() ? o.model_dir : o.ref_model_dir;
  auto ref = load_llava(ref_dir);
  ref->eval();
  const world::Verifier verifier;
  TokenizerOptions topts;
  topts.image_id = int32_t(model->config().image_token_index);
  Vlm sampler(model, Tokenizer::load(o.model_dir + "/tokenizer.model", topts), tmpl);  // shares the policy's weights
  const int64_t image_size = model->config().vision.image_size;
  const int64_t max_length = std::min<int64_t>(o.max_length, model->config().text.max_position_embeddings);

  Trainer trainer(*model, dpo_param_groups(o, model), dpo_train_options(o, dist));
  ShardedIndexBatches batches(int64_t(prompts.size()), o.batch_size, o.seed, dist.rank(), dist.world_size());
  int64_t sampled = 0, tied = 0, saying_less = 0, sampled_tokens = 0;
  double sample_seconds = 0;
  trainer.set_data<std::vector<int64_t>>(batches, [&](std::vector<int64_t>& idx) {
    // 1. Sample k responses per prompt with the current policy (eval mode, no gradients).
    const int64_t K = o.samples_per_prompt;
    std::vector<Image> images;
    for (int64_t i : idx) images.push_back(read_image(o.world_dir + "/" + prompts[size_t(i)].image));
    std::vector<std::string> qs;
    std::vector<const Image*> ims;
    for (size_t b = 0; b < idx.size(); ++b) {
      qs.push_back(prompts[size_t(idx[b])].question);
      ims.push_back(&images[b]);
    }
    SampleOptions so;
    so.temperature = o.temperature;
    so.top_p = o.top_p;
    so.stop = sampler.default_stop(o.max_new_tokens);
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<VlmAnswer> answers =
        sample_rollouts(sampler, *model, qs, ims, K, so, o.seed, trainer.step_count(), idx.front());
    sample_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // 2. Judge; best vs worst of each prompt.
    std::vector<Side> chosen, rejected;
    std::vector<torch::Tensor> pix;
    double best_errors = 0, worst_errors = 0, best_recall = 0, worst_recall = 0;
    int64_t dummy_truncated = 0;
    for (size_t b = 0; b < idx.size(); ++b) {
      const DescriptionPrompt& p = prompts[size_t(idx[b])];
      std::vector<ResponseJudgement> j;
      for (int64_t k = 0; k < K; ++k) {
        const VlmAnswer& a = answers[b * size_t(K) + size_t(k)];
        sampled_tokens += int64_t(a.generation.tokens.size());
        j.push_back(judge_response(verifier, scenes[p.scene], a.text));
      }
      sampled += K;
      size_t best = 0, worst = 0;
      for (size_t k = 1; k < j.size(); ++k) {
        if (compare_judgements(j[k], j[best], o.judge_error_weight) > 0) best = k;
        if (compare_judgements(j[k], j[worst], o.judge_error_weight) < 0) worst = k;
      }
      const std::string& cb = answers[b * size_t(K) + best].text;
      const std::string& cw = answers[b * size_t(K) + worst].text;
      if (compare_judgements(j[best], j[worst], o.judge_error_weight) == 0 || cb == cw) {
        ++tied;
        continue;
      }
      // A chosen response must describe something: one that names no visible object truly, or
      // names fewer than the rejected one, would teach the policy that saying less is better.
      if (j[best].recall <= 0 || j[best].recall < j[worst].recall) {
        ++saying_less;
        continue;
      }
      PreferencePair pair;
      pair.prompt = {{p.question, ""}};
      pair.image = p.image;
      Side c, r;
      if (!tokenize_side(tok, tmpl, model->config(), pair, cb, max_length, true, c, &dummy_truncated) ||
          !tokenize_side(tok, tmpl, model->config(), pair, cw, max_length, true, r, &dummy_truncated))
        continue;
      chosen.push_back(std::move(c));
      rejected.push_back(std::move(r));
      pix.push_back(load_image_u8(o.world_dir + "/" + p.image, image_size));
      best_errors += double(j[best].errors());
      worst_errors += double(j[worst].errors());
      best_recall += j[best].recall;
      worst_recall += j[worst].recall;
    }
    LossOutput out;
    out.samples = int64_t(idx.size());
    out.metrics["online/dropped_prompts"] = double(int64_t(idx.size()) - int64_t(chosen.size()));
    if (chosen.empty()) {  // nothing to learn from this micro-batch: no gradient, a negligible weight
      out.loss = torch::zeros({}, torch::requires_grad());
      out.weight = 1e-9;
      return out;
    }
    // 3. DPO on the pairs: the policy with gradients, the reference without.
    std::vector<const Side*> cp, rp;
    for (size_t i = 0; i < chosen.size(); ++i) cp.push_back(&chosen[i]), rp.push_back(&rejected[i]);
    const DpoBatch batch = collate_pairs(cp, rp, normalise_u8(torch::stack(pix)), model->config().text.pad_token_id);
    auto [lp, n] = sequence_logps(model, batch);
    torch::Tensor ref_lp;
    {
      torch::NoGradGuard no_grad;
      ref_lp = sequence_logps(ref, batch).first;
    }
    const int64_t B = batch.pairs;
    DpoInputs in;
    in.policy_chosen = lp.narrow(0, 0, B);
    in.policy_rejected = lp.narrow(0, B, B);
    in.ref_chosen = ref_lp.narrow(0, 0, B);
    in.ref_rejected = ref_lp.narrow(0, B, B);
    in.chosen_tokens = n.narrow(0, 0, B);
    in.rejected_tokens = n.narrow(0, B, B);
    const LossOutput step = dpo_step_output(in, o.loss);
    out.loss = step.loss;
    out.weight = step.weight;
    if (o.online_weight == "prompts") {  // the pairs' losses summed over the batch's prompts
      out.loss = step.loss * double(B) / double(idx.size());
      out.weight = double(idx.size());
    }
    out.tokens = step.tokens;
    out.metrics.update(step.metrics);
    out.metrics["online/chosen_errors"] = best_errors / double(B);
    out.metrics["online/rejected_errors"] = worst_errors / double(B);
    out.metrics["online/chosen_recall"] = best_recall / double(B);
    out.metrics["online/rejected_recall"] = worst_recall / double(B);
    out.metrics["online/rollout_tokens_per_s"] = double(sampled_tokens) / std::max(1e-9, sample_seconds);
    return out;
  });
  StepStats last = train_and_save(trainer, run, dist, *model, to_json(model->config()), o.model_dir, o.out);
  log_info("online dpo: " + std::to_string(sampled) + " responses sampled, " + std::to_string(tied) +
           " prompts dropped as ties, " + std::to_string(saying_less) + " as saying less");
  if (run)
    run->set_result("online", {{"responses_sampled", sampled},
                               {"tied_prompts", tied},
                               {"saying_less_prompts", saying_less},
                               {"rollout_tokens_per_s", double(sampled_tokens) / std::max(1e-9, sample_seconds)}});
  return last;
}

}  // namespace

StepStats run_dpo(const DpoRunOptions& o, RunDir* run, DpoReferenceInfo* reference) {
  if (o.data.empty() && !o.online) fail("run_dpo: no preference file (--data)");
  if (o.out.empty()) fail("run_dpo: no output directory");
  check_dpo_options(o.loss);
  if (o.ref_batch < 1) fail("run_dpo: ref_batch must be >= 1");
  Distributed dist(dist_env_from_environment());
  torch::manual_seed(o.seed);
  const std::string ref_dir = o.ref_model_dir.empty() ? o.model_dir : o.ref_model_dir;
  auto model = load_llava(o.model_dir);
  if (dist.active()) dist.broadcast_module(*model);
  model->train();
  TokenizerOptions topts;
  topts.image_id = int32_t(model->config().image_token_index);
  Tokenizer tok = Tokenizer::load(o.model_dir + "/tokenizer.model", topts);
  const ChatTemplate tmpl = chat_template_for(o.model_dir);
  if (o.online) return run_online_dpo(o, run, dist, model, tok, tmpl);

  PairFileReport file_report;
  const auto pairs = read_preference_pairs(o.data, o.skip_bad, &file_report);
  const int64_t max_length = std::min<int64_t>(o.max_length, model->config().text.max_position_embeddings);
  PairDataset data(pairs, o.image_root, tok, tmpl, model->config(), max_length, o.truncate_response);
  log_info("dpo data: " + std::to_string(data.size()) + " of " + std::to_string(file_report.lines) + " pairs, " +
           std::to_string(file_report.skipped) + " malformed lines skipped, " +
           std::to_string(data.rejected_too_long()) + " over max_length, " + std::to_string(data.truncated()) +
           " responses cut");

  // The reference: from the cache when it was made from the same inputs, else one pass in eval mode.
  const std::string cache = o.ref_cache.empty() ? o.out + "/ref_logps.json" : o.ref_cache;
  const Fingerprint fp = reference_fingerprint(o, ref_dir, tmpl);
  DpoReferenceInfo info;
  info.path = cache;
  info.fingerprint = fp.id();
  RefLogps ref;
  if (fs::exists(cache)) {
    const Json j = read_json_file(cache);
    fp.require_same(Fingerprint::from_json(json_get<Json>(j, "fingerprint", cache), cache), "run_dpo: reference cache",
                    cache);
    ref.chosen = json_get<std::vector<double>>(j, "chosen", cache);
    ref.rejected = json_get<std::vector<double>>(j, "rejected", cache);
    ref.chosen_tokens = json_get<std::vector<double>>(j, "chosen_tokens", cache);
    ref.rejected_tokens = json_get<std::vector<double>>(j, "rejected_tokens", cache);
    for (const auto* v : {&ref.chosen, &ref.rejected, &ref.chosen_tokens, &ref.rejected_tokens})
      if (int64_t(v->size()) != data.size())
        fail("run_dpo: ", cache, ": ", v->size(), " reference values for ", data.size(), " pairs");
    info.cached = true;
    log_info("dpo reference: " + cache + " (cached, fingerprint " + fp.id() + ")");
  } else {
    ref = compute_reference(ref_dir, data, o.ref_batch);
    info.forward_pairs = data.size();
    if (dist.is_main())
      write_json_file(cache,
                      Json{{"fingerprint", fp.to_json()},
                           {"pairs", data.size()},
                           {"chosen", ref.chosen},
                           {"rejected", ref.rejected},
                           {"chosen_tokens", ref.chosen_tokens},
                           {"rejected_tokens", ref.rejected_tokens}},
                      -1);
  }
  if (reference) *reference = info;
  if (run) {
    run->set_result("data", {{"file", file_report.to_json()},
                             {"pairs", data.size()},
                             {"rejected_too_long", data.rejected_too_long()},
                             {"rejected_examples", data.rejected_examples()},
                             {"truncated", data.truncated()}});
    run->set_result("reference", {{"cached", info.cached},
                                  {"forward_pairs", info.forward_pairs},
                                  {"path", info.path},
                                  {"fingerprint", info.fingerprint}});
  }
  const auto as_tensor = [](const std::vector<double>& v) { return torch::tensor(v, torch::kFloat32); };
  const torch::Tensor ref_chosen = as_tensor(ref.chosen), ref_rejected = as_tensor(ref.rejected);

  Trainer trainer(*model, dpo_param_groups(o, model), dpo_train_options(o, dist));
  ShardedIndexBatches batches(data.size(), o.batch_size, o.seed, dist.rank(), dist.world_size());
  trainer.set_data<std::vector<int64_t>>(batches, [&](std::vector<int64_t>& idx) {
    const DpoBatch b = data.batch(idx);
    auto [lp, n] = sequence_logps(model, b);
    const int64_t B = b.pairs;
    auto sel = torch::tensor(idx, torch::kLong);
    DpoInputs in;
    in.policy_chosen = lp.narrow(0, 0, B);
    in.policy_rejected = lp.narrow(0, B, B);
    in.ref_chosen = ref_chosen.index_select(0, sel);
    in.ref_rejected = ref_rejected.index_select(0, sel);
    in.chosen_tokens = n.narrow(0, 0, B);
    in.rejected_tokens = n.narrow(0, B, B);
    LossOutput out = dpo_step_output(in, o.loss);
    out.samples = B;
    return out;
  });
  return train_and_save(trainer, run, dist, *model, to_json(model->config()), o.model_dir, o.out);
}

}  // namespace mmb
