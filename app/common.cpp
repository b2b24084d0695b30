// Shared CLI plumbing: common options, the TOML config reader, run directories.
//
// --config: CLI11 processes config files on the root app only, so --config lives on the root and
// every subcommand falls through to it (`mmb world generate --config w.toml` works). The reader
// (toml++) maps top-level keys to the options of the subcommand chosen on the command line;
// a table named after a subcommand path ([world.generate]) targets that subcommand. Unknown keys
// are errors. Flags given on the command line win over the file.
#include "common.h"

#include <filesystem>
#include <iostream>
#include <sstream>

#include <toml++/toml.h>

#include "mmb/distributed.h"
#include "mmb/dpo.h"
#include "mmb/prefs.h"
#include "mmb/progress.h"
#include "mmb/threads.h"

namespace mmb::app {
namespace {

std::vector<std::string> g_command_line;

// The chain of subcommands selected on the command line, e.g. {"world", "generate"}.
std::vector<std::string> selected_path(const CLI::App* root) {
  std::vector<std::string> path;
  const CLI::App* cur = root;
  while (cur) {
    auto subs = cur->get_subcommands();
    if (subs.empty()) break;
    cur = subs.front();
    path.push_back(cur->get_name());
  }
  return path;
}

std::string toml_scalar(const toml::node& node, const std::string& key) {
  if (auto s = node.as_string()) return s->get();
  if (auto i = node.as_integer()) return std::to_string(i->get());
  if (auto f = node.as_floating_point()) {
    std::ostringstream os;
    os.precision(17);
    os << f->get();
    return os.str();
  }
  if (auto b = node.as_boolean()) return b->get() ? "true" : "false";
  throw CLI::ConversionError("config key '" + key + "': unsupported TOML value type");
}

class TomlConfig : public CLI::Config {
 public:
  explicit TomlConfig(const CLI::App* root) : root_(root) {}

  std::string to_config(const CLI::App* app, bool /*default_also*/, bool, std::string) const override {
    return resolved_config(*app).dump(2);
  }

  std::vector<CLI::ConfigItem> from_config(std::istream& in) const override {
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    toml::table table;
    try {
      table = toml::parse(text);
    } catch (const toml::parse_error& e) {
      std::ostringstream os;
      os << "config: TOML error at line " << e.source().begin.line << ", column "
         << e.source().begin.column << ": " << e.description();
      throw CLI::ConversionError(os.str());
    }
    std::vector<CLI::ConfigItem> items;
    collect(table, {}, selected_path(root_), items);
    return items;
  }

 private:
  // `table_path` is the path of nested tables down to `table` ({} at the top, {"world",
  // "generate"} inside [world.generate]); keys at the top belong to the selected subcommand.
  void collect(const toml::table& table, const std::vector<std::string>& table_path,
               const std::vector<std::string>& selected, std::vector<CLI::ConfigItem>& items) const {
    for (const auto& [k, node] : table) {
      std::string key(k.str());
      if (auto sub = node.as_table()) {
        std::vector<std::string> p = table_path;  // a table names a subcommand path from the root
        std::stringstream ss(key);
        for (std::string part; std::getline(ss, part, '.');) p.push_back(part);
        collect(*sub, p, selected, items);
        continue;
      }
      CLI::ConfigItem item;
      item.parents = table_path.empty() ? selected : table_path;
      item.name = key;
      if (auto arr = node.as_array()) {
        for (const auto& el : *arr) item.inputs.push_back(toml_scalar(el, key));
      } else {
        item.inputs.push_back(toml_scalar(node, key));
      }
      items.push_back(std::move(item));
    }
  }
  const CLI::App* root_;
};

Json parse_scalar(const std::string& s) {
  if (s == "true") return true;
  if (s == "false") return false;
  if (!s.empty()) {
    char* end = nullptr;
    long long i = std::strtoll(s.c_str(), &end, 10);
    if (*end == '\0') return i;
    double d = std::strtod(s.c_str(), &end);
    if (*end == '\0') return d;
  }
  return s;
}

}  // namespace

void install_toml_config(CLI::App& app) {
  app.option_defaults()->always_capture_default();
  app.allow_config_extras(false);
  app.fallthrough();
  app.set_config("--config", "", "TOML file whose keys are flag names (flags override it)");
  app.config_formatter(std::make_shared<TomlConfig>(&app));
}

namespace {
const char* const kConfigNote = "Every flag can also be set in --config FILE.toml (keys are flag names; flags win).";
}  // namespace

void add_examples(CLI::App& cmd, const std::string& examples) {
  const bool has_note = cmd.get_footer().find(kConfigNote) != std::string::npos;
  std::string text = "Examples:\n";
  size_t begin = 0;
  for (size_t end; (end = examples.find('\n', begin)) != std::string::npos; begin = end + 1)
    text += "  " + examples.substr(begin, end - begin + 1);
  cmd.footer(text + (has_note ? std::string("\n") + kConfigNote : std::string()));
}

void add_common_options(CLI::App& cmd, CommonOptions& opts, bool with_out) {
  cmd.fallthrough();
  cmd.footer(kConfigNote);
  cmd.add_option("--threads", opts.threads,
                 "Threads (0 = every available core; -1 = the cores not busy now; policy in docs/performance.md)")
      ->group("Common")
      ->capture_default_str();
  cmd.add_option("--seed", opts.seed, "Seed applied to every RNG")->group("Common")->capture_default_str();
  if (with_out)
    cmd.add_option("--out", opts.out, "Run directory (manifest.json, metrics.jsonl, results)")
        ->group("Common");
}

void apply_common_options(const CommonOptions& opts) {
  apply_thread_policy(default_thread_policy(opts.threads));
  seed_everything(opts.seed);
  log_info("seed " + std::to_string(opts.seed) + ", threads " + describe_threads());
}

Json resolved_config(const CLI::App& cmd) {
  Json out = Json::object();
  for (const CLI::App* app = &cmd; app != nullptr; app = app->get_parent()) {
    for (const CLI::Option* opt : app->get_options()) {
      const std::string& name = opt->get_lnames().empty() ? opt->get_name() : opt->get_lnames().front();
      if (name.empty() || name == "help" || name == "version" || out.contains(name)) continue;
      std::vector<std::string> values = opt->count() > 0 ? opt->results()
                                                         : std::vector<std::string>{opt->get_default_str()};
      if (opt->get_expected_max() > 1 && opt->count() > 0) {
        Json arr = Json::array();
        for (const auto& v : values) arr.push_back(parse_scalar(v));
        out[name] = arr;
      } else {
        out[name] = values.empty() ? Json(nullptr) : parse_scalar(values.back());
      }
    }
  }
  return out;
}

std::unique_ptr<RunDir> open_run_dir(const CLI::App& cmd, const CommonOptions& opts) {
  if (opts.out.empty()) return nullptr;
  RunInfo info;
  info.argv = command_line();
  info.config = resolved_config(cmd);
  info.seed = opts.seed;
  info.extra["threads"] = describe_threads();
  info.extra["libraries"] = library_versions();  // libtorch, OpenBLAS (machine: cores, BLAS path)
  auto dir = std::make_unique<RunDir>(opts.out, std::move(info));
  log_info("run directory " + dir->dir());
  return dir;
}

const std::vector<std::string>& command_line() { return g_command_line; }

void set_command_line(int argc, char** argv) { g_command_line.assign(argv, argv + argc); }

void print_step_stats(const StepStats& s) {
  std::cout << "step " << s.step << "  loss " << s.loss << "  lr " << s.lr << "  grad_norm " << s.grad_norm;
  for (auto& [k, v] : s.extra.items()) std::cout << "  " << k << " " << v.dump();
  std::cout << "\n";
}


void add_dpo_options(CLI::App& cmd, DpoRunOptions& o) {
  const char* l = "Loss";
  cmd.add_option("--loss", o.loss.loss, "sigmoid | robust | hinge | ipo (per-token, TRL) | ipo_sum")
      ->group(l)
      ->capture_default_str();
  cmd.add_option("--beta", o.loss.beta, "β")->group(l)->capture_default_str();
  cmd.add_option("--label-smoothing", o.loss.label_smoothing, "ε of sigmoid (cDPO) and robust")
      ->group(l)
      ->capture_default_str();
  cmd.add_option("--rpo-alpha", o.loss.rpo_alpha, "Weight of the chosen response's NLL (RPO; 0 = off)")
      ->group(l)
      ->capture_default_str();
  cmd.add_option("--image-weight", o.loss.image_weight,
                 "Weight of mDPO's image-conditional term: the chosen response on the real vs a corrupted image (0 = off)")
      ->group(l)
      ->capture_default_str();
  cmd.add_option("--image-corruption", o.image_corruption, "The corrupted image m': crop | noise")
      ->group(l)
      ->check(CLI::IsMember({"crop", "noise"}))
      ->capture_default_str();
  cmd.add_option("--image-keep", o.image_keep, "crop: the largest share of the image's area kept")
      ->group(l)
      ->check(CLI::Range(0.01, 1.0))
      ->capture_default_str();
  cmd.add_option("--image-noise-step", o.image_noise_step, "noise: the diffusion step t (0-based, of 1000)")
      ->group(l)
      ->check(CLI::Range(0, 999))
      ->capture_default_str();
  cmd.add_option("--anchor", o.loss.anchor, "Weight of mDPO's anchor on the chosen reward (0 = off)")
      ->group(l)
      ->capture_default_str();
  const char* on = "Online DPO";
  cmd.add_flag("--online", o.online, "Sample responses with the policy each step; the judge picks the pairs")
      ->group(on);
  cmd.add_option("--online-split", o.online_split, "World split the prompts come from")->group(on)->capture_default_str();
  cmd.add_option("--samples-per-prompt", o.samples_per_prompt, "Responses k sampled per prompt (>= 2)")
      ->group(on)
      ->capture_default_str();
  cmd.add_option("--temperature", o.temperature, "Sampling temperature")->group(on)->capture_default_str();
  cmd.add_option("--top-p", o.top_p, "Nucleus sampling mass")->group(on)->capture_default_str();
  cmd.add_option("--max-new-tokens", o.max_new_tokens, "Longest sampled response")->group(on)->capture_default_str();
  cmd.add_option("--online-weight", o.online_weight,
                 "A step's loss: mean over its kept pairs (pairs) or their sum over its prompts (prompts)")
      ->group(on)
      ->capture_default_str();
  cmd.add_option("--mix-online", o.mix_online,
                 "Mixed DPO (with --online and --data): share of a step's slots that take an online pair")
      ->group(on)
      ->capture_default_str();
  cmd.add_option("--avg-gamma", o.avg_gamma,
                 "avg DPO (with --data and --world): g L(y+, y-) + (1 - g) L(y+, worst own sample); 1 = off")
      ->group(on)
      ->capture_default_str();
  cmd.add_option("--judge", o.judge,
                 "Ranks the samples: verifier (the world's truth) | clip (CLIPScore of the sentences) | likelihood | mix")
      ->group(on)
      ->capture_default_str();
  cmd.add_option("--judge-mix", o.judge_mix, "The mix judge's weights, e.g. verifier=1,clip=0.5,likelihood=0.5")->group(on);
  cmd.add_option("--online-tasks", o.online_tasks,
                 "The prompts' tasks: description, qa, reasoning, pope or pope:CATEGORIES (e.g. pope:adversarial)")
      ->group(on)
      ->check(CLI::Validator(
          [](std::string& t) {
            return is_prompt_task(t) ? std::string()
                                     : "unknown task '" + t + "' (description, qa, reasoning, pope[:categories])";
          },
          "TASK"))
      ->capture_default_str();
  cmd.add_option("--judge-error-weight", o.judge_error_weight,
                 "Verifier judge: score = recall - w * errors / visible objects")
      ->group(on)
      ->capture_default_str();
  cmd.add_option("--judge-recall", o.judge_recall,
                 "Verifier judge's recall: strict (objects truly described) | mention (objects referred to)")
      ->group(on)
      ->check(CLI::IsMember({"strict", "mention"}))
      ->capture_default_str();
  cmd.add_option("--judge-false-weight", o.judge_false_weight,
                 "Verifier judge: a false sentence's share of an error (a hallucinated object or unverifiable sentence = 1)")
      ->group(on)
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd.add_option("--length-tolerance", o.length_tolerance,
                 "Verifier judge: the rejected description's or reasoning chain's token count within this fraction of the chosen's (0 = off)")
      ->group(on)
      ->check(CLI::Range(0.0, 10.0))
      ->capture_default_str();
  cmd.add_flag("--finish-chains", o.finish_chains,
               "With --length-tolerance: a reasoning chain without its final answer may be the rejected at any length")
      ->group(on);
  cmd.add_flag("--qa-balance", o.qa_balance, "QA prompts: as many pairs choosing \"yes\" as \"no\" in each step")
      ->group(on);
  cmd.add_flag("--greedy-sample", o.greedy_sample,
               "One of each prompt's samples is the policy's greedy answer (what mmb eval decodes)")
      ->group(on);
  cmd.add_option("--loop-pairs", o.loop_pairs,
                 "Descriptions: a sample that repeats a sentence against itself with a sentence naming an unmentioned "
                 "object in the repeat's place (name), cut before it (stop), name while an object is unmentioned else "
                 "stop (both), or no such pair (none)")
      ->check(CLI::IsMember({"none", "stop", "name", "both"}))
      ->group(on)
      ->capture_default_str();
  const char* t = "Training";
  cmd.add_option("--steps", o.steps, "Optimiser steps")->group(t)->capture_default_str();
  cmd.add_option("--batch", o.batch_size, "Pairs (online: prompts) per global batch")->group(t)->capture_default_str();
  cmd.add_option("--lr", o.lr, "Peak learning rate")->group(t)->capture_default_str();
  cmd.add_option("--weight-decay", o.weight_decay, "Decoupled weight decay")->group(t)->capture_default_str();
  cmd.add_option("--warmup-ratio", o.warmup_ratio, "Warmup steps / steps")->group(t)->capture_default_str();
  cmd.add_option("--grad-clip", o.grad_clip, "Global gradient-norm clip")->group(t)->capture_default_str();
  cmd.add_option("--grad-accum", o.grad_accum, "Micro-batches per step")->group(t)->capture_default_str();
  cmd.add_option("--checkpoint-every", o.checkpoint_every, "Steps between checkpoints")
      ->group(t)
      ->capture_default_str();
  cmd.add_flag("--freeze-vision,!--train-vision", o.freeze_vision, "Keep the vision tower fixed (default)")->group(t);
  cmd.add_option("--ref-batch", o.ref_batch, "Pairs per reference forward")->group(t)->capture_default_str();
}

PairBuildReport run_sharded_build(std::string& out, PromptShard& shard, bool& progress,
                                  const std::function<PairBuildReport()>& build) {
  const DistEnv env = dist_env_from_environment();
  if (env.world_size <= 1) return build();
  progress = progress && env.rank == 0;
  Distributed dist(env);
  const std::string whole = out;
  const auto part = [&](int rank) { return whole + ".shard" + std::to_string(rank); };
  shard = {env.rank, env.world_size};
  out = part(env.rank);
  PairBuildReport total = build();
  write_json_file(out + ".report.json", total.to_json());
  out = whole;
  dist.barrier();
  std::string error;
  if (dist.is_main()) {
    try {
      std::vector<std::string> parts;
      std::vector<PairBuildReport> reports;
      for (int r = 0; r < env.world_size; ++r) {
        parts.push_back(part(r));
        reports.push_back(
            PairBuildReport::from_json(read_json_file(part(r) + ".report.json"), part(r) + ".report.json"));
      }
      total = PairBuildReport::merge(reports);
      if (total.pairs == 0)
        fail("mmb prefs: no prompt gave a pair on any of ", env.world_size, " ranks (", total.prompts,
             " prompts; dropped ", Json(total.dropped).dump(), ")");
      merge_pair_files(parts, whole);
      for (const auto& p : parts) {
        std::filesystem::remove(p);
        std::filesystem::remove(p + ".report.json");
      }
    } catch (const Error& e) {
      error = e.what();
    }
  }
  dist.barrier();  // the other ranks return once the joined file is written
  if (!error.empty()) throw Error(error);
  return total;
}

}  // namespace mmb::app
