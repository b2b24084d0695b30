// CSR's sentence-level search on a toy model, checked against a brute-force evaluation of the
// same definition: every node's log-probs equal re-encoding prompt + path (children continue
// from their parent's cache), every expansion equals group beam search from a re-encoded prefix,
// rewards and values follow both modes' formulas, pruning keeps the best and worst by score, final
// (EOS) nodes are never expanded, and the pair is the best and worst leaf path. Then the builder
// and `mmb prefs stats` on hand-made pairs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "mmb/atomic_file.h"
#include "mmb/chat_template.h"
#include "mmb/checkpoint.h"
#include "mmb/csr.h"
#include "mmb/prefs.h"
#include "test_util.h"
#include "vlm_test_util.h"

namespace {

struct Toy {
  mmb::testing::TempDir dir;
  std::unique_ptr<mmb::Vlm> vlm;
  std::unique_ptr<mmb::ClipScorer> clip;
  mmb::Image image{16, 16, 3};
};

std::unique_ptr<Toy> make_toy() {
  auto t = std::make_unique<Toy>();
  mmb::TokenizerTrainOptions to;
  for (int i = 0; i < 200; ++i) to.lines.push_back("Describe it. There is a red star. A moon is blue. Two hearts.");
  to.vocab_size = 300;
  to.output_prefix = t->dir.file("tok");
  mmb::train_tokenizer(to);
  const mmb::Tokenizer tok = mmb::Tokenizer::load(t->dir.file("tok.model"));
  mmb::LlavaConfig cfg = mmb::with_token_ids(mmb::testing::tiny_vlm(tok.num_ids()), tok);
  cfg.text.max_position_embeddings = 256;
  mmb::LlavaForConditionalGeneration model(cfg);
  mmb::init_weights(*model, 11, 0.2);
  mmb::ChatTemplate tmpl = mmb::ChatTemplate::vicuna_v1();
  tmpl.system = "A chat.";
  mmb::TokenizerOptions topts;
  topts.image_id = int32_t(cfg.image_token_index);
  t->vlm = std::make_unique<mmb::Vlm>(model, mmb::Tokenizer::load(t->dir.file("tok.model"), topts), tmpl);
  mmb::ClipConfig cc = mmb::testing::tiny_clip(tok.num_ids(), 32);
  cc.text.eos_token_id = tok.eos_id();
  mmb::ClipModel clip(cc);
  mmb::init_weights(*clip, 12);
  t->clip = std::make_unique<mmb::ClipScorer>(clip, mmb::Tokenizer::load(t->dir.file("tok.model")), 32);
  for (size_t i = 0; i < t->image.pixels.size(); ++i) t->image.pixels[i] = uint8_t((i * 37) % 251);
  // EOS gets the output row of a token greedy decoding picks a few tokens in (not the first one),
  // scaled up: beams that reach that point end there, the others go on, so the tree has final
  // (EOS) nodes below its first level.
  {
    torch::NoGradGuard ng;
    auto st = mmb::prefill(model, t->vlm->encode_prompt("Describe it.", &t->image));
    mmb::SampleOptions greedy;
    greedy.stop.max_new_tokens = 8;
    const auto g = mmb::generate(model, st, greedy)[0].tokens;
    int64_t top = g[2];
    for (size_t i = 1; i < g.size(); ++i)
      if (g[i] != g[0]) {
        top = g[i];
        break;
      }
    for (auto& p : model->named_parameters())
      if (p.key().find("lm_head.weight") != std::string::npos)
        p.value()[cfg.text.eos_token_id].copy_(1.05 * p.value()[top]);
  }
  return t;
}

// Teacher-forced log-probs of `tokens` after the prompt (a fresh encoding, no cache).
std::vector<float> rescore(mmb::Vlm& vlm, const std::string& prompt, const mmb::Image& image,
                           const std::vector<int64_t>& prefix, const std::vector<int64_t>& tokens) {
  mmb::VlmInput in = vlm.encode_prompt(prompt, &image);
  std::vector<int64_t> all(prefix);
  all.insert(all.end(), tokens.begin(), tokens.end());
  auto extra = torch::tensor(all, torch::kLong).unsqueeze(0);
  in.input_ids = torch::cat({in.input_ids, extra}, 1);
  in.attention_mask = torch::ones_like(in.input_ids);
  torch::NoGradGuard ng;
  auto s = mmb::score_tokens(vlm.model(), in, false).logprobs[0];
  const int64_t T = in.input_ids.size(1);
  std::vector<float> out;
  for (int64_t t = T - int64_t(tokens.size()); t < T; ++t) out.push_back(s[t].item<float>());
  return out;
}

int check_tree(Toy& toy, const mmb::CsrOptions& o, const std::string& prompt) {
  const mmb::CsrTree tree = mmb::csr_search(*toy.vlm, *toy.clip, prompt, toy.image, o);
  EXPECT_FALSE(tree.nodes.empty());
  auto prefix_of = [&](int64_t node) {
    std::vector<int64_t> p;
    for (int64_t n : mmb::csr_path(tree, node))
      if (n != node) p.insert(p.end(), tree.nodes[size_t(n)].tokens.begin(), tree.nodes[size_t(n)].tokens.end());
    return p;
  };
  // Children per parent, in creation order.
  std::map<int64_t, std::vector<int64_t>> children;
  for (size_t i = 0; i < tree.nodes.size(); ++i) children[tree.nodes[i].parent].push_back(int64_t(i));
  const int64_t eos = toy.vlm->model()->config().text.eos_token_id;
  int finals = 0;
  for (const auto& [parent_id, kids] : children) {
    const int64_t parent = parent_id;  // a structured binding cannot be captured before C++20 (clang)
    // The expansion equals group beam search from the re-encoded prefix.
    mmb::VlmInput in = toy.vlm->encode_prompt(prompt, &toy.image);
    auto st = mmb::prefill(toy.vlm->model(), in, 256);
    const auto prefix = parent >= 0 ? [&] {
      auto p = prefix_of(parent);
      p.insert(p.end(), tree.nodes[size_t(parent)].tokens.begin(), tree.nodes[size_t(parent)].tokens.end());
      return p;
    }() : std::vector<int64_t>{};
    if (!prefix.empty()) mmb::extend(toy.vlm->model(), st, torch::tensor(prefix, torch::kLong).unsqueeze(0));
    mmb::BeamOptions bo;
    bo.num_beams = o.num_beams;
    bo.num_groups = o.num_groups;
    bo.diversity_penalty = o.diversity_penalty;
    bo.stop = toy.vlm->default_stop(o.max_sentence_tokens);
    bo.stop.stop_at_sentence_end = true;
    const auto beams = mmb::beam_search(toy.vlm->model(), st, bo);
    EXPECT_EQ(beams.size(), kids.size()) << "parent " << parent;
    if (beams.size() != kids.size()) return -1;
    std::vector<double> rt, ri;
    for (size_t k = 0; k < kids.size(); ++k) {
      const mmb::CsrNode& n = tree.nodes[size_t(kids[k])];
      EXPECT_EQ(n.tokens, beams[k].tokens) << "node " << kids[k];
      // Continued children score as re-encoding does.
      const auto lp = rescore(*toy.vlm, prompt, toy.image, prefix, n.tokens);
      EXPECT_EQ(lp.size(), n.logprobs.size());
      if (lp.size() != n.logprobs.size()) return -1;
      double mean = 0;
      for (size_t t = 0; t < lp.size(); ++t) {
        EXPECT_NEAR(lp[t], n.logprobs[t], 1e-4) << "node " << kids[k] << " token " << t;
        mean += lp[t] / double(lp.size());
      }
      EXPECT_NEAR(n.r_text, std::exp(mean), 1e-4);
      const double parent_score = parent >= 0 ? tree.nodes[size_t(parent)].score : 0.0;
      EXPECT_NEAR(n.score, parent_score + mean, 1e-4);
      EXPECT_NEAR(n.r_image, toy.clip->score(toy.vlm->encode_prompt(prompt, &toy.image).pixel_values, {n.text})[0],
                  1e-6);
      EXPECT_EQ(n.final, !n.tokens.empty() && n.tokens.back() == eos);
      finals += n.final;
      if (n.final) {
        EXPECT_EQ(children.count(kids[k]), 0u) << "a final node is never expanded";
      }
      rt.push_back(n.r_text);
      ri.push_back(n.r_image);
    }
    for (size_t k = 0; k < kids.size(); ++k) {
      const mmb::CsrNode& n = tree.nodes[size_t(kids[k])];
      if (o.reward == "score") {
        EXPECT_NEAR(n.value, o.lambda * ri[k] + (1 - o.lambda) * rt[k], 1e-9);
      } else {  // ranks among siblings, 0 = best
        double rank_t = 0, rank_i = 0;
        for (size_t j = 0; j < kids.size(); ++j) {
          rank_t += rt[j] > rt[k] || (rt[j] == rt[k] && j < k);
          rank_i += ri[j] > ri[k] || (ri[j] == ri[k] && j < k);
        }
        EXPECT_NEAR(n.value, (1 - o.lambda) * rank_t + o.lambda * rank_i, 1e-9);
      }
    }
  }
  // Pruning: per level, the kept nodes are the best keep_top and worst keep_bottom by score.
  std::map<int64_t, std::vector<int64_t>> levels;
  for (size_t i = 0; i < tree.nodes.size(); ++i) levels[tree.nodes[i].level].push_back(int64_t(i));
  for (auto& [level, nodes] : levels) {
    std::vector<int64_t> by_score = nodes;
    std::stable_sort(by_score.begin(), by_score.end(),
                     [&](int64_t a, int64_t b) { return tree.nodes[size_t(a)].score > tree.nodes[size_t(b)].score; });
    std::set<int64_t> want;
    if (int64_t(nodes.size()) < o.prune_at) {
      want.insert(nodes.begin(), nodes.end());
    } else {
      for (int64_t k = 0; k < o.keep_top; ++k) want.insert(by_score[size_t(k)]);
      for (int64_t k = 0; k < o.keep_bottom; ++k) want.insert(by_score[by_score.size() - 1 - size_t(k)]);
    }
    std::set<int64_t> kept;
    for (int64_t n : nodes)
      if (tree.nodes[size_t(n)].kept) kept.insert(n);
    EXPECT_EQ(kept, want) << "level " << level;
    for (int64_t n : nodes)  // only kept, non-final nodes below the last level have children
      EXPECT_EQ(children.count(n) > 0,
                tree.nodes[size_t(n)].kept && !tree.nodes[size_t(n)].final && level + 1 < o.max_sentences)
          << "node " << n;
  }
  // The pair: brute force over the leaves.
  EXPECT_FALSE(tree.leaves.empty());
  const bool higher = o.reward == "score";
  int64_t best = -1, worst = -1;
  for (int64_t leaf : tree.leaves) {
    if (mmb::csr_path_text(tree, leaf).empty()) continue;
    double sum = 0;
    const auto path = mmb::csr_path(tree, leaf);
    for (int64_t n : path) sum += tree.nodes[size_t(n)].value;
    const double v = sum / double(path.size());
    EXPECT_NEAR(mmb::csr_path_value(tree, leaf), v, 1e-12);
    if (best < 0 || (higher ? v > mmb::csr_path_value(tree, best) : v < mmb::csr_path_value(tree, best))) best = leaf;
    if (worst < 0 || (higher ? v < mmb::csr_path_value(tree, worst) : v > mmb::csr_path_value(tree, worst)))
      worst = leaf;
  }
  if (best >= 0 && mmb::csr_path_text(tree, best) != mmb::csr_path_text(tree, worst)) {
    EXPECT_EQ(tree.chosen, best);
    EXPECT_EQ(tree.rejected, worst);
  } else {
    EXPECT_EQ(tree.chosen, -1);
  }
  std::printf("[          ] csr %s: %zu nodes, %zu leaves, %d final, %lld tokens\n", o.reward.c_str(),
              tree.nodes.size(), tree.leaves.size(), finals, static_cast<long long>(tree.generated_tokens));
  return finals;
}

}  // namespace

TEST(Csr, TreeEqualsABruteForceEvaluationOfTheDefinition) {
  auto toy = make_toy();
  mmb::CsrOptions o;
  o.num_beams = 3;
  o.num_groups = 3;
  o.max_sentence_tokens = 5;
  o.max_sentences = 3;
  o.keep_top = 1;
  o.keep_bottom = 1;
  o.prune_at = 3;
  int finals = 0;
  for (const char* mode : {"score", "rank"}) {
    o.reward = mode;
    finals += check_tree(*toy, o, "Describe it.");
  }
  EXPECT_GT(finals, 0) << "the toy tree must have EOS nodes";
  // Nothing pruned when the pool is smaller than prune_at.
  o.prune_at = 100;
  o.max_sentences = 2;
  check_tree(*toy, o, "Describe it.");
  mmb::CsrOptions bad;
  bad.num_groups = 2;
  mmb::testing::expect_throw_with([&] { mmb::validate(bad); }, "multiple of num_groups");
  bad = mmb::CsrOptions{};
  bad.reward = "mean";
  mmb::testing::expect_throw_with([&] { mmb::validate(bad); }, "reward must be 'score' or 'rank'");
}

TEST(PrefsStats, CountsTrulyBetterEqualWorseAndEditDistances) {
  EXPECT_EQ(mmb::word_edit_distance("a b c", "a x c"), 1);
  EXPECT_EQ(mmb::word_edit_distance("", "a b"), 2);
  EXPECT_EQ(mmb::word_edit_distance("a b c d", "b c d e"), 2);
  auto judged = [](int64_t t, int64_t f, int64_t h, double recall) {
    mmb::ResponseJudgement j;
    j.sentences = t + f;
    j.true_sentences = t;
    j.false_sentences = f;
    j.hallucinated = h;
    j.visible = 2;
    j.recall = recall;
    return j.to_json();
  };
  std::vector<mmb::PreferencePair> pairs(4);
  for (auto& p : pairs) p.prompt = {{"Describe.", ""}};
  pairs[0].chosen = "There is a star.";  // truly better: no error, more recall
  pairs[0].rejected = "There is a moon.";
  pairs[0].extra = {
      {"source", "csr"}, {"chosen_judgement", judged(1, 0, 0, 0.5)}, {"rejected_judgement", judged(0, 1, 1, 0)}};
  pairs[1].chosen = "There is a moon.";  // worse
  pairs[1].rejected = "There is a star.";
  pairs[1].extra = {
      {"source", "csr"}, {"chosen_judgement", judged(0, 1, 1, 0)}, {"rejected_judgement", judged(1, 0, 0, 0.5)}};
  pairs[2].chosen = "There is a star.";  // equal
  pairs[2].rejected = "A star is here.";
  pairs[2].extra = {
      {"source", "csr"}, {"chosen_judgement", judged(1, 0, 0, 0.5)}, {"rejected_judgement", judged(1, 0, 0, 0.5)}};
  pairs[3].chosen = "one two three";  // not judged
  pairs[3].rejected = "one two";
  pairs[3].extra = {{"source", "other"}};
  const mmb::Json s = mmb::preference_pair_stats(pairs);
  EXPECT_EQ(s["pairs"], 4);
  EXPECT_EQ(s["judged"], 3);
  EXPECT_NEAR(s["chosen_better"].get<double>(), 1.0 / 3, 1e-12);
  EXPECT_NEAR(s["chosen_equal"].get<double>(), 1.0 / 3, 1e-12);
  EXPECT_NEAR(s["chosen_worse"].get<double>(), 1.0 / 3, 1e-12);
  EXPECT_NEAR(s["mean_word_edit_distance"].get<double>(), (1 + 1 + 4 + 1) / 4.0, 1e-12);
  EXPECT_NEAR(s["mean_words_chosen"].get<double>(), (4 + 4 + 4 + 3) / 4.0, 1e-12);
  EXPECT_EQ(s["by_source"]["csr"]["judged"], 3);
  EXPECT_EQ(s["by_source"]["other"]["judged"], 0);
  pairs[0].extra["chosen_judgement"].erase("recall");
  mmb::testing::expect_throw_with([&] { mmb::preference_pair_stats(pairs); }, "recall");
}
