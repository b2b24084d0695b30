// LLaVA-1.5's Vicuna v1 template (llava/conversation.py: conv_vicuna_v1, SeparatorStyle.TWO).
//
// Departure from LLaVA's training code (train.py, preprocess_v1): LLaVA tokenizes the whole
// conversation string, then finds the answer spans by re-tokenizing each round and subtracting
// lengths with fixed offsets (the "-2"), and masks the whole example when the lengths disagree
// ("tokenization mismatch"). Here the ids are built round by round — prompt chunk, answer chunk,
// EOS — so the mask is exact by construction and the prompt ids are the ones a generation sees.
// With a Llama-style SentencePiece model (whitespace starts a piece, never ends one) the ids are
// the same as tokenizing the whole string; tests/chat_template_test.cpp checks it.
#include "mmb/chat_template.h"

#include <cctype>
#include <filesystem>

#include "mmb/error.h"
#include "mmb/json.h"

namespace mmb {
namespace {

std::string strip(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

bool contains(const std::string& s, const char* needle) { return s.find(needle) != std::string::npos; }

// The question text of turn `i` as it appears in the conversation: the image goes first in the
// first question, as in LLaVA's Conversation.get_prompt().
std::string question_text(const std::vector<ChatTurn>& turns, size_t i, bool with_image,
                          const char* fn) {
  const std::string& q = turns[i].user;
  if (i == 0 && with_image) {
    std::string rest = q;
    for (size_t p; (p = rest.find(kImagePiece)) != std::string::npos;)
      rest.erase(p, std::char_traits<char>::length(kImagePiece));
    return std::string(kImagePiece) + "\n" + strip(rest);
  }
  if (contains(q, kImagePiece))
    fail(fn, ": turn ", i, ": the question contains ", kImagePiece,
         i == 0 ? " but with_image is false" : " (only the first question may hold the image)");
  return q;
}

void check_turns(const std::vector<ChatTurn>& turns, bool last_answer_empty, const char* fn) {
  if (turns.empty()) fail(fn, ": no turns");
  for (size_t i = 0; i < turns.size(); ++i) {
    const bool last = i + 1 == turns.size();
    if (last && last_answer_empty) {
      if (!turns[i].assistant.empty())
        fail(fn, ": the last turn must have an empty answer (it is to be generated)");
    } else if (turns[i].assistant.empty()) {
      fail(fn, ": turn ", i, " has an empty answer");
    }
  }
}

// The text before answer `i`: (system + sep for the first turn) "USER: " q sep "ASSISTANT:".
std::string round_prompt(const ChatTemplate& t, const std::vector<ChatTurn>& turns, size_t i,
                         bool with_image, const char* fn) {
  std::string s = i == 0 ? t.system + t.sep : "";
  return s + t.user_role + ": " + question_text(turns, i, with_image, fn) + t.sep +
         t.assistant_role + ":";
}

// Appends ids with their mask value.
void append(ChatExample& ex, const std::vector<int32_t>& ids, uint8_t mask) {
  ex.ids.insert(ex.ids.end(), ids.begin(), ids.end());
  ex.loss_mask.insert(ex.loss_mask.end(), ids.size(), mask);
}

// Builds the ids round by round. The last answer is omitted when it is empty (a prompt).
ChatExample build(const Tokenizer& tok, const ChatTemplate& t, const std::vector<ChatTurn>& turns,
                  bool with_image, const char* fn) {
  if (t.sep2 != kEosPiece)
    fail(fn, ": template '", t.name, "' has sep2 '", t.sep2, "'; token ids need sep2 = ", kEosPiece);
  ChatExample ex;
  append(ex, {tok.bos_id()}, 0);
  for (size_t i = 0; i < turns.size(); ++i) {
    append(ex, tok.encode(round_prompt(t, turns, i, with_image, fn), /*add_bos=*/false), 0);
    ex.response_begin = ex.ids.size();
    if (turns[i].assistant.empty()) break;  // the generation prompt
    // The answer as its own chunk: SentencePiece's dummy prefix is the space after "ASSISTANT:".
    append(ex, tok.encode(turns[i].assistant, false, /*parse_special=*/false), 1);
    append(ex, {tok.eos_id()}, 1);
  }
  return ex;
}

}  // namespace

ChatTemplate ChatTemplate::vicuna_v1() {
  ChatTemplate t;
  t.name = "vicuna_v1";
  t.system =
      "A chat between a curious user and an artificial intelligence assistant. "
      "The assistant gives helpful, detailed, and polite answers to the user's questions.";
  return t;
}

ChatTemplate ChatTemplate::llava_v1() {
  ChatTemplate t;
  t.name = "llava_v1";
  t.system =
      "A chat between a curious human and an artificial intelligence assistant. "
      "The assistant gives helpful, detailed, and polite answers to the human's questions.";
  return t;
}

ChatTemplate ChatTemplate::by_name(const std::string& name) {
  if (name == "vicuna_v1" || name == "v1") return vicuna_v1();
  if (name == "llava_v1") return llava_v1();
  fail("ChatTemplate::by_name: unknown template '", name, "' (known: vicuna_v1, v1, llava_v1)");
}

std::string render_chat(const ChatTemplate& t, const std::vector<ChatTurn>& turns,
                        bool with_image) {
  if (turns.empty()) fail("render_chat: no turns");
  std::string out = t.system + t.sep;
  for (size_t i = 0; i < turns.size(); ++i) {
    const bool last = i + 1 == turns.size();
    if (!last && turns[i].assistant.empty()) fail("render_chat: turn ", i, " has an empty answer");
    out += t.user_role + ": " + question_text(turns, i, with_image, "render_chat") + t.sep;
    if (turns[i].assistant.empty())
      out += t.assistant_role + ":";
    else
      out += t.assistant_role + ": " + turns[i].assistant + t.sep2;
  }
  return out;
}

std::string build_prompt(const ChatTemplate& t, const std::string& question, bool with_image) {
  return render_chat(t, {{question, ""}}, with_image);
}

std::vector<int32_t> tokenize_prompt(const Tokenizer& tok, const ChatTemplate& t,
                                     const std::vector<ChatTurn>& turns, bool with_image) {
  check_turns(turns, /*last_answer_empty=*/true, "tokenize_prompt");
  return build(tok, t, turns, with_image, "tokenize_prompt").ids;
}

ChatExample tokenize_chat(const Tokenizer& tok, const ChatTemplate& t,
                          const std::vector<ChatTurn>& turns, bool with_image) {
  check_turns(turns, /*last_answer_empty=*/false, "tokenize_chat");
  return build(tok, t, turns, with_image, "tokenize_chat");
}

std::vector<int32_t> expand_image_tokens(const std::vector<int32_t>& ids, int32_t image_id,
                                         int64_t num_image_tokens) {
  ChatExample ex;
  ex.ids = ids;
  ex.loss_mask.assign(ids.size(), 0);
  return expand_image_tokens(ex, image_id, num_image_tokens).ids;
}

ChatExample expand_image_tokens(const ChatExample& ex, int32_t image_id, int64_t num_image_tokens) {
  if (num_image_tokens < 1)
    fail("expand_image_tokens: num_image_tokens must be >= 1, found ", num_image_tokens);
  if (ex.loss_mask.size() != ex.ids.size())
    fail("expand_image_tokens: loss_mask has ", ex.loss_mask.size(), " entries for ",
         ex.ids.size(), " ids");
  ChatExample out;
  out.ids.reserve(ex.ids.size() + static_cast<size_t>(num_image_tokens));
  out.response_begin = ex.response_begin;
  for (size_t i = 0; i < ex.ids.size(); ++i) {
    if (ex.ids[i] != image_id) {
      out.ids.push_back(ex.ids[i]);
      out.loss_mask.push_back(ex.loss_mask[i]);
      continue;
    }
    out.ids.insert(out.ids.end(), static_cast<size_t>(num_image_tokens), image_id);
    out.loss_mask.insert(out.loss_mask.end(), static_cast<size_t>(num_image_tokens), 0);
    if (i < ex.response_begin) out.response_begin += static_cast<size_t>(num_image_tokens - 1);
  }
  return out;
}

ChatTemplate chat_template_for(const std::string& model_dir) {
  const std::string path = model_dir + "/chat_template.json";
  if (!std::filesystem::exists(path)) return ChatTemplate::vicuna_v1();
  Json j = read_json_file(path);
  ChatTemplate t;
  try {
    t = ChatTemplate::by_name(json_get<std::string>(j, "name", path));
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
  if (j.contains("system")) t.system = json_get<std::string>(j, "system", path);
  return t;
}

void write_chat_template(const std::string& model_dir, const ChatTemplate& tmpl) {
  write_json_file(model_dir + "/chat_template.json", {{"name", tmpl.name}, {"system", tmpl.system}});
}

}  // namespace mmb
