// Offline DPO (`mmb train dpo`): the losses of dpo_loss.cpp over a preference file, the reference
// log-probs computed once and cached under a fingerprint of what they depend on. Online, mixed and
// avg DPO are in dpo_online.cpp.
//
// A batch of B pairs is one forward of B packed rows, [prompt | chosen | rejected]: each image goes
// through the vision tower once and each prompt through the decoder once (TRL's concatenated
// forward runs 2B rows, encoding both again for the rejected side).
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
#include "mmb/image_noise.h"
#include "mmb/model.h"
#include "mmb/prefs.h"
#include "mmb/progress.h"
#include "mmb/run_dir.h"
#include "mmb/tokenizer.h"
#include "mmb/vlm.h"
#include "mmb/world.h"
#include "dpo_internal.h"
#include "run_util.h"

namespace mmb {

namespace fs = std::filesystem;

// Tokenizes prompt + response into `out`; false when it does not fit (and cannot be cut to fit).
bool tokenize_side(const Tokenizer& tok, const ChatTemplate& tmpl, const LlavaConfig& cfg, const PreferencePair& p,
                   const std::string& response, int64_t max_length, bool truncate, Side& out, int64_t* truncated) {
  std::vector<ChatTurn> turns = p.prompt;
  turns.back().assistant = response;
  ChatExample chat;
  if (response.empty()) {  // a sampled answer that ended at once: the response is the end token alone
    chat.ids = tokenize_prompt(tok, tmpl, turns, !p.image.empty());
    chat.loss_mask.assign(chat.ids.size(), 0);
    chat.response_begin = chat.ids.size();
    chat.ids.push_back(tok.eos_id());
    chat.loss_mask.push_back(1);
  } else {
    chat = tokenize_chat(tok, tmpl, turns, !p.image.empty());
  }
  ChatExample ex = expand_image_tokens(chat, tok.image_id(), cfg.image_seq_length());
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

DpoBatch collate_pairs(const std::vector<const Side*>& chosen, const std::vector<const Side*>& rejected,
                       const torch::Tensor& pixels, int64_t pad_id) {
  const int64_t B = int64_t(chosen.size());
  const bool single = rejected.empty();
  if (!single && int64_t(rejected.size()) != B)
    fail("collate_pairs: ", B, " chosen sides but ", rejected.size(), " rejected");
  auto first_target = [](const Side& s) {
    size_t t = 0;
    while (t < s.ids.size() && !s.target[t]) ++t;
    return t;
  };
  std::vector<size_t> shared(static_cast<size_t>(B));
  size_t T = 0;
  for (int64_t b = 0; b < B; ++b) {
    const Side &c = *chosen[size_t(b)], &r = single ? c : *rejected[size_t(b)];
    size_t p = std::min(first_target(c), first_target(r));
    size_t common = 0;
    while (common < p && c.ids[common] == r.ids[common]) ++common;
    shared[size_t(b)] = common;
    T = std::max(T, single ? c.ids.size() : c.ids.size() + r.ids.size() - common);
  }
  auto ids = torch::full({B, int64_t(T)}, pad_id, torch::kLong);
  auto mask = torch::zeros({B, int64_t(T)}, torch::kLong);
  auto pos = torch::zeros({B, int64_t(T)}, torch::kLong);
  auto seg = torch::zeros({B, int64_t(T)}, torch::kLong);
  auto ia = ids.accessor<int64_t, 2>(), ma = mask.accessor<int64_t, 2>(), pa = pos.accessor<int64_t, 2>(),
       sa = seg.accessor<int64_t, 2>();
  std::vector<int64_t> source, token, side;
  int64_t forwarded = 0;
  for (int64_t b = 0; b < B; ++b) {
    const size_t P = shared[size_t(b)];
    size_t t = 0;
    for (; t < P; ++t) ia[b][t] = chosen[size_t(b)]->ids[t], ma[b][t] = 1, pa[b][t] = int64_t(t);
    for (int64_t k = 0; k < (single ? 1 : 2); ++k) {
      const Side& s = k == 0 ? *chosen[size_t(b)] : *rejected[size_t(b)];
      const size_t begin = t;  // packed index of the side's position P
      for (size_t i = P; i < s.ids.size(); ++i, ++t) {
        ia[b][t] = s.ids[i], ma[b][t] = 1, pa[b][t] = int64_t(i), sa[b][t] = k + 1;
        if (s.target[i] && i > 0) {  // predicted from the side's previous position: the prompt's last, or its own
          source.push_back(b * int64_t(T) + int64_t(i == P ? P - 1 : begin + (i - 1 - P)));
          token.push_back(s.ids[i]);
          side.push_back(k * B + b);
        }
      }
    }
    forwarded += int64_t(t);
  }
  DpoBatch out;
  out.input_ids = ids;
  out.attention_mask = mask;
  out.position_ids = pos;
  out.attend = packed_attention(seg);
  out.source = torch::tensor(source, torch::kLong);
  out.token = torch::tensor(token, torch::kLong);
  out.side = torch::tensor(side, torch::kLong);
  out.pixel_values = pixels;
  out.pairs = B;
  out.outputs = single ? B : 2 * B;
  out.forwarded_tokens = forwarded;
  return out;
}

PairDataset::PairDataset(const std::vector<PreferencePair>& pairs, const std::string& image_root, const Tokenizer& tok,
                         const ChatTemplate& tmpl, const LlavaConfig& cfg, int64_t max_length, bool truncate)
    : pad_id_(cfg.text.pad_token_id) {
  std::map<std::string, int64_t> image_index;
  std::vector<torch::Tensor> images;
  for (size_t k = 0; k < pairs.size(); ++k) {
    const PreferencePair& p = pairs[k];
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
    source_.push_back(int64_t(k));
  }
  if (chosen_.empty()) fail("run_dpo: no usable pair (", rejected_too_long_, " over max_length ", max_length, ")");
  if (!images.empty()) images_ = torch::stack(images);
}

DpoBatch PairDataset::batch(const std::vector<int64_t>& indices) const {
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

DpoBatch PairDataset::corrupt_batch(const std::vector<int64_t>& indices, const DpoRunOptions& o) const {
  std::vector<const Side*> c;
  std::vector<int64_t> imgs;
  std::vector<uint64_t> seeds;
  for (int64_t i : indices) {
    if (image_of_[size_t(i)] < 0)
      fail("run_dpo: mDPO's image term (--image-weight) needs an image in every pair; pair ", source_[size_t(i)] + 1,
           " has none");
    c.push_back(&chosen_.at(size_t(i)));
    imgs.push_back(image_of_[size_t(i)]);
    seeds.push_back(corruption_seed(o.seed, i));
  }
  auto pixels = normalise_u8(images_.index_select(0, torch::tensor(imgs, torch::kLong)));
  return collate_pairs(c, {}, corrupt_images(pixels, o, seeds), pad_id_);
}

DpoInputs split_pair_logps(const torch::Tensor& policy, const torch::Tensor& counts, const torch::Tensor& ref) {
  const int64_t B = policy.size(0) / 2;
  DpoInputs in;
  in.policy_chosen = policy.narrow(0, 0, B);
  in.policy_rejected = policy.narrow(0, B, B);
  in.ref_chosen = ref.narrow(0, 0, B);
  in.ref_rejected = ref.narrow(0, B, B);
  in.chosen_tokens = counts.narrow(0, 0, B);
  in.rejected_tokens = counts.narrow(0, B, B);
  return in;
}

uint64_t corruption_seed(uint64_t seed, int64_t a, int64_t b) {
  return seed * 0x9E3779B97F4A7C15ULL + uint64_t(a) * 1000003ULL + uint64_t(b) * 7919ULL + 17ULL;
}

torch::Tensor corrupt_images(const torch::Tensor& pixels, const DpoRunOptions& o, const std::vector<uint64_t>& seeds) {
  if (int64_t(seeds.size()) != pixels.size(0)) fail("corrupt_images: ", seeds.size(), " seeds for ", pixels.size(0), " images");
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < pixels.size(0); ++i) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seeds[size_t(i)]);
    auto one = pixels.narrow(0, i, 1);
    if (o.image_corruption == "crop") out.push_back(random_crop_image(one, o.image_keep, gen));
    else if (o.image_corruption == "noise") out.push_back(diffusion_noise(one, o.image_noise_step, gen));
    else fail("run_dpo: unknown image corruption '", o.image_corruption, "' (crop | noise)");
  }
  return torch::cat(out, 0);  // (n, 3, S, S)
}

torch::Tensor PairDataset::image_u8(int64_t i) const {
  const int64_t img = image_of_.at(size_t(i));
  return img < 0 ? torch::Tensor() : images_[img];
}

// Summed log-probs of each side's response tokens and their count: (2B,), (2B,).
std::pair<torch::Tensor, torch::Tensor> sequence_logps(LlavaForConditionalGeneration& model, const DpoBatch& b) {
  VlmInput in{b.input_ids, b.attention_mask};
  if (b.pixel_values.defined()) in.image_features = model->image_features(b.pixel_values);  // (n, N, C): once per pair
  in.position_ids = b.position_ids;
  in.attend = b.attend;
  auto hidden = model->forward_hidden(in);                                       // (B, T, C)
  auto h = hidden.reshape({-1, hidden.size(2)}).index_select(0, b.source);       // (N, C)
  auto logits = model->logits(h);                                                // (N, V)
  logits = logits.to(at::promote_types(logits.scalar_type(), torch::kFloat32));  // bf16 / half: in float32
  auto lp = torch::log_softmax(logits, -1).gather(1, b.token.unsqueeze(1)).squeeze(1);
  auto logps = torch::zeros({b.outputs}, lp.options()).index_add(0, b.side, lp);  // (2B,) or (B,)
  auto counts = torch::zeros({b.outputs}, lp.options()).index_add(0, b.side, torch::ones_like(lp));
  return {logps, counts};
}

namespace {

struct RefLogps {
  std::vector<double> chosen, rejected, chosen_tokens, rejected_tokens;
  std::vector<double> chosen_corrupt;  // mDPO's image term only: the chosen on the corrupted image
};

bool image_term(const DpoRunOptions& o) { return o.loss.image_weight > 0; }

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
  if (image_term(o))  // only then: a cache made without the term stays valid for runs without it
    f.add("image corruption", Json{{"kind", o.image_corruption},
                                   {"keep", o.image_keep},
                                   {"noise_step", o.image_noise_step},
                                   {"seed", o.seed}});
  return f;
}

// Every pair's summed log-probs and token counts under `model`, in batches of `batch` (no
// gradients: the reference pass and the held-out evaluation).
// With o given and mDPO's image term on, also the chosen sides on their corrupted images.
RefLogps pair_logps(LlavaForConditionalGeneration& model, const PairDataset& data, int64_t batch, const char* label,
                    const DpoRunOptions* o = nullptr) {
  torch::NoGradGuard no_grad;
  RefLogps out;
  Progress progress(label, data.size(), "pairs");
  for (int64_t i = 0; i < data.size(); i += batch) {
    std::vector<int64_t> idx;
    for (int64_t k = i; k < std::min(data.size(), i + batch); ++k) idx.push_back(k);
    auto [lp, n] = sequence_logps(model, data.batch(idx));
    const int64_t B = int64_t(idx.size());
    const auto put = [](std::vector<double>& v, const torch::Tensor& t) {
      const auto c = t.to(torch::kFloat64).contiguous();
      v.insert(v.end(), c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
    };
    put(out.chosen, lp.narrow(0, 0, B));
    put(out.rejected, lp.narrow(0, B, B));
    put(out.chosen_tokens, n.narrow(0, 0, B));
    put(out.rejected_tokens, n.narrow(0, B, B));
    if (o && image_term(*o)) put(out.chosen_corrupt, sequence_logps(model, data.corrupt_batch(idx, *o)).first);
    progress.set(i + B);
  }
  progress.done();
  return out;
}

RefLogps compute_reference(const std::string& ref_dir, const PairDataset& data, const DpoRunOptions& o) {
  auto ref = load_llava(ref_dir);
  ref->eval();
  return pair_logps(ref, data, o.ref_batch, "dpo reference", &o);
}

}  // namespace

std::function<Json(int64_t)> dpo_eval_fn(const DpoRunOptions& o, LlavaForConditionalGeneration& model,
                                          const Tokenizer& tok, const ChatTemplate& tmpl) {
  if (o.eval_data.empty()) return nullptr;
  PairFileReport report;
  const auto pairs = read_preference_pairs(o.eval_data, o.skip_bad, &report);
  const int64_t max_length = std::min<int64_t>(o.max_length, model->config().text.max_position_embeddings);
  auto data = std::make_shared<PairDataset>(pairs, o.image_root, tok, tmpl, model->config(), max_length,
                                            o.truncate_response);
  if (data->size() == 0) fail("run_dpo: ", o.eval_data, ": no held-out pair fits max_length ", max_length);
  const std::string ref_dir = o.ref_model_dir.empty() ? o.model_dir : o.ref_model_dir;
  auto ref = std::make_shared<RefLogps>(compute_reference(ref_dir, *data, o));
  log_info("dpo eval: " + std::to_string(data->size()) + " held-out pairs of " + o.eval_data);
  return [policy = model, o, data, ref](int64_t) mutable {  // the trainer calls it in eval mode, without gradients
    const auto as_tensor = [](const std::vector<double>& v) { return torch::tensor(v, torch::kFloat32); };
    const RefLogps now = pair_logps(policy, *data, o.ref_batch, "dpo eval", &o);
    DpoInputs in;
    in.policy_chosen = as_tensor(now.chosen);
    in.policy_rejected = as_tensor(now.rejected);
    in.chosen_tokens = as_tensor(now.chosen_tokens);
    in.rejected_tokens = as_tensor(now.rejected_tokens);
    in.ref_chosen = as_tensor(ref->chosen);
    in.ref_rejected = as_tensor(ref->rejected);
    if (image_term(o)) {
      in.policy_chosen_corrupt = as_tensor(now.chosen_corrupt);
      in.ref_chosen_corrupt = as_tensor(ref->chosen_corrupt);
    }
    const LossOutput out = dpo_step_output(in, o.loss);
    Json j = out.metrics;
    j["loss"] = out.loss.item<double>();
    j["pairs"] = data->size();
    return j;
  };
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
  if (o.eval_every < 0) fail("run_dpo: eval_every must be >= 0, got ", o.eval_every);
  TrainOptions t = base_train_options(o.out, o.steps, o.warmup_ratio, o.grad_clip, o.grad_accum, o.checkpoint_every, o.seed);
  t.eval_every = o.eval_data.empty() ? 0 : o.eval_every;
  return t;
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
  if (options.image_weight > 0)  // mDPO: β(log πθ(y+|m') − log πref(y+|m')), below rewards/chosen when it works
    out.metrics["rewards/chosen_corrupt"] =
        (options.beta * (in.policy_chosen_corrupt.detach() - in.ref_chosen_corrupt)).mean().item<double>();
  return out;
}

// Mixed DPO (online with data, mix_online < 1) and avg DPO (avg_gamma < 1): their option checks.
static void check_mix_options(const DpoRunOptions& o) {
  if (!(o.mix_online >= 0 && o.mix_online <= 1)) fail("run_dpo: mix_online must be in [0, 1], got ", o.mix_online);
  if (!(o.avg_gamma >= 0 && o.avg_gamma <= 1)) fail("run_dpo: avg_gamma must be in [0, 1], got ", o.avg_gamma);
  if (o.mix_online < 1 && !(o.online && !o.data.empty()))
    fail("run_dpo: mixed DPO (mix_online < 1) needs both --online and --data");
  if (o.avg_gamma < 1 && o.online) fail("run_dpo: avg DPO (avg_gamma < 1) and online DPO exclude each other");
  if (o.avg_gamma < 1 && o.world_dir.empty()) fail("run_dpo: avg DPO needs a world directory (--world) for its judge");
  if (o.online && !o.data.empty() && o.mix_online >= 1)
    fail("run_dpo: --data with --online is mixed DPO: give --mix-online P < 1");
}

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
  check_mix_options(o);
  if (o.online && o.data.empty()) return run_online_dpo(o, run, dist, model, tok, tmpl, nullptr, {});

  PairFileReport file_report;
  const auto pairs = read_preference_pairs(o.data, o.skip_bad, &file_report);
  const int64_t max_length = std::min<int64_t>(o.max_length, model->config().text.max_position_embeddings);
  PairDataset data(pairs, o.image_root, tok, tmpl, model->config(), max_length, o.truncate_response);
  if (o.online || o.avg_gamma < 1.0) {  // mixed or avg DPO: the offline pairs beside the policy's own samples
    if (run) run->set_result("data", {{"file", file_report.to_json()}, {"pairs", data.size()}});
    return run_online_dpo(o, run, dist, model, tok, tmpl, &data, pairs);
  }
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
    if (image_term(o)) ref.chosen_corrupt = json_get<std::vector<double>>(j, "chosen_corrupt", cache);
    for (const auto* v : {&ref.chosen, &ref.rejected, &ref.chosen_tokens, &ref.rejected_tokens})
      if (int64_t(v->size()) != data.size())
        fail("run_dpo: ", cache, ": ", v->size(), " reference values for ", data.size(), " pairs");
    if (image_term(o) && int64_t(ref.chosen_corrupt.size()) != data.size())
      fail("run_dpo: ", cache, ": ", ref.chosen_corrupt.size(), " corrupted-image reference values for ", data.size(),
           " pairs");
    info.cached = true;
    log_info("dpo reference: " + cache + " (cached, fingerprint " + fp.id() + ")");
  } else {
    ref = compute_reference(ref_dir, data, o);
    info.forward_pairs = data.size();
    Json content{{"fingerprint", fp.to_json()},
                 {"pairs", data.size()},
                 {"chosen", ref.chosen},
                 {"rejected", ref.rejected},
                 {"chosen_tokens", ref.chosen_tokens},
                 {"rejected_tokens", ref.rejected_tokens}};
    if (image_term(o)) content["chosen_corrupt"] = ref.chosen_corrupt;
    if (dist.is_main())
      write_json_file(cache, content, -1);
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
  const torch::Tensor ref_corrupt = image_term(o) ? as_tensor(ref.chosen_corrupt) : torch::Tensor();

  Trainer trainer(*model, dpo_param_groups(o, model), dpo_train_options(o, dist));
  ShardedIndexBatches batches(data.size(), o.batch_size, o.seed, dist.rank(), dist.world_size());
  trainer.set_data<std::vector<int64_t>>(batches, [&](std::vector<int64_t>& idx) {
    const DpoBatch b = data.batch(idx);
    auto [lp, n] = sequence_logps(model, b);
    const int64_t B = b.pairs;
    auto sel = torch::tensor(idx, torch::kLong);
    DpoInputs in =
        split_pair_logps(lp, n, torch::cat({ref_chosen.index_select(0, sel), ref_rejected.index_select(0, sel)}));
    if (image_term(o)) {
      in.policy_chosen_corrupt = sequence_logps(model, data.corrupt_batch(idx, o)).first;
      in.ref_chosen_corrupt = ref_corrupt.index_select(0, sel);
    }
    LossOutput out = dpo_step_output(in, o.loss);
    out.samples = B;
    return out;
  });
  if (auto eval = dpo_eval_fn(o, model, tok, tmpl)) trainer.set_eval(std::move(eval));
  return train_and_save(trainer, run, dist, *model, to_json(model->config()), o.model_dir, o.out);
}

}  // namespace mmb
