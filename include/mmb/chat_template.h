// The conversation template of LLaVA-1.5 (Vicuna v1, LLaVA's SeparatorStyle.TWO), as text and as
// token ids with a loss mask. The world model uses the same template, so one prompt path serves
// a real LLaVA-1.5 checkpoint and a model trained here.
//
// Text of a conversation with turns (q1, a1), (q2, a2) and an image:
//   "{system} USER: <image>\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>"
// i.e. system + sep, then per turn "USER: " + q + sep + "ASSISTANT: " + a + sep2, with sep " "
// and sep2 "</s>". A prompt for generation ends with "ASSISTANT:" (no space: the answer's first
// piece carries it, e.g. "▁The"). The image goes first in the first question ("<image>\n" + q;
// an "<image>" already in q is moved there, as LLaVA does).
//
// Tokens (see tokenizer.h): BOS, then the text with "</s>" and "<image>" as their ids. Each
// answer is encoded as a chunk of its own after its "ASSISTANT:" prompt — exactly the tokens
// a generation from that prompt produces — so train and inference see the same prompt tokens.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mmb/tokenizer.h"

namespace mmb {

struct ChatTemplate {
  std::string name;
  std::string system;
  std::string user_role = "USER";
  std::string assistant_role = "ASSISTANT";
  std::string sep = " ";      // after the system message and after each question
  std::string sep2 = "</s>";  // after each answer (the EOS token)

  // LLaVA's conv_vicuna_v1 ("v1" / "vicuna_v1"): what LLaVA-1.5 was fine-tuned with
  // (--version v1) and is evaluated with (--conv-mode vicuna_v1). System message:
  // "A chat between a curious user and an artificial intelligence assistant. The assistant gives
  // helpful, detailed, and polite answers to the user's questions." The default.
  static ChatTemplate vicuna_v1();
  // LLaVA's conv_llava_v1 ("llava_v1"): the same format with "human" for "user" in the system
  // message.
  static ChatTemplate llava_v1();
  // By name: "vicuna_v1" (also "v1") or "llava_v1". Throws mmb::Error on another name.
  static ChatTemplate by_name(const std::string& name);
};

// One exchange. An empty `assistant` in the last turn means "to be generated".
struct ChatTurn {
  std::string user;
  std::string assistant;
};

// The conversation as text. If the last turn's answer is empty the text ends with
// "ASSISTANT:" (a generation prompt); otherwise every answer is followed by sep2.
// `with_image` puts "<image>\n" before the first question. Throws on an empty `turns` or an
// empty answer before the last turn.
std::string render_chat(const ChatTemplate& tmpl, const std::vector<ChatTurn>& turns,
                        bool with_image);

// Shorthand for a single-question generation prompt:
// "{system} USER: <image>\n{question} ASSISTANT:".
std::string build_prompt(const ChatTemplate& tmpl, const std::string& question, bool with_image);

// A tokenized training example. loss_mask[i] = 1 where ids[i] is an assistant answer token or
// the EOS closing an answer; 0 on BOS, system, questions, role names and image tokens.
struct ChatExample {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss_mask;  // same length as ids
  // Index in ids of the first token of the last answer (= length of its prompt). For
  // scoring: ids[0, response_begin) is the prompt, the rest the response.
  size_t response_begin = 0;
};

// Token ids of the generation prompt of render_chat(tmpl, turns, with_image) (BOS first). The
// last turn's answer must be empty.
std::vector<int32_t> tokenize_prompt(const Tokenizer& tok, const ChatTemplate& tmpl,
                                     const std::vector<ChatTurn>& turns, bool with_image);

// Token ids and loss mask of a complete conversation (every answer non-empty). The ids equal
// tokenize_prompt() of the conversation up to each answer, followed by that answer's tokens
// and EOS. Throws mmb::Error "tokenize_chat: ..." on an empty answer.
ChatExample tokenize_chat(const Tokenizer& tok, const ChatTemplate& tmpl,
                          const std::vector<ChatTurn>& turns, bool with_image);

// Replaces each image id in `ids` by `num_image_tokens` copies of it (the model writes one image
// feature at each). Ids without an image id are returned unchanged.
std::vector<int32_t> expand_image_tokens(const std::vector<int32_t>& ids, int32_t image_id,
                                         int64_t num_image_tokens);
// The same for a training example: the mask is 0 on every image position and response_begin
// moves with the expansion.
ChatExample expand_image_tokens(const ChatExample& example, int32_t image_id,
                                int64_t num_image_tokens);

// The chat template of a model directory: DIR/chat_template.json ({"name": "vicuna_v1",
// "system": "..."}; "system" optional) or, when absent, Vicuna v1 as LLaVA-1.5. The world
// models use the Vicuna v1 format with a short system message (fewer tokens per sample).
// Throws mmb::Error naming the file on a malformed or unknown template.
ChatTemplate chat_template_for(const std::string& model_dir);
// Writes DIR/chat_template.json (atomically) for chat_template_for to read back.
void write_chat_template(const std::string& model_dir, const ChatTemplate& tmpl);

}  // namespace mmb
