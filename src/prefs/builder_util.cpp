// The world builders' shared pieces (builder_util.h).
#include "builder_util.h"

#include "mmb/atomic_file.h"
#include "mmb/error.h"

namespace mmb {

PromptBatch::PromptBatch(const WorldPromptSet& set, const std::string& world_dir, size_t begin, size_t end,
                         int64_t copies) {
  owned.reserve(end - begin);
  for (size_t i = begin; i < end; ++i) owned.push_back(read_image(world_dir + "/" + set.prompts[i].image));
  for (size_t i = begin; i < end; ++i)
    for (int64_t c = 0; c < copies; ++c) {
      questions.push_back(set.prompts[i].question);
      images.push_back(&owned[i - begin]);
      prompt_of.push_back(i);
    }
}

PreferencePair world_pair(const DescriptionPrompt& p, const world::Scene& scene, const std::string& chosen,
                          const std::string& rejected, const std::string& source, const ResponseJudgement& chosen_judgement,
                          const ResponseJudgement& rejected_judgement, const Json& detail) {
  PreferencePair pair;
  pair.prompt = {{p.question, ""}};
  pair.chosen = chosen;
  pair.rejected = rejected;
  pair.image = p.image;
  pair.extra = detail.is_object() ? detail : Json::object();
  pair.extra["source"] = source;
  pair.extra["scene"] = scene.id;
  pair.extra["task"] = p.task;
  pair.extra["chosen_judgement"] = chosen_judgement.to_json();
  pair.extra["rejected_judgement"] = rejected_judgement.to_json();
  return pair;
}

std::string pairs_note(const PairBuildReport& report, std::chrono::steady_clock::time_point t0) {
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return std::to_string(report.pairs) + " pairs, " + std::to_string(int(60.0 * double(report.pairs) / std::max(s, 1e-9))) +
         " pairs/min";
}

uint64_t shard_seed(uint64_t seed, const PromptShard& shard) {
  return seed + 0x9e3779b97f4a7c15ULL * uint64_t(shard.index);
}

void finish_build(const char* who, const std::string& out, const std::vector<PreferencePair>& pairs,
                  PairBuildReport& report, std::chrono::steady_clock::time_point t0, const PromptShard& shard) {
  if (pairs.empty() && shard.count > 1) {
    write_file_atomic(out, "");
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return;
  }
  if (pairs.empty()) fail(who, ": no prompt gave a pair (", report.prompts, " prompts; dropped ", Json(report.dropped).dump(), ")");
  write_preference_pairs(out, pairs);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace mmb
