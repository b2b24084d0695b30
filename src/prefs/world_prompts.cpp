// The world's description prompts for online DPO and the preference builders, and the image-path
// guard every reader of outside paths uses.
#include <algorithm>
#include <filesystem>
#include <numeric>
#include <random>
#include <set>

#include "mmb/error.h"
#include "mmb/jsonl.h"
#include "mmb/prefs.h"
#include "mmb/strings.h"

namespace fs = std::filesystem;

namespace mmb {

void check_under_root(const std::string& path, const std::string& where, const char* who) {
  if (fs::path(path).is_absolute())
    fail(who, ": ", where, ": image path '", path, "' must be relative to the image root");
  for (const auto& part : fs::path(path))
    if (part == "..") fail(who, ": ", where, ": image path '", path, "' leaves the image root");
}

namespace {

// "pope" or "pope:<category>[,<category>...]": the split's POPE yes/no questions of those categories
// (all three when none is named), each a short-answer prompt whose reference is "Yes." or "No.".
std::vector<DescriptionPrompt> read_pope_prompts(const std::string& world_dir, const std::string& split,
                                                 const std::string& task,
                                                 const std::map<std::string, size_t>& scene_index) {
  static const std::set<std::string> kCategories = {"random", "popular", "adversarial"};
  std::set<std::string> wanted;
  if (task.size() > 5) {
    if (task[4] != ':') fail("read_task_prompts: unknown task '", task, "'");
    for (const std::string& c : split_list(task.substr(5))) {
      if (!kCategories.count(c))
        fail("read_task_prompts: task '", task, "': unknown POPE category '", c, "' (random, popular, adversarial)");
      wanted.insert(c);
    }
  }
  if (wanted.empty()) wanted = kCategories;
  const std::string path = world_dir + "/" + split + "/pope.jsonl";
  JsonlReader reader(path);
  std::vector<DescriptionPrompt> out;
  Json r;
  while (reader.next(r)) {
    const std::string where = reader.where();
    if (!wanted.count(json_get<std::string>(r, "category", where))) continue;
    const std::string label = json_get<std::string>(r, "label", where);
    if (label != "yes" && label != "no") fail("read_task_prompts: ", where, ": label '", label, "' is not yes or no");
    DescriptionPrompt p;
    p.task = "qa";  // judged as a short answer against the reference
    p.question = json_get<std::string>(r, "text", where);
    p.reference = label == "yes" ? "Yes." : "No.";
    p.image = json_get<std::string>(r, "image", where);
    check_under_root(p.image, where, "read_task_prompts");
    auto it = scene_index.find(json_get<std::string>(r, "scene", where));
    if (it == scene_index.end()) fail("read_task_prompts: ", where, ": no scene '", r["scene"].dump(), "'");
    p.scene = it->second;
    out.push_back(std::move(p));
  }
  if (out.empty()) fail("read_task_prompts: ", path, ": no ", task, " questions");
  return out;
}

}  // namespace

bool is_prompt_task(const std::string& task) {
  return task == "description" || task == "qa" || task == "reasoning" || task == "pope" ||
         task.rfind("pope:", 0) == 0;
}

std::vector<DescriptionPrompt> read_task_prompts(const std::string& world_dir, const std::string& split,
                                                 const std::string& task,
                                                 const std::map<std::string, size_t>& scene_index) {
  if (task == "pope" || task.rfind("pope:", 0) == 0) return read_pope_prompts(world_dir, split, task, scene_index);
  if (!is_prompt_task(task))
    fail("read_task_prompts: unknown task '", task, "' (description, qa, reasoning, pope[:categories])");
  const std::string path = world_dir + "/" + split + "/llava.json";
  const Json records = read_json_file(path);
  if (!records.is_array()) fail("read_task_prompts: ", path, ": expected a JSON array");
  std::vector<DescriptionPrompt> out;
  for (size_t i = 0; i < records.size(); ++i) {
    const Json& r = records[i];
    if (!r.is_object() || r.value("task", std::string()) != task) continue;
    const std::string where = path + " record " + std::to_string(i);
    const Json conv = json_get<Json>(r, "conversations", where);
    if (!conv.is_array() || conv.empty()) fail("read_task_prompts: ", where, ": empty conversations");
    DescriptionPrompt p;
    p.task = task;
    p.question = json_get<std::string>(conv[0], "value", where);
    for (const std::string m : {"<image>\n", "<image>"})
      if (auto k = p.question.find(m); k != std::string::npos) p.question.erase(k, m.size());
    if (conv.size() > 1 && conv[1].is_object()) p.reference = conv[1].value("value", std::string());
    p.image = json_get<std::string>(r, "image", where);
    check_under_root(p.image, where, "read_task_prompts");
    auto it = scene_index.find(fs::path(p.image).stem().string());
    if (it == scene_index.end()) fail("read_task_prompts: ", where, ": no scene for image ", p.image);
    p.scene = it->second;
    out.push_back(std::move(p));
  }
  if (out.empty()) fail("read_task_prompts: ", path, ": no ", task, " prompts");
  return out;
}

std::vector<DescriptionPrompt> read_description_prompts(const std::string& world_dir, const std::string& split,
                                                        const std::map<std::string, size_t>& scene_index) {
  return read_task_prompts(world_dir, split, "description", scene_index);
}

std::vector<size_t> draw_indices(size_t n, int64_t limit, uint64_t seed) {
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), size_t(0));
  if (limit < 0 || limit >= int64_t(n)) return idx;
  std::mt19937_64 rng(seed);
  std::shuffle(idx.begin(), idx.end(), rng);
  idx.resize(size_t(limit));
  std::sort(idx.begin(), idx.end());
  return idx;
}

WorldPromptSet draw_world_prompts(const std::string& world_dir, const std::string& split, int64_t limit,
                                  uint64_t seed, const std::vector<std::string>& tasks) {
  WorldPromptSet set;
  set.scenes = world::read_scenes(world_dir + "/scenes.jsonl");
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < set.scenes.size(); ++i) index[set.scenes[i].id] = i;
  std::vector<DescriptionPrompt> all;
  for (const auto& task : tasks)
    for (auto& p : read_task_prompts(world_dir, split, task, index)) all.push_back(std::move(p));
  for (size_t i : draw_indices(all.size(), limit, seed)) set.prompts.push_back(all[i]);
  return set;
}

}  // namespace mmb
