// Pieces the world's preference builders share (corrected, bpo): a batch of drawn prompts with
// their images, the progress note, and writing the pairs. Internal to src/prefs/.
#pragma once
#include <chrono>
#include <string>
#include <vector>

#include "mmb/image.h"
#include "mmb/prefs.h"

namespace mmb {

// Prompts [begin, end) of `set`, each repeated `copies` times (rows prompt_of[r]), with their
// images read from the world directory.
struct PromptBatch {
  std::vector<std::string> questions;
  std::vector<const Image*> images;  // into `owned`
  std::vector<size_t> prompt_of;     // index into set.prompts, per row
  std::vector<Image> owned;          // one per prompt
  PromptBatch(const WorldPromptSet& set, const std::string& world_dir, size_t begin, size_t end, int64_t copies = 1);
  PromptBatch(const PromptBatch&) = delete;
  PromptBatch& operator=(const PromptBatch&) = delete;
};

// A pair on a world prompt: its question and image, the two sides, and in `extra` the "source",
// "scene", "task" and both judgements besides the builder's own fields (`detail`).
PreferencePair world_pair(const DescriptionPrompt& p, const world::Scene& scene, const std::string& chosen,
                          const std::string& rejected, const std::string& source, const ResponseJudgement& chosen_judgement,
                          const ResponseJudgement& rejected_judgement, const Json& detail = Json::object());

// "N pairs, M pairs/min" since t0.
std::string pairs_note(const PairBuildReport& report, std::chrono::steady_clock::time_point t0);

// Writes the pairs (atomically) and fills report.seconds; throws mmb::Error naming `who` when no
// prompt gave a pair, with the drop counts. One shard of several may have none: its file is empty.
void finish_build(const char* who, const std::string& out, const std::vector<PreferencePair>& pairs,
                  PairBuildReport& report, std::chrono::steady_clock::time_point t0, const PromptShard& shard);

// A shard's own stream of the builder's draws: the builder's seed for shard 0 (one process), mixed
// with the shard index for the others.
uint64_t shard_seed(uint64_t seed, const PromptShard& shard);

}  // namespace mmb
