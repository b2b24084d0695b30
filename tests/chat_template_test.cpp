// Chat template: exact LLaVA-1.5 prompt strings, token ids with loss masks, image expansion.
#include "mmb/chat_template.h"

#include <algorithm>

#include <gtest/gtest.h>

#include "test_util.h"

namespace mmb {
namespace {

using testing::TempDir;
using testing::expect_throw_with;

const std::string kVicunaSystem =
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions.";

class ChatTemplateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    TokenizerTrainOptions o;
    const char* words[] = {"What color is the cube?", "The cube is red.", "How many spheres?",
                           "There are 3 spheres.", "Is it big? No, it is small.", kVicunaSystem.c_str(),
                           "USER: ASSISTANT:"};
    for (int i = 0; i < 300; ++i) o.lines.push_back(words[i % 7] + std::string(" ") + std::to_string(i));
    o.vocab_size = 400;
    o.output_prefix = dir_->file("tok");
    tok_ = new Tokenizer(Tokenizer::load(train_tokenizer(o).model_path));
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete dir_;
  }
  static TempDir* dir_;
  static Tokenizer* tok_;
};
TempDir* ChatTemplateTest::dir_ = nullptr;
Tokenizer* ChatTemplateTest::tok_ = nullptr;

TEST_F(ChatTemplateTest, OneTurnPromptString) {
  EXPECT_EQ(build_prompt(ChatTemplate::vicuna_v1(), "What color is the cube?", true),
            kVicunaSystem + " USER: <image>\nWhat color is the cube? ASSISTANT:");
  EXPECT_EQ(build_prompt(ChatTemplate::vicuna_v1(), "What color is the cube?", false),
            kVicunaSystem + " USER: What color is the cube? ASSISTANT:");
  // An <image> placed elsewhere moves to the front, the rest stripped (as LLaVA does).
  EXPECT_EQ(build_prompt(ChatTemplate::vicuna_v1(), "What is this?\n<image>", true),
            kVicunaSystem + " USER: <image>\nWhat is this? ASSISTANT:");
}

TEST_F(ChatTemplateTest, TwoTurnStrings) {
  std::vector<ChatTurn> turns = {{"What color is the cube?", "The cube is red."},
                                 {"How many spheres?", "There are 3 spheres."}};
  EXPECT_EQ(render_chat(ChatTemplate::vicuna_v1(), turns, true),
            kVicunaSystem +
                " USER: <image>\nWhat color is the cube? ASSISTANT: The cube is red.</s>"
                "USER: How many spheres? ASSISTANT: There are 3 spheres.</s>");
  turns[1].assistant.clear();
  EXPECT_EQ(render_chat(ChatTemplate::vicuna_v1(), turns, true),
            kVicunaSystem +
                " USER: <image>\nWhat color is the cube? ASSISTANT: The cube is red.</s>"
                "USER: How many spheres? ASSISTANT:");
}

TEST_F(ChatTemplateTest, LlavaV1SystemAndByName) {
  EXPECT_EQ(ChatTemplate::llava_v1().system,
            "A chat between a curious human and an artificial intelligence assistant. The "
            "assistant gives helpful, detailed, and polite answers to the human's questions.");
  EXPECT_EQ(ChatTemplate::by_name("v1").system, kVicunaSystem);
  EXPECT_EQ(ChatTemplate::by_name("llava_v1").name, "llava_v1");
  expect_throw_with([] { ChatTemplate::by_name("chatml"); }, "unknown template 'chatml'");
}

TEST_F(ChatTemplateTest, LossMaskCoversExactlyTheAnswers) {
  const Tokenizer& tok = *tok_;
  std::vector<ChatTurn> turns = {{"What color is the cube?", "The cube is red."},
                                 {"How many spheres?", "There are 3 spheres."}};
  ChatExample ex = tokenize_chat(tok, ChatTemplate::vicuna_v1(), turns, true);
  ASSERT_EQ(ex.ids.size(), ex.loss_mask.size());
  EXPECT_EQ(ex.ids[0], tok.bos_id());
  EXPECT_EQ(ex.loss_mask[0], 0);
  // The masked-in runs are exactly: answer 1 + EOS, answer 2 + EOS.
  std::vector<std::vector<int32_t>> runs;
  for (size_t i = 0; i < ex.ids.size(); ++i) {
    if (!ex.loss_mask[i]) continue;
    if (i == 0 || !ex.loss_mask[i - 1]) runs.emplace_back();
    runs.back().push_back(ex.ids[i]);
  }
  ASSERT_EQ(runs.size(), 2u);
  for (size_t r = 0; r < 2; ++r) {
    EXPECT_EQ(runs[r].back(), tok.eos_id());
    EXPECT_EQ(tok.decode(runs[r]), turns[r].assistant);
  }
  // Image position masked out, and the whole sequence decodes to the rendered text (minus EOS).
  auto img = std::find(ex.ids.begin(), ex.ids.end(), tok.image_id());
  ASSERT_NE(img, ex.ids.end());
  EXPECT_EQ(ex.loss_mask[img - ex.ids.begin()], 0);
  // LLaVA compatibility: the same ids as tokenizing the whole conversation string.
  EXPECT_EQ(ex.ids, tok.encode(render_chat(ChatTemplate::vicuna_v1(), turns, true)));
  // response_begin: the last answer's first token.
  EXPECT_EQ(tok.decode({ex.ids.begin() + static_cast<long>(ex.response_begin), ex.ids.end()}),
            "There are 3 spheres.");
}

TEST_F(ChatTemplateTest, PromptIsPrefixOfTrainingIds) {
  const Tokenizer& tok = *tok_;
  const auto t = ChatTemplate::vicuna_v1();
  std::vector<ChatTurn> full = {{"What color is the cube?", "The cube is red."},
                                {"Is it big?", "No, it is small."}};
  ChatExample ex = tokenize_chat(tok, t, full, true);
  std::vector<ChatTurn> prompt_turns = full;
  prompt_turns[1].assistant.clear();
  auto prompt = tokenize_prompt(tok, t, prompt_turns, true);
  ASSERT_EQ(prompt.size(), ex.response_begin);
  EXPECT_TRUE(std::equal(prompt.begin(), prompt.end(), ex.ids.begin()));
  EXPECT_EQ(prompt, tok.encode(render_chat(t, prompt_turns, true)));
  // One turn: the prompt tokens are those of the prompt string.
  EXPECT_EQ(tokenize_prompt(tok, t, {{"How many spheres?", ""}}, false),
            tok.encode(build_prompt(t, "How many spheres?", false)));
}

TEST_F(ChatTemplateTest, Errors) {
  const Tokenizer& tok = *tok_;
  const auto t = ChatTemplate::vicuna_v1();
  expect_throw_with([&] { render_chat(t, {}, true); }, "render_chat: no turns");
  expect_throw_with([&] { tokenize_chat(tok, t, {{"q", ""}}, true); },
                    "tokenize_chat: turn 0 has an empty answer");
  expect_throw_with([&] { tokenize_prompt(tok, t, {{"q", "a"}}, true); },
                    "tokenize_prompt: the last turn must have an empty answer");
  expect_throw_with([&] { render_chat(t, {{"q", ""}, {"q2", ""}}, true); },
                    "render_chat: turn 0 has an empty answer");
  expect_throw_with([&] { build_prompt(t, "<image>\nq", false); }, "but with_image is false");
  expect_throw_with([&] { render_chat(t, {{"q", "a"}, {"<image> q2", ""}}, true); },
                    "only the first question");
}

TEST_F(ChatTemplateTest, ExpandImageTokens) {
  const Tokenizer& tok = *tok_;
  ChatExample ex = tokenize_chat(tok, ChatTemplate::vicuna_v1(), {{"What color?", "Red."}}, true);
  ChatExample big = expand_image_tokens(ex, tok.image_id(), 64);
  EXPECT_EQ(big.ids.size(), ex.ids.size() + 63);
  EXPECT_EQ(big.loss_mask.size(), big.ids.size());
  EXPECT_EQ(std::count(big.ids.begin(), big.ids.end(), tok.image_id()), 64);
  EXPECT_EQ(big.response_begin, ex.response_begin + 63);
  EXPECT_EQ(std::count(big.loss_mask.begin(), big.loss_mask.end(), 1),
            std::count(ex.loss_mask.begin(), ex.loss_mask.end(), 1));
  // The 64 image positions are contiguous and masked.
  auto first = std::find(big.ids.begin(), big.ids.end(), tok.image_id()) - big.ids.begin();
  for (long i = first; i < first + 64; ++i) {
    EXPECT_EQ(big.ids[i], tok.image_id());
    EXPECT_EQ(big.loss_mask[i], 0);
  }
  EXPECT_EQ(expand_image_tokens(std::vector<int32_t>{1, 7, 4, 9}, 7, 3),
            (std::vector<int32_t>{1, 7, 7, 7, 4, 9}));
  EXPECT_EQ(expand_image_tokens(std::vector<int32_t>{1, 2}, 7, 3), (std::vector<int32_t>{1, 2}));
  expect_throw_with([&] { expand_image_tokens(ex, tok.image_id(), 0); }, "must be >= 1");
}

}  // namespace
}  // namespace mmb
