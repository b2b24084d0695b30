// Training data for the VLM and CLIP: LLaVA-format conversations (the world's llava.json or any
// such file with image paths), tokenized with the chat template, images decoded once and kept as
// uint8; batches are right-padded with the prompt, template and image positions out of the loss.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "mmb/chat_template.h"
#include "mmb/model_config.h"
#include "mmb/tokenizer.h"

namespace mmb {

// One conversation: alternating human / gpt turns, optional image.
struct ConversationSample {
  std::string id;
  std::string image;              // path relative to the image root; "" = text only
  std::vector<ChatTurn> turns;    // user / assistant pairs; "<image>" markers removed
  std::string task;               // optional "task" field
  std::string where;              // "file.json#index" for errors
};

// Reads a LLaVA JSON array or JSONL of {"id", "image", "conversations": [{"from","value"}...]}.
// Throws mmb::Error naming the file and the sample (index or line) on a malformed entry:
// missing conversations, roles not alternating human/gpt, an empty answer.
std::vector<ConversationSample> read_conversations(const std::string& path);

// The samples whose "task" is one of `tasks` (all of them when `tasks` is empty), in order. Throws
// mmb::Error naming `where` and the tasks the data has when none is left.
std::vector<ConversationSample> filter_tasks(std::vector<ConversationSample> samples,
                                             const std::vector<std::string>& tasks,
                                             const std::string& where);

// Every sample of a task in `repeat` ({"qa": 3}) `count` times, the copies appended in order after
// the originals (so an epoch sees that task `count` times as often). `spec` parses "qa=3,mc=2":
// a count is an integer >= 1 (use filter_tasks to drop a task). Throws mmb::Error naming `where`
// on a malformed spec or a task the data does not have (and the tasks it has).
std::map<std::string, int> parse_task_repeat(const std::string& spec, const std::string& where);
std::vector<ConversationSample> repeat_tasks(std::vector<ConversationSample> samples,
                                             const std::map<std::string, int>& repeat,
                                             const std::string& where);

struct SftDataOptions {
  int64_t max_length = 512;        // tokens after image expansion; longer samples are rejected
  bool error_on_too_long = false;  // true: a too-long sample is an error instead of a report
  bool only_last_answer = false;   // loss on the last answer only (else every answer)
  // How the SFT loss averages (SftBatch::loss_weight): "token" = over the batch's target tokens
  // (LLaVA, TRL); "turn" = every answer counts once, whatever its length (a one-token "Yes." as
  // much as a 60-token description: docs/results/base-model.md, "Loss per answer").
  std::string loss_norm = "token";
};
// Throws mmb::Error naming `where` unless `loss_norm` is "token" or "turn".
void check_loss_norm(const std::string& loss_norm, const std::string& where);

// What loading found; printed and written to the run directory.
struct DataReport {
  int64_t samples = 0, used = 0, rejected_too_long = 0, images = 0;
  std::vector<std::string> rejected_examples;  // up to 5 "where (N tokens)"
};

struct SftBatch {
  torch::Tensor input_ids;       // (B, T) int64, right-padded with pad id
  torch::Tensor attention_mask;  // (B, T) int64
  torch::Tensor loss_mask;       // (B, T) bool: position t is a target (answer token or EOS)
  torch::Tensor pixel_values;    // (n_images, 3, S, S) normalised; undefined if none
  int64_t target_tokens = 0;     // loss_mask.sum()
  torch::Tensor loss_weight;     // (B, T) float: weight of each target in the SFT loss (0 off the
                                 // mask; SftDataOptions::loss_norm); the loss is sum(w·nll)/sum(w)
};

class SftDataset {
 public:
  // Tokenizes every sample and decodes every image (relative to `image_root`). Missing or
  // corrupt images are errors naming the sample.
  SftDataset(const std::vector<ConversationSample>& samples, const std::string& image_root, const Tokenizer& tok,
             const ChatTemplate& tmpl, const LlavaConfig& cfg, const SftDataOptions& options);
  int64_t size() const { return int64_t(ids_.size()); }
  // Tokens of each sample (image tokens expanded): what a batch pads to its longest.
  std::vector<int64_t> lengths() const;
  SftBatch batch(const std::vector<int64_t>& indices) const;
  const DataReport& report() const { return report_; }

 private:
  std::vector<std::vector<int32_t>> ids_;
  std::vector<std::vector<uint8_t>> loss_mask_;
  std::vector<int64_t> image_of_;  // index into images_, -1 = none
  torch::Tensor images_;           // (n, 3, S, S) uint8
  int64_t pad_id_;
  bool per_turn_ = false;          // loss_norm == "turn"
  DataReport report_;
};

// Image-caption pairs for CLIP: {"image", "caption"} JSONL (the world's captions.jsonl).
struct ClipBatch {
  torch::Tensor pixel_values;    // (B, 3, S, S)
  torch::Tensor input_ids;       // (B + N, T) BOS caption EOS, right-padded: the B captions of
                                 // the images, then N hard negatives
  torch::Tensor attention_mask;  // (B + N, T)
  torch::Tensor negative_of;     // (N,) long: the image each hard negative was made from
                                 // (undefined or empty when there are none)
  torch::Tensor tags;            // (B, K) float 0/1: which tag words each image's caption names
                                 // (undefined without tag words)
};

// Hard-negative captions (NegCLIP, Yuksekgonul et al. 2023): a caption with one word swapped for
// another of its group ("a small red star" -> "a small red heart"). In a batch of varied scenes
// colour and position alone tell captions apart, so plain InfoNCE never has to see shapes; a
// negative that differs from the truth in one shape (or colour) word makes it.
struct HardNegativeOptions {
  int per_caption = 0;                            // negatives per image (0 = off)
  std::vector<std::vector<std::string>> groups;   // interchangeable words (whole words, lower case)
};
// The world's groups: its shape names and its colour names.
HardNegativeOptions world_hard_negatives(int per_caption);
// Up to `count` distinct captions, each `caption` with one whole word of a group replaced by a
// different word of the same group; deterministic in `seed`. Fewer (or none) when the caption
// has no such word.
std::vector<std::string> hard_negative_captions(const std::string& caption, const HardNegativeOptions& options,
                                                int count, uint64_t seed);
// Whether each of `words` occurs in `caption` as a whole word: the caption's tags, the labels of
// CLIP's auxiliary tag loss ("a small red star" names "red" and "star").
std::vector<uint8_t> caption_tags(const std::string& caption, const std::vector<std::string>& words);
// The world's tag words: its shapes, then its colours (the words of world_hard_negatives).
std::vector<std::string> world_tag_words();

class CaptionDataset {
 public:
  // Captions longer than max_tokens are cut (keeping EOS last), as CLIP's tokenizer truncates;
  // the count is reported. With tag_words, each batch carries its captions' tags (caption_tags,
  // of the whole caption before any cut).
  CaptionDataset(const std::string& jsonl, const std::string& image_root, const Tokenizer& tok, int64_t image_size,
                 int64_t max_tokens, HardNegativeOptions negatives = {}, std::vector<std::string> tag_words = {});
  int64_t size() const { return int64_t(ids_.size()); }
  ClipBatch batch(const std::vector<int64_t>& indices) const;
  int64_t truncated() const { return truncated_; }

 private:
  std::vector<std::vector<int32_t>> ids_;
  std::vector<std::vector<std::vector<int32_t>>> negatives_;  // per caption, its hard negatives
  torch::Tensor tags_;    // (n, K) uint8, or undefined without tag words
  torch::Tensor images_;  // (n, 3, S, S) uint8
  int64_t pad_id_, truncated_ = 0;
};

// Decodes and resizes an image file to (3, size, size) uint8.
torch::Tensor load_image_u8(const std::string& path, int64_t size);
// (n, 3, S, S) uint8 -> CLIP-normalised float.
torch::Tensor normalise_u8(const torch::Tensor& images);

}  // namespace mmb
