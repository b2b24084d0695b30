// Parameter groups, AdamW construction, the warmup + cosine schedule and AdamW state dumps.
#include "mmb/optim.h"

#include <cmath>
#include <set>
#include <type_traits>

#include "mmb/error.h"
#include "mmb/strings.h"

namespace mmb {
namespace {

// libtorch keys optimiser state by the parameter's TensorImpl: a std::string of the pointer in
// 1.13, the pointer itself in 2.x. Build whichever key the running version uses.
template <typename Map>
typename Map::key_type state_key(const torch::Tensor& p) {
  using Key = typename Map::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    return c10::guts::to_string(p.unsafeGetTensorImpl());
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

using StateMap = std::decay_t<decltype(std::declval<torch::optim::AdamW&>().state())>;

}  // namespace

std::vector<ParamGroup> make_param_groups(torch::nn::Module& module, const ParamGroupOptions& options) {
  const char* fn = "make_param_groups";
  std::set<std::string> names;
  for (const auto& spec : options.groups) {
    if (spec.name.empty() || spec.name == "default") fail(fn, ": group name must be non-empty and not 'default'");
    if (!names.insert(spec.name).second) fail(fn, ": group name '", spec.name, "' repeats");
    if (spec.prefixes.empty()) fail(fn, ": group '", spec.name, "' has no parameter prefixes");
  }
  auto named = module.named_parameters(/*recurse=*/true);

  // Every prefix must match something.
  auto check_prefix = [&](const std::string& prefix, const std::string& what) {
    for (const auto& item : named)
      if (starts_with(item.key(), prefix)) return;
    fail(fn, ": ", what, " prefix '", prefix, "' matches no parameter of the module");
  };
  for (const auto& p : options.frozen_prefixes) check_prefix(p, "frozen");
  for (const auto& spec : options.groups)
    for (const auto& p : spec.prefixes) check_prefix(p, "group '" + spec.name + "'");

  // Groups in spec order, then "default"; each split into decay / no_decay members.
  const size_t n_specs = options.groups.size();
  std::vector<ParamGroup> decay(n_specs + 1), no_decay(n_specs + 1);
  for (size_t g = 0; g <= n_specs; ++g) {
    const bool is_default = g == n_specs;
    std::string name = is_default ? "default" : options.groups[g].name;
    double lr = is_default || options.groups[g].lr < 0 ? options.lr : options.groups[g].lr;
    double wd = is_default || options.groups[g].weight_decay < 0 ? options.weight_decay
                                                                  : options.groups[g].weight_decay;
    decay[g] = ParamGroup{name, lr, wd, {}};
    no_decay[g] = ParamGroup{name + "/no_decay", lr, 0.0, {}};
  }
  for (auto& item : named) {
    const std::string& name = item.key();
    torch::Tensor p = item.value();
    bool frozen = false;
    for (const auto& prefix : options.frozen_prefixes) frozen = frozen || starts_with(name, prefix);
    if (frozen) {
      p.set_requires_grad(false);
      continue;
    }
    if (!p.requires_grad()) continue;  // frozen by the caller
    size_t g = n_specs;
    for (size_t s = 0; s < n_specs && g == n_specs; ++s)
      for (const auto& prefix : options.groups[s].prefixes)
        if (starts_with(name, prefix)) { g = s; break; }
    bool decays = options.decay_1d || p.dim() >= 2;
    (decays ? decay[g] : no_decay[g]).params.push_back({name, p});
  }
  std::vector<ParamGroup> out;
  for (size_t g = 0; g <= n_specs; ++g) {
    if (!decay[g].params.empty()) out.push_back(std::move(decay[g]));
    if (!no_decay[g].params.empty()) out.push_back(std::move(no_decay[g]));
  }
  if (out.empty()) fail(fn, ": no trainable parameters (everything frozen or requires_grad false)");
  return out;
}

std::unique_ptr<torch::optim::AdamW> make_adamw(const std::vector<ParamGroup>& groups, double beta1,
                                                double beta2, double eps) {
  if (groups.empty()) fail("make_adamw: no parameter groups");
  std::vector<torch::optim::OptimizerParamGroup> torch_groups;
  for (const auto& g : groups) {
    std::vector<torch::Tensor> params;
    for (const auto& np : g.params) params.push_back(np.param);
    auto opts = std::make_unique<torch::optim::AdamWOptions>(g.lr);
    opts->betas({beta1, beta2}).eps(eps).weight_decay(g.weight_decay);
    torch_groups.emplace_back(std::move(params), std::move(opts));
  }
  torch::optim::AdamWOptions defaults(groups[0].lr);
  defaults.betas({beta1, beta2}).eps(eps).weight_decay(groups[0].weight_decay);
  return std::make_unique<torch::optim::AdamW>(std::move(torch_groups), defaults);
}

double cosine_lr_factor(int64_t step, int64_t warmup_steps, int64_t total_steps, double min_lr_ratio) {
  if (step < 0) fail("cosine_lr_factor: step must be >= 0, got ", step);
  if (step < warmup_steps) return double(step + 1) / double(warmup_steps);
  const double span = double(std::max<int64_t>(1, total_steps - warmup_steps));
  const double progress = std::min(1.0, std::max(0.0, double(step - warmup_steps) / span));
  return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

void set_lr_factor(torch::optim::AdamW& optimizer, const std::vector<ParamGroup>& groups, double factor) {
  auto& torch_groups = optimizer.param_groups();
  if (torch_groups.size() != groups.size())
    fail("set_lr_factor: optimizer has ", torch_groups.size(), " groups, expected ", groups.size());
  for (size_t g = 0; g < groups.size(); ++g)
    static_cast<torch::optim::AdamWOptions&>(torch_groups[g].options()).lr(groups[g].lr * factor);
}

AdamWStateDump dump_adamw_state(const torch::optim::AdamW& optimizer, const std::vector<ParamGroup>& groups) {
  AdamWStateDump dump;
  const auto& state = optimizer.state();
  for (const auto& g : groups) {
    for (const auto& np : g.params) {
      auto it = state.find(state_key<StateMap>(np.param));
      if (it == state.end()) continue;
      const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
      dump.tensors.emplace_back(np.name + ".exp_avg", s.exp_avg().detach().cpu());
      dump.tensors.emplace_back(np.name + ".exp_avg_sq", s.exp_avg_sq().detach().cpu());
      if (s.max_exp_avg_sq().defined())
        dump.tensors.emplace_back(np.name + ".max_exp_avg_sq", s.max_exp_avg_sq().detach().cpu());
      dump.steps[np.name] = s.step();
    }
  }
  return dump;
}

void load_adamw_state(torch::optim::AdamW& optimizer, const std::vector<ParamGroup>& groups,
                      const std::map<std::string, torch::Tensor>& tensors, const Json& steps,
                      const std::string& context) {
  const char* fn = "load_adamw_state";
  if (!steps.is_object()) fail(fn, ": ", context, ": 'steps' must be an object");
  std::map<std::string, torch::Tensor> by_name;
  for (const auto& g : groups)
    for (const auto& np : g.params) by_name[np.name] = np.param;
  for (auto it = steps.begin(); it != steps.end(); ++it)
    if (!by_name.count(it.key()))
      fail(fn, ": ", context, ": optimizer state for '", it.key(),
           "', which is not a trainable parameter of this run (frozen set or model changed?)");
  size_t used = 0;
  auto get = [&](const std::string& key, const torch::Tensor& like, bool required) -> torch::Tensor {
    auto it = tensors.find(key);
    if (it == tensors.end()) {
      if (required) fail(fn, ": ", context, ": missing tensor '", key, "'");
      return {};
    }
    if (it->second.sizes() != like.sizes())
      fail(fn, ": ", context, ": tensor '", key, "' has shape ", it->second.sizes(), ", parameter has ",
           like.sizes());
    ++used;
    // clone: own memory (the source may be a view of a memory-mapped file).
    return it->second.to(like.device(), like.scalar_type()).clone().contiguous();
  };
  auto& state = optimizer.state();
  state.clear();
  for (const auto& [name, param] : by_name) {
    if (!steps.contains(name)) continue;
    if (!steps[name].is_number_integer()) fail(fn, ": ", context, ": step of '", name, "' is not an integer");
    auto s = std::make_unique<torch::optim::AdamWParamState>();
    s->step(steps[name].get<int64_t>());
    s->exp_avg(get(name + ".exp_avg", param, true));
    s->exp_avg_sq(get(name + ".exp_avg_sq", param, true));
    auto max_sq = get(name + ".max_exp_avg_sq", param, false);
    if (max_sq.defined()) s->max_exp_avg_sq(max_sq);
    state[state_key<StateMap>(param)] = std::move(s);
  }
  if (used != tensors.size())
    fail(fn, ": ", context, ": ", tensors.size() - used, " tensors belong to no stepped parameter");
}

}  // namespace mmb
