// Pair quality, measured exactly: how often a builder's chosen response is truly better than its
// rejected one by the world's verifier, and how the two differ (`mmb prefs stats`).
#include <algorithm>
#include <filesystem>
#include <map>
#include <sstream>

#include "mmb/error.h"
#include "mmb/prefs.h"

namespace mmb {
namespace {

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

struct Acc {
  int64_t pairs = 0, judged = 0, better = 0, equal = 0, worse = 0;
  double words_chosen = 0, words_rejected = 0, edit = 0, edit_norm = 0;
  double errors_chosen = 0, errors_rejected = 0, halluc_chosen = 0, halluc_rejected = 0;
  double recall_chosen = 0, recall_rejected = 0;
  Json to_json() const {
    auto per = [](double x, int64_t n) { return n > 0 ? x / double(n) : 0.0; };
    Json j = {{"pairs", pairs},
              {"mean_words_chosen", per(words_chosen, pairs)},
              {"mean_words_rejected", per(words_rejected, pairs)},
              {"mean_word_edit_distance", per(edit, pairs)},
              {"mean_normalised_edit_distance", per(edit_norm, pairs)},
              {"judged", judged}};
    if (judged > 0)
      j.update(Json{{"chosen_better", per(double(better), judged)},
                    {"chosen_equal", per(double(equal), judged)},
                    {"chosen_worse", per(double(worse), judged)},
                    {"mean_errors_chosen", per(errors_chosen, judged)},
                    {"mean_errors_rejected", per(errors_rejected, judged)},
                    {"mean_hallucinated_chosen", per(halluc_chosen, judged)},
                    {"mean_hallucinated_rejected", per(halluc_rejected, judged)},
                    {"mean_recall_chosen", per(recall_chosen, judged)},
                    {"mean_recall_rejected", per(recall_rejected, judged)}});
    return j;
  }
};

}  // namespace

int64_t word_edit_distance(const std::string& a, const std::string& b) {
  const auto x = words(a), y = words(b);
  std::vector<int64_t> prev(y.size() + 1), cur(y.size() + 1);
  for (size_t j = 0; j <= y.size(); ++j) prev[j] = int64_t(j);
  for (size_t i = 1; i <= x.size(); ++i) {
    cur[0] = int64_t(i);
    for (size_t j = 1; j <= y.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[y.size()];
}

Json preference_pair_stats(const std::vector<PreferencePair>& pairs, double error_weight) {
  Acc all;
  std::map<std::string, Acc> by_source;
  for (const auto& p : pairs) {
    const std::string source =
        p.extra.contains("source") && p.extra["source"].is_string() ? p.extra["source"].get<std::string>() : "";
    for (Acc* a : {&all, &by_source[source]}) {
      a->pairs++;
      const double wc = double(words(p.chosen).size()), wr = double(words(p.rejected).size());
      a->words_chosen += wc;
      a->words_rejected += wr;
      const double d = double(word_edit_distance(p.chosen, p.rejected));
      a->edit += d;
      a->edit_norm += d / std::max(1.0, std::max(wc, wr));
    }
    if (!p.extra.contains("chosen_judgement") || !p.extra.contains("rejected_judgement")) continue;
    const auto c = ResponseJudgement::from_json(p.extra["chosen_judgement"], p.where + ": chosen_judgement");
    const auto r = ResponseJudgement::from_json(p.extra["rejected_judgement"], p.where + ": rejected_judgement");
    const int cmp = compare_judgements(c, r, error_weight);
    for (Acc* a : {&all, &by_source[source]}) {
      a->judged++;
      (cmp > 0 ? a->better : cmp < 0 ? a->worse : a->equal)++;
      a->errors_chosen += double(c.errors());
      a->errors_rejected += double(r.errors());
      a->halluc_chosen += double(c.hallucinated);
      a->halluc_rejected += double(r.hallucinated);
      a->recall_chosen += c.recall;
      a->recall_rejected += r.recall;
    }
  }
  Json out = all.to_json();
  out["error_weight"] = error_weight;
  out["by_source"] = Json::object();
  for (const auto& [s, a] : by_source) out["by_source"][s.empty() ? "(none)" : s] = a.to_json();
  return out;
}

PairBuildReport PairBuildReport::from_json(const Json& j, const std::string& where) {
  PairBuildReport r;
  r.prompts = json_get<int64_t>(j, "prompts", where);
  r.pairs = json_get<int64_t>(j, "pairs", where);
  r.generated_tokens = json_get<int64_t>(j, "generated_tokens", where);
  r.seconds = json_get<double>(j, "seconds", where);
  r.dropped = json_get<std::map<std::string, int64_t>>(j, "dropped", where);
  return r;
}

PairBuildReport PairBuildReport::merge(const std::vector<PairBuildReport>& shards) {
  PairBuildReport out;
  for (const auto& s : shards) {
    out.prompts += s.prompts;
    out.pairs += s.pairs;
    out.generated_tokens += s.generated_tokens;
    out.seconds = std::max(out.seconds, s.seconds);
    for (const auto& [reason, n] : s.dropped) out.dropped[reason] += n;
  }
  return out;
}

std::pair<size_t, size_t> PromptShard::range(size_t n) const {
  if (count < 1 || index < 0 || index >= count)
    fail("prompt shard ", index, " of ", count, ": the index must be in [0, count)");
  const auto at = [&](int64_t i) { return size_t((unsigned __int128)n * uint64_t(i) / uint64_t(count)); };
  return {at(index), at(index + 1)};
}

void merge_pair_files(const std::vector<std::string>& parts, const std::string& out) {
  std::vector<PreferencePair> all;
  for (const auto& part : parts) {
    if (std::filesystem::exists(part) && std::filesystem::file_size(part) == 0) continue;  // a shard without pairs
    auto pairs = read_preference_pairs(part);
    all.insert(all.end(), std::make_move_iterator(pairs.begin()), std::make_move_iterator(pairs.end()));
  }
  write_preference_pairs(out, all);
}

Json PairBuildReport::to_json() const {
  return {{"prompts", prompts},
          {"pairs", pairs},
          {"dropped", dropped},
          {"generated_tokens", generated_tokens},
          {"seconds", seconds},
          {"pairs_per_minute", seconds > 0 ? 60.0 * double(pairs) / seconds : 0.0},
          {"tokens_per_s", seconds > 0 ? double(generated_tokens) / seconds : 0.0}};
}

}  // namespace mmb
