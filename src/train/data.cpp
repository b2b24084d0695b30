// Loading, tokenizing and batching training data (LLaVA conversations, CLIP captions).
#include "mmb/data.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "mmb/error.h"
#include "mmb/image.h"
#include "mmb/json.h"
#include "mmb/jsonl.h"
#include "mmb/model.h"
#include "mmb/world.h"

namespace mmb {
namespace {
// "'qa' 20000, 'mc' 19995": the tasks of the data, for errors.
std::string describe_tasks(const std::map<std::string, int64_t>& found) {
  std::string have;
  for (const auto& [task, n] : found)
    have += (have.empty() ? "" : ", ") + (task.empty() ? std::string("(no task)") : "'" + task + "'") +
            " " + std::to_string(n);
  return have.empty() ? "no samples" : have;
}

std::string strip_image_marker(std::string s) {
  for (const std::string m : {"<image>\n", "\n<image>", "<image>"}) {
    auto p = s.find(m);
    if (p != std::string::npos) s.erase(p, m.size());
  }
  return s;
}

ConversationSample parse_sample(const Json& j, const std::string& where) {
  if (!j.is_object()) fail("read_conversations: ", where, ": expected an object");
  ConversationSample s;
  s.where = where;
  s.id = j.contains("id") && j["id"].is_string() ? j["id"].get<std::string>() : where;
  if (j.contains("image") && !j["image"].is_null()) {
    if (!j["image"].is_string()) fail("read_conversations: ", where, ": 'image' must be a string path");
    s.image = j["image"].get<std::string>();
  }
  if (j.contains("task") && j["task"].is_string()) s.task = j["task"].get<std::string>();
  if (!j.contains("conversations") || !j["conversations"].is_array() || j["conversations"].empty())
    fail("read_conversations: ", where, ": missing or empty 'conversations'");
  const Json& conv = j["conversations"];
  if (conv.size() % 2) fail("read_conversations: ", where, ": odd number of turns (", conv.size(), ")");
  for (size_t i = 0; i < conv.size(); i += 2) {
    auto role = [&](size_t k) {
      if (!conv[k].is_object() || !conv[k].contains("from") || !conv[k].contains("value") ||
          !conv[k]["value"].is_string())
        fail("read_conversations: ", where, ": turn ", k, " needs 'from' and a string 'value'");
      return conv[k]["from"].get<std::string>();
    };
    std::string a = role(i), b = role(i + 1);
    if ((a != "human" && a != "user") || (b != "gpt" && b != "assistant"))
      fail("read_conversations: ", where, ": turns ", i, "/", i + 1, " are '", a, "'/'", b, "', expected human/gpt");
    ChatTurn t{strip_image_marker(conv[i]["value"].get<std::string>()), conv[i + 1]["value"].get<std::string>()};
    if (t.assistant.empty()) fail("read_conversations: ", where, ": empty answer in turn ", i + 1);
    s.turns.push_back(std::move(t));
  }
  return s;
}

}  // namespace

std::vector<ConversationSample> read_conversations(const std::string& path) {
  std::vector<ConversationSample> out;
  const bool jsonl = path.size() > 6 && path.compare(path.size() - 6, 6, ".jsonl") == 0;
  if (jsonl) {
    JsonlReader r(path);
    Json j;
    while (r.next(j)) out.push_back(parse_sample(j, r.where()));
  } else {
    Json all = read_json_file(path);
    if (!all.is_array()) fail("read_conversations: ", path, ": expected a JSON array of conversations");
    for (size_t i = 0; i < all.size(); ++i) out.push_back(parse_sample(all[i], path + "#" + std::to_string(i)));
  }
  return out;
}

torch::Tensor load_image_u8(const std::string& path, int64_t size) {
  Image img = read_image(path, 3);
  auto t = torch::from_blob(img.pixels.data(), {img.height, img.width, 3}, torch::kUInt8).permute({2, 0, 1});
  if (img.height != size || img.width != size) {
    auto f = t.unsqueeze(0).to(torch::kFloat32);
    f = torch::nn::functional::interpolate(f, torch::nn::functional::InterpolateFuncOptions()
                                                  .size(std::vector<int64_t>{size, size})
                                                  .mode(torch::kBilinear)
                                                  .align_corners(false));
    return f.squeeze(0).round().clamp(0, 255).to(torch::kUInt8);
  }
  return t.clone();
}

torch::Tensor normalise_u8(const torch::Tensor& images) {
  return clip_normalize(images.to(torch::kFloat32).div(255.0));
}

std::vector<ConversationSample> filter_tasks(std::vector<ConversationSample> samples,
                                             const std::vector<std::string>& tasks,
                                             const std::string& where) {
  if (tasks.empty()) return samples;
  const std::set<std::string> want(tasks.begin(), tasks.end());
  std::map<std::string, int64_t> found;  // task -> samples, for the error
  std::vector<ConversationSample> kept;
  for (auto& s : samples) {
    ++found[s.task];
    if (want.count(s.task)) kept.push_back(std::move(s));
  }
  if (kept.empty()) {
    std::string asked;
    for (const auto& t : tasks) asked += (asked.empty() ? "'" : ", '") + t + "'";
    fail(where, ": no sample has task ", asked, "; the data has ", describe_tasks(found));
  }
  return kept;
}

std::map<std::string, int> parse_task_repeat(const std::string& spec, const std::string& where) {
  std::map<std::string, int> out;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      fail(where, ": '", item, "' is not task=count (e.g. qa=3)");
    const std::string task = item.substr(0, eq), count = item.substr(eq + 1);
    size_t used = 0;
    int n = 0;
    try {
      n = std::stoi(count, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != count.size() || n < 1 || n > 1000)
      fail(where, ": the count of '", task, "' must be an integer in [1, 1000], got '", count, "'");
    if (out.count(task)) fail(where, ": task '", task, "' given twice");
    out[task] = n;
  }
  return out;
}

std::vector<ConversationSample> repeat_tasks(std::vector<ConversationSample> samples,
                                             const std::map<std::string, int>& repeat,
                                             const std::string& where) {
  if (repeat.empty()) return samples;
  std::map<std::string, int64_t> found;
  for (const auto& s : samples) ++found[s.task];
  for (const auto& [task, n] : repeat)
    if (!found.count(task))
      fail(where, ": no sample has task '", task, "'; the data has ", describe_tasks(found));
  const size_t originals = samples.size();
  for (const auto& [task, n] : repeat)
    for (int copy = 1; copy < n; ++copy)
      for (size_t i = 0; i < originals; ++i)
        if (samples[i].task == task) samples.push_back(samples[i]);
  return samples;
}

void check_loss_norm(const std::string& loss_norm, const std::string& where) {
  if (loss_norm != "token" && loss_norm != "turn")
    fail(where, ": loss normalisation must be 'token' or 'turn', got '", loss_norm, "'");
}

SftDataset::SftDataset(const std::vector<ConversationSample>& samples, const std::string& image_root,
                       const Tokenizer& tok, const ChatTemplate& tmpl, const LlavaConfig& cfg,
                       const SftDataOptions& options)
    : pad_id_(cfg.text.pad_token_id), per_turn_(options.loss_norm == "turn") {
  check_loss_norm(options.loss_norm, "SftDataset");
  std::map<std::string, int64_t> image_index;
  std::vector<torch::Tensor> images;
  report_.samples = int64_t(samples.size());
  for (const auto& s : samples) {
    ChatExample ex = tokenize_chat(tok, tmpl, s.turns, !s.image.empty());
    ex = expand_image_tokens(ex, tok.image_id(), cfg.image_seq_length());
    if (int64_t(ex.ids.size()) > options.max_length) {
      if (options.error_on_too_long)
        fail("SftDataset: ", s.where, " (", s.id, ") has ", ex.ids.size(), " tokens, over max_length ",
             options.max_length);
      ++report_.rejected_too_long;  // never truncated: a cut could fall inside the image span
      if (report_.rejected_examples.size() < 5)
        report_.rejected_examples.push_back(s.where + " (" + std::to_string(ex.ids.size()) + " tokens)");
      continue;
    }
    if (options.only_last_answer)
      for (size_t i = 0; i < ex.response_begin && i < ex.loss_mask.size(); ++i) ex.loss_mask[i] = 0;
    int64_t img = -1;
    if (!s.image.empty()) {
      auto it = image_index.find(s.image);
      if (it == image_index.end()) {
        const std::string path = image_root.empty() ? s.image : image_root + "/" + s.image;
        try {
          images.push_back(load_image_u8(path, cfg.vision.image_size));
        } catch (const Error& e) {
          fail("SftDataset: ", s.where, " (", s.id, "): ", e.what());
        }
        it = image_index.emplace(s.image, int64_t(images.size()) - 1).first;
      }
      img = it->second;
    }
    ids_.push_back(std::move(ex.ids));
    loss_mask_.push_back(std::move(ex.loss_mask));
    image_of_.push_back(img);
  }
  report_.used = int64_t(ids_.size());
  report_.images = int64_t(images.size());
  if (ids_.empty())
    fail("SftDataset: no usable samples (", report_.rejected_too_long, " over max_length ", options.max_length, ")");
  if (!images.empty()) images_ = torch::stack(images);
}

std::vector<int64_t> SftDataset::lengths() const {
  std::vector<int64_t> out;
  out.reserve(ids_.size());
  for (const auto& row : ids_) out.push_back(int64_t(row.size()));
  return out;
}

SftBatch SftDataset::batch(const std::vector<int64_t>& indices) const {
  const int64_t B = int64_t(indices.size());
  size_t T = 0;
  for (auto i : indices) T = std::max(T, ids_.at(i).size());
  auto ids = torch::full({B, int64_t(T)}, pad_id_, torch::kLong);
  auto mask = torch::zeros({B, int64_t(T)}, torch::kLong);
  auto loss = torch::zeros({B, int64_t(T)}, torch::kBool);
  auto ia = ids.accessor<int64_t, 2>();
  auto ma = mask.accessor<int64_t, 2>();
  auto weight = torch::zeros({B, int64_t(T)}, torch::kFloat32);
  auto la = loss.accessor<bool, 2>();
  auto wa = weight.accessor<float, 2>();
  std::vector<int64_t> imgs;
  for (int64_t b = 0; b < B; ++b) {
    const auto& row = ids_[indices[b]];
    const auto& lm = loss_mask_[indices[b]];
    for (size_t t = 0; t < row.size(); ++t) {
      ia[b][t] = row[t];
      ma[b][t] = 1;
      la[b][t] = lm[t] != 0;
    }
    // Per token every target weighs 1; per turn each run of consecutive targets (one answer and
    // its end token) weighs 1 in all.
    for (size_t t = 0; t < row.size(); ++t) {
      if (!lm[t]) continue;
      size_t e = t;
      while (e < row.size() && lm[e]) ++e;
      for (size_t k = t; k < e; ++k) wa[b][k] = per_turn_ ? 1.0f / float(e - t) : 1.0f;
      t = e - 1;
    }
    if (image_of_[indices[b]] >= 0) imgs.push_back(image_of_[indices[b]]);
  }
  SftBatch out{ids, mask, loss, {}, loss.sum().item<int64_t>(), weight};
  if (!imgs.empty()) out.pixel_values = normalise_u8(images_.index_select(0, torch::tensor(imgs, torch::kLong)));
  return out;
}

HardNegativeOptions world_hard_negatives(int per_caption) {
  HardNegativeOptions o;
  o.per_caption = per_caption;
  std::vector<std::string> shapes, colors;
  for (int i = 0; i < world::kNumShapes; ++i) shapes.push_back(world::shape_name(world::Shape(i)));
  for (int i = 0; i < world::kNumColors; ++i) colors.push_back(world::color_name(world::Color(i)));
  o.groups = {shapes, colors};
  return o;
}

namespace {

bool is_alpha(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }

// Start positions of `word` in `text` as a whole word (no letter on either side).
std::vector<size_t> whole_word_positions(const std::string& text, const std::string& word) {
  std::vector<size_t> out;
  if (word.empty()) return out;
  for (size_t pos = text.find(word); pos != std::string::npos; pos = text.find(word, pos + 1)) {
    const bool left = pos == 0 || !is_alpha(text[pos - 1]);
    const bool right = pos + word.size() >= text.size() || !is_alpha(text[pos + word.size()]);
    if (left && right) out.push_back(pos);
  }
  return out;
}

}  // namespace

std::vector<uint8_t> caption_tags(const std::string& caption, const std::vector<std::string>& words) {
  std::vector<uint8_t> out;
  out.reserve(words.size());
  for (const auto& w : words) out.push_back(whole_word_positions(caption, w).empty() ? 0 : 1);
  return out;
}

std::vector<std::string> world_tag_words() {
  std::vector<std::string> out;
  for (const auto& g : world_hard_negatives(0).groups) out.insert(out.end(), g.begin(), g.end());
  return out;
}

std::vector<std::string> hard_negative_captions(const std::string& caption, const HardNegativeOptions& options,
                                                int count, uint64_t seed) {
  // Whole-word occurrences of group words: (position, length, group, word index).
  struct Hit {
    size_t pos, len;
    size_t group, word;
  };
  std::vector<Hit> hits;
  for (size_t g = 0; g < options.groups.size(); ++g)
    for (size_t w = 0; w < options.groups[g].size(); ++w)
      for (size_t pos : whole_word_positions(caption, options.groups[g][w]))
        hits.push_back({pos, options.groups[g][w].size(), g, w});
  std::vector<std::string> out;
  if (hits.empty()) return out;
  std::mt19937_64 rng(seed);
  for (int attempt = 0; attempt < 8 * count && int(out.size()) < count; ++attempt) {
    const Hit& h = hits[rng() % hits.size()];
    const auto& group = options.groups[h.group];
    if (group.size() < 2) continue;
    size_t other = rng() % (group.size() - 1);
    if (other >= h.word) ++other;  // a different word of the group
    std::string neg = caption.substr(0, h.pos) + group[other] + caption.substr(h.pos + h.len);
    if (neg != caption && std::find(out.begin(), out.end(), neg) == out.end()) out.push_back(std::move(neg));
  }
  return out;
}

CaptionDataset::CaptionDataset(const std::string& jsonl, const std::string& image_root, const Tokenizer& tok,
                               int64_t image_size, int64_t max_tokens, HardNegativeOptions negatives,
                               std::vector<std::string> tag_words)
    : pad_id_(tok.pad_id()) {
  if (negatives.per_caption < 0)
    fail("CaptionDataset: hard negatives per caption must be >= 0, got ", negatives.per_caption);
  // BOS caption EOS, cut to max_tokens keeping EOS; the images' own captions count as truncated.
  auto encode = [&](const std::string& caption, bool count) {
    auto ids = tok.encode(caption, /*add_bos=*/true);
    ids.push_back(tok.eos_id());
    if (int64_t(ids.size()) > max_tokens) {
      ids.resize(size_t(max_tokens));
      ids.back() = tok.eos_id();
      truncated_ += count;
    }
    return ids;
  };
  JsonlReader r(jsonl);
  Json j;
  std::vector<torch::Tensor> images;
  std::vector<uint8_t> tags;
  while (r.next(j)) {
    const std::string cap = json_get<std::string>(j, "caption", r.where());
    const std::string img = json_get<std::string>(j, "image", r.where());
    ids_.push_back(encode(cap, true));
    if (!tag_words.empty()) {
      auto t = caption_tags(cap, tag_words);
      tags.insert(tags.end(), t.begin(), t.end());
    }
    // Negatives are made once, from the caption's index: the same ones whenever it is drawn, so
    // a resumed run sees exactly the batches of an uninterrupted one.
    std::vector<std::vector<int32_t>> negs;
    if (negatives.per_caption > 0)
      for (const auto& n :
           hard_negative_captions(cap, negatives, negatives.per_caption, 0x9E3779B97F4A7C15ULL ^ ids_.size()))
        negs.push_back(encode(n, false));
    negatives_.push_back(std::move(negs));
    try {
      images.push_back(load_image_u8(image_root + "/" + img, image_size));
    } catch (const Error& e) {
      fail("CaptionDataset: ", r.where(), ": ", e.what());
    }
  }
  if (ids_.empty()) fail("CaptionDataset: ", jsonl, " has no captions");
  images_ = torch::stack(images);
  if (!tag_words.empty())
    tags_ = torch::from_blob(tags.data(), {size(), int64_t(tag_words.size())}, torch::kUInt8).clone();
}

ClipBatch CaptionDataset::batch(const std::vector<int64_t>& indices) const {
  const int64_t B = int64_t(indices.size());
  std::vector<const std::vector<int32_t>*> rows;
  std::vector<int64_t> negative_of;
  for (auto i : indices) rows.push_back(&ids_.at(size_t(i)));
  for (int64_t b = 0; b < B; ++b)
    for (const auto& n : negatives_[size_t(indices[b])]) {
      rows.push_back(&n);
      negative_of.push_back(b);
    }
  size_t T = 0;
  for (auto* r : rows) T = std::max(T, r->size());
  const int64_t R = int64_t(rows.size());
  auto ids = torch::full({R, int64_t(T)}, pad_id_, torch::kLong);
  auto mask = torch::zeros({R, int64_t(T)}, torch::kLong);
  auto ia = ids.accessor<int64_t, 2>();
  auto ma = mask.accessor<int64_t, 2>();
  for (int64_t b = 0; b < R; ++b)
    for (size_t t = 0; t < rows[size_t(b)]->size(); ++t) {
      ia[b][int64_t(t)] = int64_t((*rows[size_t(b)])[t]);
      ma[b][int64_t(t)] = 1;
    }
  auto index = torch::tensor(indices, torch::kLong);
  ClipBatch out{normalise_u8(images_.index_select(0, index)), ids, mask, torch::tensor(negative_of, torch::kLong), {}};
  if (tags_.defined()) out.tags = tags_.index_select(0, index).to(torch::kFloat32);
  return out;
}

}  // namespace mmb
