// CSR's sentence-level search: group beam search per node, continued from the parent's cache,
// rewards from the model's likelihood and CLIPScore, pruning to the best and worst, and the
// best-versus-worst path pair (include/mmb/csr.h).
#include "mmb/csr.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <numeric>
#include <random>

#include "builder_util.h"
#include "mmb/checkpoint.h"
#include "mmb/error.h"
#include "mmb/prefs.h"
#include "mmb/progress.h"
#include "mmb/strings.h"
#include "mmb/verifier.h"
#include "mmb/world.h"

namespace mmb {
namespace {

double mean(const std::vector<float>& v) {
  if (v.empty()) return 0.0;
  return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
}

// Ranks (0 = best) of `x` sorted descending; ties share the order of their index.
std::vector<double> descending_ranks(const std::vector<double>& x) {
  std::vector<size_t> order(x.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return x[a] > x[b]; });
  std::vector<double> rank(x.size());
  for (size_t r = 0; r < order.size(); ++r) rank[order[r]] = double(r);
  return rank;
}

}  // namespace

void validate(const CsrOptions& o) {
  if (o.num_beams < 1 || o.num_groups < 1 || o.num_beams % o.num_groups)
    fail("csr: num_beams (", o.num_beams, ") must be a positive multiple of num_groups (", o.num_groups, ")");
  if (o.diversity_penalty < 0) fail("csr: diversity_penalty must be >= 0, got ", o.diversity_penalty);
  if (o.max_sentence_tokens < 1) fail("csr: max_sentence_tokens must be >= 1, got ", o.max_sentence_tokens);
  if (o.max_sentences < 1) fail("csr: max_sentences must be >= 1, got ", o.max_sentences);
  if (o.keep_top < 0 || o.keep_bottom < 0 || o.keep_top + o.keep_bottom < 1)
    fail("csr: keep_top (", o.keep_top, ") and keep_bottom (", o.keep_bottom, ") must be >= 0, not both 0");
  if (o.prune_at < 1) fail("csr: prune_at must be >= 1, got ", o.prune_at);
  if (!(o.lambda >= 0 && o.lambda <= 1)) fail("csr: lambda must be in [0, 1], got ", o.lambda);
  if (o.reward != "score" && o.reward != "rank") fail("csr: reward must be 'score' or 'rank', got '", o.reward, "'");
}

std::vector<int64_t> csr_path(const CsrTree& tree, int64_t leaf) {
  std::vector<int64_t> path;
  for (int64_t n = leaf; n >= 0; n = tree.nodes.at(size_t(n)).parent) path.push_back(n);
  std::reverse(path.begin(), path.end());
  return path;
}

std::string csr_path_text(const CsrTree& tree, int64_t leaf) {
  std::string out;
  for (int64_t n : csr_path(tree, leaf)) {
    const std::string& s = tree.nodes[size_t(n)].text;
    if (s.empty()) continue;
    if (!out.empty()) out += ' ';
    out += s;
  }
  return out;
}

double csr_path_value(const CsrTree& tree, int64_t leaf) {
  const auto path = csr_path(tree, leaf);
  double sum = 0;
  for (int64_t n : path) sum += tree.nodes[size_t(n)].value;
  return path.empty() ? 0.0 : sum / double(path.size());
}

CsrTree csr_search(Vlm& vlm, ClipScorer& clip, const std::string& prompt, const Image& image, const CsrOptions& o) {
  validate(o);
  c10::InferenceMode inference;
  auto& model = vlm.model();
  model->eval();
  const VlmInput in = vlm.encode_prompt(prompt, &image);
  const int64_t eos = model->config().text.eos_token_id;
  BeamOptions bo;
  bo.num_beams = o.num_beams;
  bo.num_groups = o.num_groups;
  bo.diversity_penalty = o.diversity_penalty;
  bo.stop = vlm.default_stop(o.max_sentence_tokens);
  bo.stop.stop_at_sentence_end = true;

  CsrTree tree;
  struct Active {
    int64_t node;  // -1: the root (the prompt)
    DecodeState state;
  };
  std::vector<Active> active{{-1, prefill(model, in, o.max_sentence_tokens)}};
  for (int64_t level = 0; level < o.max_sentences && !active.empty(); ++level) {
    std::vector<int64_t> pool;             // this level's children
    std::vector<DecodeState> pool_states;  // the cache of each (empty for final children)
    for (auto& a : active) {
      const auto beams = beam_search(model, a.state, bo);
      if (beams.empty()) continue;
      const double parent_score = a.node >= 0 ? tree.nodes[size_t(a.node)].score : 0.0;
      const int64_t first = int64_t(tree.nodes.size());
      std::vector<std::string> texts;
      for (const auto& b : beams) {
        CsrNode n;
        n.parent = a.node;
        n.level = level;
        n.tokens = b.tokens;
        n.logprobs = b.logprobs;
        n.final = !b.tokens.empty() && b.tokens.back() == eos;
        n.text = trim(vlm.decode(b.tokens));
        n.score = parent_score + mean(b.logprobs);
        n.r_text = std::exp(mean(b.logprobs));
        tree.generated_tokens += int64_t(b.tokens.size());
        texts.push_back(n.text);
        tree.nodes.push_back(std::move(n));
      }
      const auto r_image = clip.score(in.pixel_values, texts);
      std::vector<double> rt, ri;
      for (size_t i = 0; i < beams.size(); ++i) {
        CsrNode& n = tree.nodes[size_t(first) + i];
        n.r_image = r_image[i];
        rt.push_back(n.r_text);
        ri.push_back(n.r_image);
      }
      if (o.reward == "rank") {  // among siblings; lower is better
        const auto rank_t = descending_ranks(rt), rank_i = descending_ranks(ri);
        for (size_t i = 0; i < beams.size(); ++i)
          tree.nodes[size_t(first) + i].value = (1 - o.lambda) * rank_t[i] + o.lambda * rank_i[i];
      } else {
        for (size_t i = 0; i < beams.size(); ++i)
          tree.nodes[size_t(first) + i].value = o.lambda * ri[i] + (1 - o.lambda) * rt[i];
      }
      // Every non-final child continues from this node's cache: one forward of the sentences.
      std::vector<size_t> open;
      for (size_t i = 0; i < beams.size(); ++i)
        if (!tree.nodes[size_t(first) + i].final) open.push_back(i);
      std::vector<DecodeState> states(beams.size());
      if (!open.empty()) {
        size_t T = 0;
        for (size_t i : open) T = std::max(T, beams[i].tokens.size());
        const int64_t R = int64_t(open.size());
        auto ids = torch::full({R, int64_t(T)}, model->config().text.pad_token_id, torch::kLong);
        auto mask = torch::zeros({R, int64_t(T)}, torch::kLong);
        for (int64_t r = 0; r < R; ++r)
          for (size_t t = 0; t < beams[open[size_t(r)]].tokens.size(); ++t) {
            ids[r][int64_t(t)] = beams[open[size_t(r)]].tokens[t];
            mask[r][int64_t(t)] = 1;
          }
        DecodeState forked = a.state.select(torch::zeros({R}, torch::kLong));
        extend(model, forked, ids, mask);
        for (int64_t r = 0; r < R; ++r) states[open[size_t(r)]] = forked.select(torch::tensor({r}, torch::kLong));
      }
      for (size_t i = 0; i < beams.size(); ++i) {
        pool.push_back(first + int64_t(i));
        pool_states.push_back(std::move(states[i]));
      }
    }
    // Pruning by search score: the best keep_top and the worst keep_bottom of the pool.
    std::vector<size_t> order(pool.size());
    std::iota(order.begin(), order.end(), size_t(0));
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return tree.nodes[size_t(pool[a])].score > tree.nodes[size_t(pool[b])].score;
    });
    std::vector<bool> keep(pool.size(), int64_t(pool.size()) < o.prune_at);
    if (int64_t(pool.size()) >= o.prune_at) {
      for (int64_t k = 0; k < o.keep_top && k < int64_t(order.size()); ++k) keep[order[size_t(k)]] = true;
      for (int64_t k = 0; k < o.keep_bottom && k < int64_t(order.size()); ++k)
        keep[order[order.size() - 1 - size_t(k)]] = true;
    }
    std::vector<Active> next;
    for (size_t i = 0; i < pool.size(); ++i) {
      if (!keep[i]) continue;
      CsrNode& n = tree.nodes[size_t(pool[i])];
      n.kept = true;
      if (n.final || level + 1 == o.max_sentences)
        tree.leaves.push_back(pool[i]);
      else
        next.push_back({pool[i], std::move(pool_states[i])});
    }
    active = std::move(next);
  }
  // The pair: best and worst leaf path by value (score: higher is better; rank: lower is).
  const bool higher = o.reward == "score";
  for (int64_t leaf : tree.leaves) {
    if (csr_path_text(tree, leaf).empty()) continue;
    const double v = csr_path_value(tree, leaf);
    auto better = [&](int64_t other) {
      const double w = csr_path_value(tree, other);
      return higher ? v > w : v < w;
    };
    auto worse = [&](int64_t other) {
      const double w = csr_path_value(tree, other);
      return higher ? v < w : v > w;
    };
    if (tree.chosen < 0 || better(tree.chosen)) tree.chosen = leaf;
    if (tree.rejected < 0 || worse(tree.rejected)) tree.rejected = leaf;
  }
  if (tree.chosen >= 0 && csr_path_text(tree, tree.chosen) == csr_path_text(tree, tree.rejected))
    tree.chosen = tree.rejected = -1;
  return tree;
}

}  // namespace mmb

namespace mmb {

PairBuildReport build_csr_pairs(const CsrBuildOptions& o) {
  validate(o.search);
  if (o.out.empty()) fail("prefs csr: no output file (--out)");
  if (o.world_dir.empty() == o.data.empty()) fail("prefs csr: give either a world (--world) or LLaVA data (--data)");
  const auto t0 = std::chrono::steady_clock::now();
  Vlm vlm = Vlm::load(o.model_dir);
  ClipScorer clip = ClipScorer::load(o.clip_dir);
  struct Item {
    std::string question, image;
    int64_t scene = -1;
  };
  std::vector<Item> items;
  std::vector<world::Scene> scenes;
  std::string image_root = o.image_root;
  if (!o.world_dir.empty()) {
    scenes = world::read_scenes(o.world_dir + "/scenes.jsonl");
    std::map<std::string, size_t> index;
    for (size_t i = 0; i < scenes.size(); ++i) index[scenes[i].id] = i;
    for (auto& p : read_description_prompts(o.world_dir, o.split, index))
      items.push_back({p.question, p.image, int64_t(p.scene)});
    image_root = o.world_dir;
  } else {
    const Json records = read_json_file(o.data);
    if (!records.is_array()) fail("prefs csr: ", o.data, ": expected a JSON array of LLaVA records");
    for (size_t i = 0; i < records.size(); ++i) {
      const std::string where = o.data + " record " + std::to_string(i);
      const Json& r = records[i];
      const Json conv = json_get<Json>(r, "conversations", where);
      if (!conv.is_array() || conv.empty()) fail("prefs csr: ", where, ": empty conversations");
      std::string q = json_get<std::string>(conv[0], "value", where);
      for (const std::string m : {"<image>\n", "<image>"})
        if (auto k = q.find(m); k != std::string::npos) q.erase(k, m.size());
      const std::string image = json_get<std::string>(r, "image", where);
      check_under_root(image, where, "prefs csr");
      items.push_back({trim(q), image, -1});
    }
    if (items.empty()) fail("prefs csr: ", o.data, ": no records");
  }
  {  // a seeded draw of `limit` prompts, in the file's order
    std::vector<Item> picked;
    for (size_t i : draw_indices(items.size(), o.limit, o.seed)) picked.push_back(items[i]);
    items = std::move(picked);
  }
  const world::Verifier verifier;
  PairBuildReport report;
  std::vector<PreferencePair> pairs;
  std::unique_ptr<Progress> bar;
  const std::pair<size_t, size_t> slice = o.shard.range(items.size());
  if (o.progress) bar = std::make_unique<Progress>("csr", int64_t(slice.second - slice.first), "prompts");
  for (size_t i = slice.first; i < slice.second; ++i) {
    const Item& it = items[i];
    const Image image = read_image(image_root + "/" + it.image);
    const CsrTree tree = csr_search(vlm, clip, it.question, image, o.search);
    report.prompts++;
    report.generated_tokens += tree.generated_tokens;
    if (tree.chosen < 0) {
      report.dropped["no_pair"]++;
    } else {
      PreferencePair p;
      p.prompt = {{it.question, ""}};
      p.chosen = csr_path_text(tree, tree.chosen);
      p.rejected = csr_path_text(tree, tree.rejected);
      p.image = it.image;
      p.extra = Json{{"source", "csr"},
                     {"csr",
                      {{"reward", o.search.reward},
                       {"chosen_value", csr_path_value(tree, tree.chosen)},
                       {"rejected_value", csr_path_value(tree, tree.rejected)},
                       {"nodes", int64_t(tree.nodes.size())},
                       {"leaves", int64_t(tree.leaves.size())}}}};
      if (it.scene >= 0) {
        const world::Scene& scene = scenes[size_t(it.scene)];
        p.extra["scene"] = scene.id;
        p.extra["chosen_judgement"] = judge_response(verifier, scene, p.chosen).to_json();
        p.extra["rejected_judgement"] = judge_response(verifier, scene, p.rejected).to_json();
      }
      pairs.push_back(std::move(p));
      report.pairs++;
    }
    if (bar) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      bar->set_note(std::to_string(report.pairs) + " pairs, " + std::to_string(int(60.0 * double(report.pairs) / s)) +
                    " pairs/min");
      bar->tick();
    }
  }
  if (bar) bar->done();
  finish_build("prefs csr", o.out, pairs, report, t0, o.shard);
  return report;
}

}  // namespace mmb
