// The answering pipeline: prompt template, tokenization with <image> expansion, image
// preprocessing, batched generation and scoring.
#include "mmb/vlm.h"

#include <algorithm>
#include <fstream>

#include "mmb/checkpoint.h"
#include "mmb/error.h"
#include "mmb/json.h"

namespace mmb {
namespace {
torch::Device cfg_device(const LlavaForConditionalGeneration& model) {
  return model->parameters().front().device();
}
}  // namespace

torch::Tensor image_to_pixel_values(const Image& image, int64_t size) {
  if (image.channels != 3) fail("image_to_pixel_values: expected an RGB image, got ", image.channels, " channels");
  auto t = torch::from_blob(const_cast<uint8_t*>(image.pixels.data()), {image.height, image.width, 3}, torch::kUInt8)
               .permute({2, 0, 1})
               .to(torch::kFloat32)
               .div(255.0)
               .unsqueeze(0);  // (1, 3, H, W)
  if (image.height != size || image.width != size)
    t = torch::nn::functional::interpolate(t, torch::nn::functional::InterpolateFuncOptions()
                                                  .size(std::vector<int64_t>{size, size})
                                                  .mode(torch::kBilinear)
                                                  .align_corners(false));
  return clip_normalize(t).squeeze(0);  // (3, size, size)
}

LlavaConfig with_token_ids(LlavaConfig c, const Tokenizer& tok) {
  c.text.vocab_size = tok.num_ids();
  c.text.bos_token_id = tok.bos_id();
  c.text.eos_token_id = tok.eos_id();
  c.text.pad_token_id = tok.pad_id();
  c.image_token_index = tok.image_id();
  return c;
}

Vlm Vlm::load(const std::string& dir, torch::Device device) {
  auto model = load_llava(dir, device);
  TokenizerOptions topts;
  topts.image_id = int32_t(model->config().image_token_index);
  Tokenizer tok = Tokenizer::load(dir + "/tokenizer.model", topts);
  if (tok.num_ids() > model->config().text.vocab_size)
    fail("Vlm::load: ", dir, ": tokenizer has ", tok.num_ids(), " ids but the model's vocabulary is ",
         model->config().text.vocab_size);
  return Vlm(model, std::move(tok), chat_template_for(dir));
}

Vlm::Vlm(LlavaForConditionalGeneration model, Tokenizer tokenizer, ChatTemplate tmpl)
    : model_(std::move(model)), tok_(std::move(tokenizer)), tmpl_(std::move(tmpl)) {}

VlmInput Vlm::encode_prompts(const std::vector<std::string>& questions, const std::vector<const Image*>& images) const {
  return encode_prompts(questions, images, std::vector<std::string>(questions.size()));
}

VlmInput Vlm::encode_prompts(const std::vector<std::string>& questions, const std::vector<const Image*>& images,
                             const std::vector<std::string>& prefixes) const {
  if (questions.empty() || questions.size() != images.size() || prefixes.size() != questions.size())
    fail("Vlm::encode_prompts: ", questions.size(), " questions for ", images.size(), " images and ", prefixes.size(),
         " answer prefixes");
  const auto& cfg = model_->config();
  std::vector<std::vector<int32_t>> rows;
  std::vector<torch::Tensor> pixels;
  for (size_t i = 0; i < questions.size(); ++i) {
    std::vector<int32_t> ids;
    if (prefixes[i].empty()) {
      ids = tokenize_prompt(tok_, tmpl_, {{questions[i], ""}}, images[i] != nullptr);
    } else {  // the exchange's tokens up to the end of the answer, its EOS dropped
      ChatExample ex = tokenize_chat(tok_, tmpl_, {{questions[i], prefixes[i]}}, images[i] != nullptr);
      size_t end = ex.ids.size();
      while (end > ex.response_begin && ex.loss_mask[end - 1] == 0) --end;
      if (end > ex.response_begin && ex.ids[end - 1] == tok_.eos_id()) --end;
      ids.assign(ex.ids.begin(), ex.ids.begin() + long(end));
    }
    rows.push_back(expand_image_tokens(ids, tok_.image_id(), cfg.image_seq_length()));
    if (images[i]) pixels.push_back(image_to_pixel_values(*images[i], cfg.vision.image_size));
  }
  size_t T = 0;
  for (const auto& r : rows) T = std::max(T, r.size());
  auto ids = torch::full({int64_t(rows.size()), int64_t(T)}, cfg.text.pad_token_id, torch::kLong);
  auto mask = torch::zeros({int64_t(rows.size()), int64_t(T)}, torch::kLong);
  for (size_t b = 0; b < rows.size(); ++b) {
    const size_t off = T - rows[b].size();  // left padding
    for (size_t t = 0; t < rows[b].size(); ++t) {
      ids[b][off + t] = int64_t(rows[b][t]);
      mask[b][off + t] = 1;
    }
  }
  VlmInput in{ids, mask};
  if (!pixels.empty()) in.pixel_values = torch::stack(pixels);
  auto dev = cfg_device(model_);
  in.input_ids = in.input_ids.to(dev);
  in.attention_mask = in.attention_mask.to(dev);
  if (in.pixel_values.defined()) in.pixel_values = in.pixel_values.to(dev);
  return in;
}

VlmInput Vlm::encode_prompt(const std::string& question, const Image* image) const {
  return encode_prompts({question}, {image});
}

VlmInput Vlm::encode_exchange(const std::string& question, const Image* image, const std::string& response,
                              int64_t* response_begin) const {
  const auto& cfg = model_->config();
  auto ex = tokenize_chat(tok_, tmpl_, {{question, response}}, image != nullptr);
  ex = expand_image_tokens(ex, tok_.image_id(), cfg.image_seq_length());
  if (response_begin) *response_begin = int64_t(ex.response_begin);
  std::vector<int64_t> ids(ex.ids.begin(), ex.ids.end());
  auto dev = cfg_device(model_);
  VlmInput in{torch::tensor(ids, torch::kLong).unsqueeze(0).to(dev)};
  if (image) in.pixel_values = image_to_pixel_values(*image, cfg.vision.image_size).unsqueeze(0).to(dev);
  return in;
}

StopOptions Vlm::default_stop(int64_t max_new_tokens) const {
  StopOptions s;
  s.max_new_tokens = max_new_tokens;
  s.stop_tokens = {tok_.eos_id()};
  s.decode = [this](const std::vector<int64_t>& t) { return decode(t); };
  return s;
}

std::string Vlm::decode(const std::vector<int64_t>& tokens) const {
  std::vector<int32_t> ids;
  for (auto t : tokens)
    if (t != tok_.eos_id() && t != tok_.pad_id() && t >= 0 && t < tok_.num_ids()) ids.push_back(int32_t(t));
  return tok_.decode(ids);
}

std::vector<VlmAnswer> Vlm::answer(const std::vector<std::string>& questions, const std::vector<const Image*>& images,
                                   SampleOptions options, int64_t num_return_sequences) {
  if (num_return_sequences < 1) fail("Vlm::answer: num_return_sequences must be >= 1, got ", num_return_sequences);
  if (options.stop.stop_tokens.empty()) options.stop.stop_tokens = {tok_.eos_id()};
  if (!options.stop.decode) options.stop.decode = [this](const std::vector<int64_t>& t) { return decode(t); };
  auto in = encode_prompts(questions, images);
  auto state = prefill(model_, in, options.stop.max_new_tokens + 1);
  if (num_return_sequences > 1)  // row i -> rows i * n .. i * n + n - 1
    state = state.select(torch::arange(int64_t(questions.size()), torch::kLong).repeat_interleave(num_return_sequences));
  auto gens = generate(model_, state, options);
  std::vector<VlmAnswer> out;
  for (auto& g : gens) out.push_back({decode(g.tokens), std::move(g)});
  return out;
}

Generation Vlm::score(const std::string& question, const Image* image, const std::string& response) {
  torch::NoGradGuard ng;
  int64_t begin = 0;
  auto in = encode_exchange(question, image, response, &begin);
  auto s = score_tokens(model_, in, true);
  Generation g;
  const int64_t T = in.input_ids.size(1);
  auto ids = in.input_ids[0].cpu();
  auto lp = s.logprobs[0].cpu(), ent = s.entropies[0].cpu();
  for (int64_t t = begin; t < T; ++t) {
    g.tokens.push_back(ids[t].item<int64_t>());
    g.logprobs.push_back(lp[t].item<float>());
    g.entropies.push_back(ent[t].item<float>());
  }
  g.finish_reason = "scored";
  return g;
}

}  // namespace mmb
