// Trainer checkpoints: writing (atomic directory commit), validating, finding and resuming.
//
// <out_dir>/checkpoints/
//   step-<N>/model.safetensors      every parameter and buffer of the module (frozen ones too)
//   step-<N>/optimizer.safetensors  AdamW "<param>.exp_avg", "<param>.exp_avg_sq"
//   step-<N>/rng.safetensors        "torch_cpu": the default CPU generator's state (uint8)
//   step-<N>/trainer_state.json     step, tokens, data cursor, groups, AdamW step counts, options,
//                                   and {"files": {name: {"bytes", "fnv1a64"}}} for every other file
//   latest                          "step-<N>\n", rewritten atomically after each commit
// A checkpoint is written into ".step-<N>.tmp-<pid>", fsync'ed, and renamed to "step-<N>": a
// reader sees a whole directory or none. trainer_state.json is written last inside it.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <regex>
#include <sstream>

#include "mmb/atomic_file.h"
#include "mmb/distributed.h"
#include "mmb/error.h"
#include "mmb/progress.h"
#include "mmb/run_dir.h"
#include "mmb/safetensors.h"
#include "mmb/train.h"

namespace fs = std::filesystem;

namespace mmb {
namespace {

constexpr const char* kFormat = "mmb-train-checkpoint";
constexpr int kVersion = 1;
const char* const kRequiredFiles[] = {"model.safetensors", "optimizer.safetensors", "rng.safetensors"};

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) fail("fsync_path: cannot open ", path);
  ::fsync(fd);
  ::close(fd);
}

// step-<N> directories under `dir`, newest first.
std::vector<std::pair<int64_t, std::string>> list_step_dirs(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  static const std::regex kName("step-([0-9]{1,18})");
  for (const auto& e : fs::directory_iterator(dir)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (e.is_directory() && std::regex_match(name, m, kName)) out.emplace_back(std::stoll(m[1]), e.path().string());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return out;
}

torch::Tensor cpu_generator_state() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void set_cpu_generator_state(const torch::Tensor& state) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state.clone());
}

Json groups_json(const std::vector<ParamGroup>& groups) {
  Json out = Json::array();
  for (const auto& g : groups) {
    Json names = Json::array();
    for (const auto& np : g.params) names.push_back(np.name);
    out.push_back({{"name", g.name}, {"lr", g.lr}, {"weight_decay", g.weight_decay}, {"params", names}});
  }
  return out;
}

Json options_json(const TrainOptions& o) {
  return {{"beta1", o.beta1}, {"beta2", o.beta2}, {"eps", o.eps}, {"warmup_steps", o.warmup_steps},
          {"total_steps", o.total_steps}, {"min_lr_ratio", o.min_lr_ratio}, {"grad_clip", o.grad_clip},
          {"grad_accum", o.grad_accum}, {"weight_by_tokens", o.weight_by_tokens}, {"seed", o.seed}};
}

}  // namespace

std::string fnv1a64_hex(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

Json validate_train_checkpoint(const std::string& dir) {
  const std::string ctx = "validate_train_checkpoint: " + dir;
  const std::string state_path = dir + "/trainer_state.json";
  if (!fs::exists(state_path)) fail(ctx, ": no trainer_state.json (partial checkpoint)");
  Json state;
  try {
    state = read_json_file(state_path);
  } catch (const Error& e) {
    fail(ctx, ": trainer_state.json does not parse: ", e.what());
  }
  if (json_get<std::string>(state, "format", ctx) != kFormat)
    fail(ctx, ": trainer_state.json format is not '", kFormat, "'");
  if (json_get<int>(state, "version", ctx) != kVersion)
    fail(ctx, ": trainer_state.json version ", state["version"].dump(), ", this build reads ", kVersion);
  const auto step = json_get<int64_t>(state, "step", ctx);
  const std::string base = fs::path(dir).filename().string();
  if (base.rfind("step-", 0) == 0 && base != "step-" + std::to_string(step))
    fail(ctx, ": directory name says ", base, " but trainer_state.json says step ", step);
  const Json files = json_get<Json>(state, "files", ctx);
  if (!files.is_object()) fail(ctx, ": 'files' must be an object");
  for (const char* required : kRequiredFiles)
    if (!files.contains(required)) fail(ctx, ": trainer_state.json lists no ", required);
  for (auto it = files.begin(); it != files.end(); ++it) {
    const std::string path = dir + "/" + it.key();
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) fail(ctx, ": file '", it.key(), "' is missing (partial checkpoint)");
    const auto bytes = json_get<int64_t>(it.value(), "bytes", ctx + " files." + it.key());
    const auto sum = json_get<std::string>(it.value(), "fnv1a64", ctx + " files." + it.key());
    const auto size = int64_t(fs::file_size(path, ec));
    if (size != bytes)
      fail(ctx, ": file '", it.key(), "' has ", size, " bytes, trainer_state.json says ", bytes,
           " (truncated or corrupt checkpoint)");
    if (fnv1a64_hex(read_file(path)) != sum)
      fail(ctx, ": file '", it.key(), "' checksum differs from trainer_state.json (corrupt checkpoint)");
  }
  return state;
}

std::string find_latest_train_checkpoint(const std::string& checkpoints_dir, std::vector<std::string>* skipped) {
  for (const auto& [step, path] : list_step_dirs(checkpoints_dir)) {
    try {
      validate_train_checkpoint(path);
      return path;
    } catch (const Error& e) {
      if (skipped) skipped->push_back(e.what());
    }
  }
  return "";
}

std::string Trainer::save_checkpoint() {
  const std::string ckdir = options_.out_dir + "/checkpoints";
  const std::string name = "step-" + std::to_string(step_);
  const std::string final_dir = ckdir + "/" + name;
  if (is_main()) {
    make_dirs(ckdir);
    const std::string tmp = ckdir + "/." + name + ".tmp-" + std::to_string(::getpid());
    fs::remove_all(tmp);
    make_dirs(tmp);

    // A failed write (a full disk) removes its partial directory: the space goes back, and the
    // previous checkpoint stays the latest.
    try {
      std::vector<std::pair<std::string, torch::Tensor>> weights;
      for (const auto& item : module_.named_parameters(true))
        weights.emplace_back(item.key(), item.value().detach().cpu());
      for (const auto& item : module_.named_buffers(true)) weights.emplace_back(item.key(), item.value().detach().cpu());
      save_safetensors(tmp + "/model.safetensors", weights, {{"format", "pt"}});
      AdamWStateDump opt = dump_adamw_state(*optimizer_, groups_);
      save_safetensors(tmp + "/optimizer.safetensors", opt.tensors);
      save_safetensors(tmp + "/rng.safetensors", {{"torch_cpu", cpu_generator_state()}});
      if (ckpt_hook_) ckpt_hook_(tmp);

      Json files = Json::object();
      for (const auto& e : fs::recursive_directory_iterator(tmp)) {
        if (!e.is_regular_file()) continue;
        const std::string rel = fs::relative(e.path(), tmp).string();
        if (rel == "trainer_state.json" || rel.find(".tmp.") != std::string::npos) continue;
        const std::string bytes = read_file(e.path().string());
        files[rel] = {{"bytes", int64_t(bytes.size())}, {"fnv1a64", fnv1a64_hex(bytes)}};
      }
      Json state = {{"format", kFormat},
                    {"version", kVersion},
                    {"step", step_},
                    {"tokens_seen", tokens_seen_},
                    {"data_cursor", cursor_ ? cursor_->state() : Json()},
                    {"groups", groups_json(groups_)},
                    {"optimizer_steps", opt.steps},
                    {"options", options_json(options_)},
                    {"world_size", dist_ ? dist_->world_size() : 1},
                    {"files", files}};
      write_json_file(tmp + "/trainer_state.json", state);
      fsync_path(tmp);
    } catch (...) {
      std::error_code ec;
      fs::remove_all(tmp, ec);
      throw;
    }

    // Commit: swap the directory in, then point `latest` at it.
    std::string old;
    if (fs::exists(final_dir)) {  // re-saving a step after resuming from an older checkpoint
      old = ckdir + "/." + name + ".old-" + std::to_string(::getpid());
      fs::remove_all(old);
      fs::rename(final_dir, old);
    }
    fs::rename(tmp, final_dir);
    fsync_path(ckdir);
    if (!old.empty()) fs::remove_all(old);
    write_file_atomic(ckdir + "/latest", name + "\n");

    // Prune: older step dirs beyond keep_last_checkpoints, and temp dirs of killed writers.
    if (options_.keep_last_checkpoints > 0) {
      auto dirs = list_step_dirs(ckdir);
      for (size_t i = size_t(options_.keep_last_checkpoints); i < dirs.size(); ++i)
        if (dirs[i].second != final_dir) fs::remove_all(dirs[i].second);
    }
    for (const auto& e : fs::directory_iterator(ckdir)) {
      const std::string n = e.path().filename().string();
      if (e.is_directory() && n.rfind(".step-", 0) == 0) fs::remove_all(e.path());
    }
  }
  if (dist_) dist_->barrier();
  return final_dir;
}

bool Trainer::resume() {
  const std::string ckdir = options_.out_dir + "/checkpoints";
  std::vector<std::string> skipped;
  const std::string latest = find_latest_train_checkpoint(ckdir, &skipped);
  for (const auto& why : skipped)
    if (is_main()) log_info("warning: skipping invalid checkpoint: " + why);
  if (latest.empty()) {
    if (!skipped.empty())
      fail("Trainer::resume: no valid checkpoint under ", ckdir, "; refusing to start over on top of ",
           skipped.size(), " invalid one(s); first: ", skipped.front());
    return false;
  }
  resume_from(latest);
  return true;
}

void Trainer::resume_from(const std::string& dir) {
  const std::string ctx = "Trainer::resume_from: " + dir;
  const Json state = validate_train_checkpoint(dir);

  // The trainable set must be the one the checkpoint was written with.
  const Json saved_groups = json_get<Json>(state, "groups", ctx);
  const Json now_groups = groups_json(groups_);
  if (saved_groups.size() != now_groups.size())
    fail(ctx, ": checkpoint has ", saved_groups.size(), " parameter groups, this run ", now_groups.size());
  for (size_t g = 0; g < now_groups.size(); ++g)
    if (saved_groups[g].value("name", "") != now_groups[g]["name"] ||
        saved_groups[g].value("params", Json()) != now_groups[g]["params"])
      fail(ctx, ": parameter group ", g, " ('", now_groups[g]["name"].get<std::string>(),
           "') differs from the checkpoint's (frozen set or model changed?)");

  // Weights: every parameter and buffer, nothing extra.
  {
    SafetensorsFile file(dir + "/model.safetensors");
    torch::NoGradGuard no_grad;
    size_t used = 0;
    auto load_into = [&](const std::string& name, torch::Tensor t) {
      if (!file.contains(name)) fail(ctx, ": model.safetensors has no tensor '", name, "'");
      torch::Tensor src = file.tensor(name);
      if (src.sizes() != t.sizes())
        fail(ctx, ": tensor '", name, "' has shape ", src.sizes(), ", the module's is ", t.sizes());
      t.copy_(src);
      ++used;
    };
    for (auto& item : module_.named_parameters(true)) load_into(item.key(), item.value());
    for (auto& item : module_.named_buffers(true)) load_into(item.key(), item.value());
    if (used != file.entries().size())
      fail(ctx, ": model.safetensors has ", file.entries().size() - used, " tensors the module does not have");
  }
  load_adamw_state(*optimizer_, groups_, load_safetensors(dir + "/optimizer.safetensors"),
                   json_get<Json>(state, "optimizer_steps", ctx), ctx + "/optimizer.safetensors");
  {
    auto rng = load_safetensors(dir + "/rng.safetensors");
    auto it = rng.find("torch_cpu");
    if (it == rng.end()) fail(ctx, ": rng.safetensors has no 'torch_cpu'");
    set_cpu_generator_state(it->second);
  }
  const Json cursor = state.value("data_cursor", Json());
  if (!cursor.is_null()) {
    if (!cursor_) fail(ctx, ": the checkpoint has a data cursor; call set_data() before resuming");
    cursor_->load_state(cursor);
  }
  step_ = json_get<int64_t>(state, "step", ctx);
  tokens_seen_ = json_get<int64_t>(state, "tokens_seen", ctx);
  resumed_ = true;
  truncate_metrics_after(step_);
  if (is_main()) log_info("resumed from " + dir + " at step " + std::to_string(step_));
}

// The killed run may have logged steps after its last checkpoint; they are replayed, so their
// lines are dropped (as is a torn last line).
void Trainer::truncate_metrics_after(int64_t step) {
  if (!run_ || !is_main()) return;
  const std::string path = run_->path("metrics.jsonl");
  if (!fs::exists(path)) return;
  std::istringstream in(read_file(path));
  std::string line, kept;
  int64_t dropped = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    Json rec = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (rec.is_discarded() || (rec.contains("step") && rec["step"].is_number() && rec["step"].get<int64_t>() > step)) {
      ++dropped;
      continue;
    }
    kept += line + "\n";
  }
  if (dropped > 0) write_file_atomic(path, kept);
}

}  // namespace mmb
