// mmb score: teacher-forced log-probs and entropies of a given response.
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "mmb/vlm.h"

namespace mmb::app {
namespace {

struct ScoreOptions {
  CommonOptions common;
  std::string model, image, prompt, response;
  bool json = false;
};

void run(ScoreOptions& o) {
  apply_common_options(o.common);
  Vlm vlm = Vlm::load(o.model);
  Image img;
  if (!o.image.empty()) img = read_image(o.image);
  Generation g = vlm.score(o.prompt, o.image.empty() ? nullptr : &img, o.response);
  const double n = double(std::max<size_t>(g.tokens.size(), 1));
  Json out = {{"sum_logprob", g.sum_logprob()}, {"mean_logprob", g.sum_logprob() / n},
              {"tokens", Json::array()}};
  for (size_t i = 0; i < g.tokens.size(); ++i)
    out["tokens"].push_back({{"id", g.tokens[i]}, {"piece", vlm.tokenizer().id_to_piece(int32_t(g.tokens[i]))},
                             {"logprob", g.logprobs[i]}, {"entropy", g.entropies[i]}});
  if (o.json) {
    std::cout << out.dump(2) << "\n";
    return;
  }
  for (const auto& t : out["tokens"])
    std::printf("%10s  logprob %8.4f  entropy %7.4f\n", t["piece"].get<std::string>().c_str(),
                t["logprob"].get<double>(), t["entropy"].get<double>());
  std::printf("sum logprob %.4f, mean %.4f over %zu tokens\n", g.sum_logprob(), g.sum_logprob() / n, g.tokens.size());
}

}  // namespace

void setup_score(CLI::App& cmd) {
  auto o = std::make_shared<ScoreOptions>();
  add_common_options(cmd, o->common, /*with_out=*/false);
  add_examples(cmd, "mmb score --model DIR --image img.png --prompt \"Is there a star?\" --response \"Yes.\"\n");
  cmd.add_option("--model", o->model, "Model directory")->required();
  cmd.add_option("--image", o->image, "Image file; omit for text only");
  cmd.add_option("--prompt", o->prompt, "Question")->required();
  cmd.add_option("--response", o->response, "Response to score")->required();
  cmd.add_flag("--json", o->json, "Print JSON");
  cmd.callback([o] { run(*o); });
}

}  // namespace mmb::app
