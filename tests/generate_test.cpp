// Generation and scoring: greedy equals step-by-step argmax of full forwards, batching with left
// padding equals single rows, beam search equals exhaustive enumeration, group beam search follows
// the Hamming-diversity definition, stops, continuation, the second-context processor, scoring.
#include "mmb/generate.h"

#include <algorithm>
#include <limits>
#include <map>
#include <set>

#include "test_util.h"

namespace {

mmb::LlavaConfig tiny(int64_t vocab) {
  mmb::LlavaConfig c;
  c.vision.image_size = 16;
  c.vision.patch_size = 8;  // 4 image tokens
  c.vision.hidden_size = 16;
  c.vision.intermediate_size = 32;
  c.vision.num_hidden_layers = 2;
  c.vision.num_attention_heads = 2;
  c.text.vocab_size = vocab;
  c.text.hidden_size = 32;
  c.text.intermediate_size = 48;
  c.text.num_hidden_layers = 2;
  c.text.num_attention_heads = 4;
  c.text.num_key_value_heads = 2;
  c.text.max_position_embeddings = 64;
  c.text.pad_token_id = 0;
  c.image_token_index = 1;
  return c;
}

mmb::LlavaForConditionalGeneration make_model(int64_t vocab, uint64_t seed, double scale = 1.0) {
  // Seeded before construction too: the module draws parameters the loop below keeps (the
  // vision class embedding), and libtorch seeds its default generator differently in every
  // process, which made the tests below flaky.
  torch::manual_seed(seed);
  mmb::LlavaForConditionalGeneration m(tiny(vocab));
  torch::NoGradGuard ng;
  torch::manual_seed(seed);
  for (auto& p : m->named_parameters()) {
    auto t = p.value();
    if (t.dim() >= 2) t.normal_(0, scale / std::sqrt(double(t.size(-1))));
    else if (p.key().find("bias") != std::string::npos) t.zero_();
  }
  m->eval();
  return m;
}

// Prompt with an image: [2, img x4, 3].
mmb::VlmInput prompt(int64_t rows = 1) {
  auto ids = torch::tensor({2, 1, 1, 1, 1, 3}, torch::kLong).unsqueeze(0).repeat({rows, 1});
  torch::manual_seed(77);
  return {ids, torch::ones_like(ids), torch::randn({rows, 3, 16, 16})};
}

// Next-token logits (V,) by a full forward without cache.
torch::Tensor full_logits(mmb::LlavaForConditionalGeneration& m, const mmb::VlmInput& base,
                          const std::vector<int64_t>& suffix) {
  auto ids = base.input_ids.narrow(0, 0, 1);
  if (!suffix.empty()) ids = torch::cat({ids, torch::tensor(suffix, torch::kLong).unsqueeze(0)}, 1);
  torch::NoGradGuard ng;
  return m->forward({ids, {}, base.pixel_values.narrow(0, 0, 1)})[0][-1].clone();
}

// Next-token log-probs by a full forward without cache: (V,).
torch::Tensor full_logp(mmb::LlavaForConditionalGeneration& m, const mmb::VlmInput& base,
                        const std::vector<int64_t>& suffix) {
  return torch::log_softmax(full_logits(m, base, suffix), -1);
}

}  // namespace

TEST(Generate, GreedyEqualsArgmaxOfFullForwards) {
  auto m = make_model(20, 1);
  auto in = prompt();
  auto st = mmb::prefill(m, in);
  mmb::SampleOptions o;
  o.stop.max_new_tokens = 8;
  auto g = mmb::generate(m, st, o)[0];
  ASSERT_EQ(g.tokens.size(), 8u);
  EXPECT_EQ(g.finish_reason, "length");
  std::vector<int64_t> prefix;
  for (size_t i = 0; i < g.tokens.size(); ++i) {
    auto lp = full_logp(m, in, prefix);
    // The generated token is the argmax (up to float rounding between cached and full passes) of
    // the tokens generation may emit: never the image token.
    auto allowed = lp.clone();
    allowed[1] = -std::numeric_limits<float>::infinity();
    EXPECT_NE(g.tokens[i], 1) << "step " << i;
    EXPECT_GE(lp[g.tokens[i]].item<float>(), allowed.max().item<float>() - 1e-5f) << "step " << i;
    EXPECT_NEAR(lp[g.tokens[i]].item<float>(), g.logprobs[i], 1e-5);
    EXPECT_NEAR(-(lp.exp() * lp).sum().item<float>(), g.entropies[i], 1e-5);
    prefix.push_back(g.tokens[i]);
  }
}

TEST(Generate, BatchWithLeftPaddingEqualsSingleRows) {
  auto m = make_model(20, 2);
  auto in = prompt(2);
  torch::manual_seed(3);
  in.pixel_values = torch::randn({2, 3, 16, 16});
  // row 1: two pads in front of a shorter prompt [2, img x4]
  auto ids = torch::tensor({2, 1, 1, 1, 1, 3}, torch::kLong).view({1, 6});
  auto ids1 = torch::tensor({0, 0, 2, 1, 1, 1, 1}, torch::kLong).view({1, 7});
  auto batch_ids = torch::cat({torch::cat({torch::zeros({1, 1}, torch::kLong), ids}, 1), ids1}, 0);
  auto mask = (torch::arange(7).view({1, 7}) >= torch::tensor({1, 2}).view({2, 1})).to(torch::kLong);
  mmb::SampleOptions o;
  o.stop.max_new_tokens = 6;
  auto stb = mmb::prefill(m, {batch_ids, mask, in.pixel_values});
  auto both = mmb::generate(m, stb, o);
  auto st0 = mmb::prefill(m, {ids, {}, in.pixel_values.narrow(0, 0, 1)});
  auto st1 = mmb::prefill(m, {ids1.narrow(1, 2, 5), {}, in.pixel_values.narrow(0, 1, 1)});
  EXPECT_EQ(both[0].tokens, mmb::generate(m, st0, o)[0].tokens);
  EXPECT_EQ(both[1].tokens, mmb::generate(m, st1, o)[0].tokens);
}

TEST(Generate, SamplingIsSeededAndFiltersWork) {
  auto m = make_model(30, 3, 0.5);
  auto in = prompt();
  mmb::SampleOptions o;
  o.temperature = 1.0;
  o.seed = 42;
  o.stop.max_new_tokens = 12;
  auto a = mmb::prefill(m, in), b = mmb::prefill(m, in), c = mmb::prefill(m, in);
  auto ga = mmb::generate(m, a, o)[0], gb = mmb::generate(m, b, o)[0];
  EXPECT_EQ(ga.tokens, gb.tokens);
  o.seed = 43;
  EXPECT_NE(ga.tokens, mmb::generate(m, c, o)[0].tokens);
  // top_k = 1 and a tiny top_p are greedy
  mmb::SampleOptions greedy;
  greedy.stop.max_new_tokens = 12;
  auto d = mmb::prefill(m, in), e = mmb::prefill(m, in), f = mmb::prefill(m, in);
  auto gg = mmb::generate(m, d, greedy)[0].tokens;
  o.top_k = 1;
  EXPECT_EQ(mmb::generate(m, e, o)[0].tokens, gg);
  o.top_k = 0;
  o.top_p = 1e-6;
  EXPECT_EQ(mmb::generate(m, f, o)[0].tokens, gg);
}

// The sampler draws from softmax(logits / T) cut to the top-k tokens and the top-p nucleus as
// Hugging Face's warpers define them (computed here with a full sort): the first token's
// frequencies over many rows of one batch match those probabilities, and nothing outside is drawn.
TEST(Generate, SamplingFollowsTheFilteredDistribution) {
  auto m = make_model(30, 5, 0.5);
  const int64_t rows = 6000;
  auto in = prompt(1);  // one prompt and image, repeated
  in.input_ids = in.input_ids.repeat({rows, 1});
  in.attention_mask = in.attention_mask.repeat({rows, 1});
  in.pixel_values = in.pixel_values.repeat({rows, 1, 1, 1});
  struct Case {
    double temperature, top_p;
    int64_t top_k;
  };
  for (Case c : {Case{1.0, 1.0, 0}, Case{0.7, 0.8, 0}, Case{1.3, 1.0, 5}, Case{1.0, 0.5, 8}}) {
    auto st = mmb::prefill(m, in);
    auto logits = st.last_logits[0].clone();  // (V,), the same for every row
    logits[m->config().image_token_index] = -std::numeric_limits<float>::infinity();
    logits = logits / c.temperature;
    if (c.top_k > 0) {
      auto kth = std::get<0>(logits.topk(c.top_k)).select(0, c.top_k - 1);
      logits = logits.masked_fill(logits < kth, -std::numeric_limits<float>::infinity());
    }
    auto [sorted, idx] = logits.sort(0, true);
    auto p = sorted.softmax(0);
    auto drop = (p.cumsum(0) - p) > c.top_p;
    logits = logits.masked_fill(torch::zeros_like(drop).scatter(0, idx, drop), -std::numeric_limits<float>::infinity());
    auto want = logits.softmax(0);
    mmb::SampleOptions o;
    o.temperature = c.temperature;
    o.top_p = c.top_p;
    o.top_k = c.top_k;
    o.seed = 9;
    o.stop.max_new_tokens = 1;
    auto gens = mmb::generate(m, st, o);
    std::vector<double> freq(size_t(want.size(0)), 0.0);
    for (const auto& g : gens) freq[size_t(g.tokens[0])] += 1.0 / double(rows);
    double worst = 0;
    for (int64_t v = 0; v < want.size(0); ++v) {
      const double w = want[v].item<double>();
      if (w == 0) {
        EXPECT_EQ(freq[size_t(v)], 0.0) << "token " << v << " is outside the filtered set";
      }
      worst = std::max(worst, std::abs(freq[size_t(v)] - w) / std::sqrt(w * (1 - w) / double(rows) + 1e-12));
    }
    EXPECT_LT(worst, 4.5) << "T " << c.temperature << " top_p " << c.top_p << " top_k " << c.top_k;
  }
}

// Rows are chosen in parallel and the decoding step splits rows over the pool, but the uniforms are
// drawn in row order: one seed gives the same tokens at any thread count.
TEST(Generate, SampledTokensDoNotDependOnTheThreadCount) {
  auto m = make_model(30, 6, 0.5);
  auto in = prompt(24);
  mmb::SampleOptions o;
  o.temperature = 1.0;
  o.top_p = 0.9;
  o.seed = 4;
  o.stop.max_new_tokens = 8;
  const int threads = at::get_num_threads();
  std::vector<std::vector<std::vector<int64_t>>> runs;
  for (int n : {1, 2}) {
    at::set_num_threads(n);
    auto st = mmb::prefill(m, in);
    std::vector<std::vector<int64_t>> tokens;
    for (const auto& g : mmb::generate(m, st, o)) tokens.push_back(g.tokens);
    runs.push_back(tokens);
  }
  at::set_num_threads(threads);
  EXPECT_EQ(runs[0], runs[1]);
}

// Rows that finish leave the decoded batch: each row's tokens are those it gets alone, and the
// state handed back holds every row, so a second call continues each row as it would alone.
TEST(Generate, FinishedRowsLeaveTheBatchAndTheStateStaysWhole) {
  auto m = make_model(20, 7);
  const int64_t R = 8;
  auto in = prompt(R);  // one image per row
  auto row = [&](int64_t r) {
    return mmb::VlmInput{in.input_ids.narrow(0, r, 1), in.attention_mask.narrow(0, r, 1), in.pixel_values.narrow(0, r, 1)};
  };
  mmb::SampleOptions free_run;
  free_run.stop.max_new_tokens = 10;
  std::vector<std::vector<int64_t>> alone;
  for (int64_t r = 0; r < R; ++r) {
    auto st = mmb::prefill(m, row(r));
    alone.push_back(mmb::generate(m, st, free_run)[0].tokens);
  }
  // Stop tokens taken from different steps of different rows: rows end at different times.
  mmb::SampleOptions o = free_run;
  for (int64_t r = 0; r < R; r += 2) o.stop.stop_tokens.push_back(alone[size_t(r)][size_t(1 + r % 7)]);
  mmb::SampleOptions more;
  more.stop.max_new_tokens = 4;
  auto batch = mmb::prefill(m, in, 2);  // small: the cache grows while rows leave
  auto gens = mmb::generate(m, batch, o);
  auto cont = mmb::generate(m, batch, more);
  std::set<size_t> lengths;
  for (int64_t r = 0; r < R; ++r) {
    auto st = mmb::prefill(m, row(r));
    auto first = mmb::generate(m, st, o)[0];
    EXPECT_EQ(gens[size_t(r)].tokens, first.tokens) << "row " << r;
    EXPECT_EQ(gens[size_t(r)].finish_reason, first.finish_reason) << "row " << r;
    for (size_t t = 0; t < first.logprobs.size(); ++t)
      EXPECT_NEAR(gens[size_t(r)].logprobs[t], first.logprobs[t], 1e-4) << "row " << r << " token " << t;
    EXPECT_EQ(cont[size_t(r)].tokens, mmb::generate(m, st, more)[0].tokens) << "row " << r << " continued";
    lengths.insert(first.tokens.size());
  }
  EXPECT_GE(lengths.size(), 3u) << "the rows should finish at different steps";
}

TEST(Generate, StopsOnTokensAndStringsAndContinuesFromTheCache) {
  auto m = make_model(20, 4);
  auto in = prompt();
  mmb::SampleOptions o;
  o.stop.max_new_tokens = 10;
  auto s0 = mmb::prefill(m, in);
  auto ref = mmb::generate(m, s0, o)[0].tokens;
  // stop at the token greedy produces third
  o.stop.stop_tokens = {ref[2]};
  auto s1 = mmb::prefill(m, in);
  auto g = mmb::generate(m, s1, o)[0];
  auto first = std::find(ref.begin(), ref.end(), ref[2]) - ref.begin();
  EXPECT_EQ(int64_t(g.tokens.size()), first + 1);
  EXPECT_EQ(g.finish_reason, "stop_token");
  // string stop with a decoder: token t -> letter 'a' + t; stop at the text of ref[1]
  mmb::SampleOptions so;
  so.stop.max_new_tokens = 10;
  so.stop.decode = [](const std::vector<int64_t>& t) {
    std::string s;
    for (auto v : t) s.push_back(char('a' + v));
    return s;
  };
  so.stop.stop_strings = {std::string(1, char('a' + ref[1]))};
  auto s2 = mmb::prefill(m, in);
  auto gs = mmb::generate(m, s2, so)[0];
  EXPECT_EQ(gs.finish_reason, "stop_string");
  // continuing from the state gives the rest of the uninterrupted greedy generation
  mmb::SampleOptions rest;
  rest.stop.max_new_tokens = int64_t(ref.size() - gs.tokens.size());
  auto more = mmb::generate(m, s2, rest)[0].tokens;
  std::vector<int64_t> joined = gs.tokens;
  joined.insert(joined.end(), more.begin(), more.end());
  EXPECT_EQ(joined, ref);
  // a string stop without a decoder is an error
  mmb::SampleOptions bad;
  bad.stop.stop_strings = {"."};
  auto s3 = mmb::prefill(m, in);
  mmb::testing::expect_throw_with([&] { mmb::generate(m, s3, bad); }, "need StopOptions::decode");
}

TEST(BeamSearch, WideBeamEqualsExhaustiveEnumeration) {
  const int64_t V = 6, L = 3;
  auto m = make_model(V, 5, 2.0);
  auto in = prompt();
  // brute force: every sequence of L tokens, scored by the sum of log-probs
  std::vector<std::pair<double, std::vector<int64_t>>> all;
  std::map<std::vector<int64_t>, torch::Tensor> cache;
  std::function<void(std::vector<int64_t>, double)> walk = [&](std::vector<int64_t> prefix, double s) {
    if (int64_t(prefix.size()) == L) {
      all.emplace_back(s, prefix);
      return;
    }
    auto lp = full_logp(m, in, prefix);
    for (int64_t t = 0; t < V; ++t) {
      if (t == 1) continue;  // the image token is never generated
      auto p = prefix;
      p.push_back(t);
      walk(p, s + lp[t].item<double>());
    }
  };
  walk({}, 0.0);
  std::sort(all.begin(), all.end(), [](auto& a, auto& b) { return a.first > b.first; });
  mmb::BeamOptions o;
  o.num_beams = V * V;  // holds every prefix of length L-1: the search is exhaustive
  o.length_penalty = 0.0;
  o.stop.max_new_tokens = L;
  auto beams = mmb::beam_search(m, mmb::prefill(m, in), o);
  ASSERT_EQ(int64_t(beams.size()), o.num_beams);
  for (int64_t i = 0; i < 5; ++i) {
    EXPECT_EQ(beams[i].tokens, all[i].second) << "rank " << i;
    EXPECT_NEAR(beams[i].score, all[i].first, 1e-4);
    EXPECT_NEAR(beams[i].sum_logprob(), all[i].first, 1e-4);
  }
}

TEST(BeamSearch, GroupBeamFollowsHammingDiversityDefinition) {
  const int64_t V = 12;
  auto m = make_model(V, 6, 2.0);
  auto in = prompt();
  const double pen = 3.0;
  mmb::BeamOptions o;
  o.num_beams = 3;
  o.num_groups = 3;  // one beam per group, as CSR (5 in 5)
  o.diversity_penalty = pen;
  o.length_penalty = 0.0;
  o.stop.max_new_tokens = 3;
  auto beams = mmb::beam_search(m, mmb::prefill(m, in), o);
  ASSERT_EQ(beams.size(), 3u);
  // Direct evaluation of the definition: group g at step t takes argmax over tokens of
  // logp(token | its prefix) - pen * #(earlier groups picked token at step t).
  std::vector<std::vector<int64_t>> seqs(3);
  std::vector<double> scores(3, 0.0);
  for (int64_t t = 0; t < 3; ++t) {
    std::vector<int64_t> picked;
    for (int64_t g = 0; g < 3; ++g) {
      auto lp = full_logp(m, in, seqs[g]);
      lp[1] = -1e30;  // the image token is never generated
      for (auto p : picked) lp[p] -= pen;
      int64_t best = lp.argmax().item<int64_t>();
      scores[g] += lp[best].item<double>();
      seqs[g].push_back(best);
      picked.push_back(best);
    }
  }
  for (int64_t g = 0; g < 3; ++g) {
    EXPECT_EQ(beams[g].group, g);
    EXPECT_EQ(beams[g].tokens, seqs[g]) << "group " << g;
    EXPECT_NEAR(beams[g].beam_score, scores[g], 1e-4);
  }
  EXPECT_NE(beams[0].tokens[0], beams[1].tokens[0]) << "a large penalty must diversify the first token";
  // without a penalty every group is the same greedy beam
  o.diversity_penalty = 0.0;
  auto same = mmb::beam_search(m, mmb::prefill(m, in), o);
  EXPECT_EQ(same[0].tokens, same[1].tokens);
  EXPECT_EQ(same[1].tokens, same[2].tokens);
}

TEST(Generate, SecondContextProcessorCombinesLogits) {
  auto m = make_model(20, 7);
  auto in = prompt();
  mmb::VlmInput other = in;
  torch::manual_seed(99);
  other.pixel_values = torch::randn_like(in.pixel_values) * 3;
  mmb::SampleOptions o;
  o.stop.max_new_tokens = 6;
  // alpha = -1 and no cutoff: greedy follows the second context alone
  auto main = mmb::prefill(m, in);
  mmb::SecondContextProcessor from_noised(m, mmb::prefill(m, other), -1.0, 1e-30);
  auto g = mmb::generate(m, main, o, {&from_noised})[0];
  auto alone = mmb::prefill(m, other);
  EXPECT_EQ(g.tokens, mmb::generate(m, alone, o)[0].tokens);
  // one step of the formula, checked directly
  auto a = mmb::prefill(m, in), b = mmb::prefill(m, other);
  mmb::SecondContextProcessor contrast(m, b, 1.0, 0.2);
  auto l = a.last_logits.clone();
  contrast.process(l, torch::zeros({1, 0}, torch::kLong));
  auto expect = 2.0 * a.last_logits - b.last_logits;
  auto keep = a.last_logits >= (a.last_logits.max() + std::log(0.2));
  EXPECT_TRUE(torch::allclose(l.masked_select(keep), expect.masked_select(keep)));
  EXPECT_TRUE(torch::isinf(l.masked_select(keep.logical_not())).all().item<bool>());
}

TEST(Score, TeacherForcedScoresMatchGeneration) {
  auto m = make_model(20, 8);
  auto in = prompt();
  mmb::SampleOptions o;
  o.stop.max_new_tokens = 5;
  auto st = mmb::prefill(m, in);
  auto g = mmb::generate(m, st, o)[0];
  auto ids = torch::cat({in.input_ids, torch::tensor(g.tokens, torch::kLong).unsqueeze(0)}, 1);
  torch::NoGradGuard ng;
  auto s = mmb::score_tokens(m, {ids, {}, in.pixel_values});
  const int64_t P = in.input_ids.size(1);
  for (size_t i = 0; i < g.tokens.size(); ++i) {
    EXPECT_NEAR(s.logprobs[0][P + i].item<float>(), g.logprobs[i], 1e-5);
    EXPECT_NEAR(s.entropies[0][P + i].item<float>(), g.entropies[i], 1e-5);
  }
  EXPECT_EQ(s.logprobs[0][0].item<float>(), 0.0f);
}

namespace {
bool has_repeated_ngram(const std::vector<int64_t>& t, size_t n) {
  std::set<std::vector<int64_t>> seen;
  for (size_t i = 0; i + n <= t.size(); ++i)
    if (!seen.insert(std::vector<int64_t>(t.begin() + long(i), t.begin() + long(i + n))).second) return true;
  return false;
}
}  // namespace

TEST(Generate, RepetitionPenaltyAndNoRepeatNgramFollowHuggingFace) {
  auto m = make_model(12, 5);
  auto in = prompt();
  mmb::SampleOptions plain;
  plain.stop.max_new_tokens = 24;
  auto st = mmb::prefill(m, in);
  const auto base = mmb::generate(m, st, plain)[0].tokens;
  ASSERT_TRUE(has_repeated_ngram(base, 2)) << "a 12-token vocabulary over 24 greedy steps repeats";

  // no_repeat_ngram_size = 2: no bigram twice, and every token is the argmax of the tokens left.
  mmb::SampleOptions nr = plain;
  nr.no_repeat_ngram_size = 2;
  st = mmb::prefill(m, in);
  const auto g = mmb::generate(m, st, nr)[0];
  EXPECT_FALSE(has_repeated_ngram(g.tokens, 2));
  std::vector<int64_t> prefix;
  for (size_t i = 0; i < g.tokens.size(); ++i) {
    auto l = full_logits(m, in, prefix);
    l[1] = -std::numeric_limits<float>::infinity();  // the image token
    for (size_t s = 0; s + 1 < prefix.size(); ++s)
      if (prefix[s] == prefix.back()) l[prefix[s + 1]] = -std::numeric_limits<float>::infinity();
    EXPECT_EQ(g.tokens[i], l.argmax().item<int64_t>()) << "step " << i;
    // The reported log-prob stays the model's own, before the constraint.
    EXPECT_NEAR(torch::log_softmax(full_logits(m, in, prefix), -1)[g.tokens[i]].item<float>(), g.logprobs[i], 1e-5);
    prefix.push_back(g.tokens[i]);
  }

  // repetition_penalty = 1.8: logits of generated tokens divided (positive) or multiplied (negative).
  mmb::SampleOptions rp = plain;
  rp.repetition_penalty = 1.8;
  st = mmb::prefill(m, in);
  const auto r = mmb::generate(m, st, rp)[0].tokens;
  EXPECT_NE(r, base);
  prefix.clear();
  for (size_t i = 0; i < r.size(); ++i) {
    auto l = full_logits(m, in, prefix);
    l[1] = -std::numeric_limits<float>::infinity();
    for (int64_t t : std::set<int64_t>(prefix.begin(), prefix.end())) {
      const float v = l[t].item<float>();
      l[t] = v > 0 ? v / 1.8f : v * 1.8f;
    }
    EXPECT_EQ(r[i], l.argmax().item<int64_t>()) << "step " << i;
    prefix.push_back(r[i]);
  }

  mmb::SampleOptions bad = plain;
  bad.repetition_penalty = 0;
  st = mmb::prefill(m, in);
  EXPECT_THROW(mmb::generate(m, st, bad), mmb::Error);
  bad = plain;
  bad.no_repeat_ngram_size = -1;
  EXPECT_THROW(mmb::generate(m, st, bad), mmb::Error);
}
