// mmb generate: image + prompt -> answer, optionally with per-token log-probs and entropies, and
// the answer's confidence (yes/no probability, option-letter probability or sequence confidence,
// at the temperatures of the model's calibration.json when `mmb calibrate` wrote one).
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "mmb/elicitation.h"
#include "mmb/progress.h"
#include "mmb/vlm.h"

namespace mmb::app {
namespace {

struct GenerateOptions {
  CommonOptions common;
  std::string model, image, prompt;
  int64_t max_new_tokens = 64;
  double temperature = 0.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  double repetition_penalty = 1.0;
  int64_t no_repeat_ngram_size = 0;
  int64_t beams = 1, groups = 1;
  double diversity_penalty = 0.0;
  bool stop_at_sentence = false;
  bool logprobs = false;
  bool json = false;
};

Json tokens_json(const Vlm& vlm, const std::vector<int64_t>& tokens, const std::vector<float>& lp,
                 const std::vector<float>* ent) {
  Json arr = Json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    Json t = {{"id", tokens[i]}, {"piece", vlm.tokenizer().id_to_piece(int32_t(tokens[i]))}, {"logprob", lp[i]}};
    if (ent) t["entropy"] = (*ent)[i];
    arr.push_back(t);
  }
  return arr;
}

void run(GenerateOptions& o) {
  apply_common_options(o.common);
  Vlm vlm = Vlm::load(o.model);
  Image img;
  if (!o.image.empty()) img = read_image(o.image);
  const Image* image = o.image.empty() ? nullptr : &img;
  Progress timer("generate", 0, "tokens", 1e9);
  Json out;
  if (o.beams > 1) {
    BeamOptions b;
    b.num_beams = o.beams;
    b.num_groups = o.groups;
    b.diversity_penalty = o.diversity_penalty;
    b.stop = vlm.default_stop(o.max_new_tokens);
    b.stop.stop_at_sentence_end = o.stop_at_sentence;
    auto state = prefill(vlm.model(), vlm.encode_prompt(o.prompt, image), o.max_new_tokens + 1);
    auto beams = beam_search(vlm.model(), state, b);
    out["beams"] = Json::array();
    for (const auto& beam : beams) {
      Json j = {{"text", vlm.decode(beam.tokens)}, {"score", beam.score}, {"group", beam.group},
                {"finish_reason", beam.finish_reason}};
      if (o.logprobs) j["tokens"] = tokens_json(vlm, beam.tokens, beam.logprobs, nullptr);
      out["beams"].push_back(j);
      if (!o.json)
        std::cout << "[group " << beam.group << ", score " << beam.score << "] " << vlm.decode(beam.tokens) << "\n";
    }
  } else {
    SampleOptions s;
    s.temperature = o.temperature;
    s.top_k = o.top_k;
    s.top_p = o.top_p;
    s.repetition_penalty = o.repetition_penalty;
    s.no_repeat_ngram_size = o.no_repeat_ngram_size;
    s.seed = o.common.seed;
    s.stop = vlm.default_stop(o.max_new_tokens);
    s.stop.stop_at_sentence_end = o.stop_at_sentence;
    auto a = vlm.answer({o.prompt}, {image}, s)[0];
    timer.set(int64_t(a.generation.tokens.size()));
    out = {{"text", a.text}, {"finish_reason", a.generation.finish_reason},
           {"sum_logprob", a.generation.sum_logprob()}};
    if (!a.generation.tokens.empty()) {
      // Calibrated with the model's calibration.json (mmb calibrate) when it has one.
      const auto conf = answer_confidence(vlm, o.prompt, image, a.generation, read_confidence_temperatures(o.model));
      out["confidence"] = {{"value", conf.confidence}, {"method", conf.method}, {"temperature", conf.temperature}};
    }
    if (o.logprobs)
      out["tokens"] = tokens_json(vlm, a.generation.tokens, a.generation.logprobs, &a.generation.entropies);
    if (!o.json) {
      std::cout << a.text << "\n";
      if (out.contains("confidence"))
        std::printf("confidence %.3f (%s, temperature %.3f)\n", out["confidence"]["value"].get<double>(),
                    out["confidence"]["method"].get<std::string>().c_str(),
                    out["confidence"]["temperature"].get<double>());
      if (o.logprobs)
        for (const auto& t : out["tokens"])
          std::printf("%8s  logprob %8.4f  entropy %7.4f\n", t["piece"].get<std::string>().c_str(),
                      t["logprob"].get<double>(), t["entropy"].get<double>());
    }
  }
  if (o.json) std::cout << out.dump(2) << "\n";
  timer.done();
}

}  // namespace

void setup_generate(CLI::App& cmd) {
  auto o = std::make_shared<GenerateOptions>();
  add_common_options(cmd, o->common, /*with_out=*/false);
  add_examples(cmd, "mmb generate --model DIR --image img.png --prompt \"What colour is the star?\" [--logprobs]\n");
  cmd.add_option("--model", o->model, "Model directory")->required();
  cmd.add_option("--image", o->image, "Image file (PNG/JPEG); omit for text only");
  cmd.add_option("--prompt", o->prompt, "Question")->required();
  cmd.add_option("--max-new-tokens", o->max_new_tokens, "Maximum new tokens")->group("Decoding")->capture_default_str();
  cmd.add_option("--temperature", o->temperature, "0 = greedy")->group("Decoding")->capture_default_str();
  cmd.add_option("--top-k", o->top_k, "Top-k filter (0 = off)")->group("Decoding")->capture_default_str();
  cmd.add_option("--top-p", o->top_p, "Nucleus filter (1 = off)")->group("Decoding")->capture_default_str();
  cmd.add_option("--repetition-penalty", o->repetition_penalty,
                 "Divide positive (multiply negative) logits of tokens already generated by this (1 = off)")
      ->group("Decoding")
      ->capture_default_str();
  cmd.add_option("--no-repeat-ngram-size", o->no_repeat_ngram_size,
                 "Forbid tokens that repeat an n-gram of the generation (0 = off)")
      ->group("Decoding")
      ->capture_default_str();
  cmd.add_option("--beams", o->beams, "Beam search with this many beams (1 = sampling)")
      ->group("Beam search")
      ->capture_default_str();
  cmd.add_option("--groups", o->groups, "Beam groups (diverse beam search)")
      ->group("Beam search")
      ->capture_default_str();
  cmd.add_option("--diversity-penalty", o->diversity_penalty, "Hamming diversity penalty")
      ->group("Beam search")
      ->capture_default_str();
  cmd.add_flag("--stop-at-sentence", o->stop_at_sentence, "Stop at the end of the first sentence")->group("Decoding");
  cmd.add_flag("--logprobs", o->logprobs, "Print per-token log-probs and entropies")->group("Output");
  cmd.add_flag("--json", o->json, "Print JSON")->group("Output");
  cmd.callback([o] { run(*o); });
}

}  // namespace mmb::app
