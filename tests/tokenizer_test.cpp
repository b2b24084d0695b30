// Tokenizer: training on a synthetic corpus, round trips, special ids, <image>, determinism,
// the LLaVA appended-image-id convention, corpus readers and bad inputs.
#include "mmb/tokenizer.h"

#include <algorithm>
#include <unordered_map>

#include <gtest/gtest.h>

#include "mmb/atomic_file.h"
#include "test_util.h"

namespace mmb {
namespace {

using testing::TempDir;
using testing::expect_throw_with;

// A few thousand world-like sentences from a fixed LCG (no dependence on std distributions).
std::vector<std::string> synthetic_corpus(int n) {
  const char* colors[] = {"red", "blue", "green", "yellow", "purple", "gray"};
  const char* shapes[] = {"cube", "sphere", "cylinder", "cone", "torus"};
  const char* rels[] = {"left of", "right of", "behind", "in front of", "on top of"};
  uint64_t s = 42;
  auto next = [&](int m) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<int>((s >> 33) % static_cast<uint64_t>(m));
  };
  std::vector<std::string> lines;
  for (int i = 0; i < n; ++i) {
    std::string a = std::string(colors[next(6)]) + " " + shapes[next(5)];
    std::string b = std::string(colors[next(6)]) + " " + shapes[next(5)];
    switch (next(4)) {
      case 0: lines.push_back("There are " + std::to_string(next(12)) + " " + a + "s in the image."); break;
      case 1: lines.push_back("The " + a + " is " + rels[next(5)] + " the " + b + "."); break;
      case 2: lines.push_back("Is there a " + a + "? Yes, there is one " + a + "."); break;
      default: lines.push_back("What is the size of the " + a + "? It is " + std::to_string(next(9)) +
                               "." + std::to_string(next(10)) + " units wide!"); break;
    }
  }
  return lines;
}

TokenizerTrainOptions small_options(const std::string& prefix) {
  TokenizerTrainOptions o;
  o.lines = synthetic_corpus(3000);
  o.vocab_size = 400;
  o.output_prefix = prefix;
  return o;
}

// One trained tokenizer shared by the tests of this file (training takes well under a second).
class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    result_ = new TokenizerTrainResult(train_tokenizer(small_options(dir_->file("tok"))));
  }
  static void TearDownTestSuite() {
    delete result_;
    delete dir_;
  }
  static Tokenizer tok() { return Tokenizer::load(result_->model_path); }
  static TempDir* dir_;
  static TokenizerTrainResult* result_;
};
TempDir* TokenizerTest::dir_ = nullptr;
TokenizerTrainResult* TokenizerTest::result_ = nullptr;

TEST_F(TokenizerTest, TrainWritesModelAndVocab) {
  EXPECT_EQ(result_->num_sentences, 3000);
  EXPECT_GT(result_->num_bytes, 0);
  Tokenizer t = tok();
  EXPECT_EQ(t.vocab_size(), 400);
  std::string vocab = read_file(result_->vocab_path);
  EXPECT_EQ(std::count(vocab.begin(), vocab.end(), '\n'), 400);
  EXPECT_EQ(vocab.rfind("<unk>\t", 0), 0u);
}

TEST_F(TokenizerTest, SpecialIds) {
  Tokenizer t = tok();
  EXPECT_EQ(t.unk_id(), 0);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_EQ(t.pad_id(), 3);
  EXPECT_EQ(t.image_id(), 4);
  EXPECT_TRUE(t.has_pad_piece());
  EXPECT_TRUE(t.image_in_vocab());
  EXPECT_EQ(t.num_ids(), 400);
  EXPECT_EQ(t.id_to_piece(1), "<s>");
  EXPECT_EQ(t.id_to_piece(2), "</s>");
  EXPECT_EQ(t.id_to_piece(3), "<pad>");
  EXPECT_EQ(t.id_to_piece(4), "<image>");
  EXPECT_EQ(t.piece_to_id("</s>"), 2);
  EXPECT_EQ(t.piece_to_id("<image>"), 4);
  EXPECT_EQ(t.piece_to_id("no-such-piece"), -1);
  EXPECT_TRUE(t.is_special(4));
  EXPECT_FALSE(t.is_special(0));
}

TEST_F(TokenizerTest, RoundTrip) {
  Tokenizer t = tok();
  for (const std::string text :
       {"The red cube is left of the blue sphere.", "There are 11 gray toruses in the image.",
        "  two  spaces\tand a tab\nand a newline ", "Unseen chars: é, ü, 漢字, emoji 🙂!",
        "It is 3.5 units wide!", ""}) {
    auto ids = t.encode(text, /*add_bos=*/false);
    EXPECT_EQ(t.decode(ids), text) << text;
    for (int32_t id : ids) EXPECT_NE(id, t.unk_id()) << "byte fallback covers " << text;
  }
  auto with_bos = t.encode("red cube");
  ASSERT_FALSE(with_bos.empty());
  EXPECT_EQ(with_bos[0], t.bos_id());
  EXPECT_EQ(t.decode(with_bos), "red cube");
}

TEST_F(TokenizerTest, DigitsAreSplit) {
  Tokenizer t = tok();
  auto pieces = t.encode_pieces("1234");
  // "▁" then one piece per digit (split_digits, as Llama).
  std::vector<std::string> digits;
  for (const auto& p : pieces)
    if (p != "\xE2\x96\x81") digits.push_back(p);
  EXPECT_EQ(digits, (std::vector<std::string>{"1", "2", "3", "4"}));
}

TEST_F(TokenizerTest, ImageIsOneToken) {
  Tokenizer t = tok();
  auto ids = t.encode("USER: <image>\nWhat is <image> this?", /*add_bos=*/false);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), t.image_id()), 2);
  EXPECT_EQ(t.decode(ids), "USER: <image>\nWhat is <image> this?");
  // The image id sits exactly between the encodings of the surrounding chunks.
  auto a = t.encode("USER: ", false), b = t.encode("\nWhat is ", false), c = t.encode(" this?", false);
  std::vector<int32_t> expected = a;
  expected.push_back(t.image_id());
  expected.insert(expected.end(), b.begin(), b.end());
  expected.push_back(t.image_id());
  expected.insert(expected.end(), c.begin(), c.end());
  EXPECT_EQ(ids, expected);
  // Without special parsing "<image>" is plain text (and never the image id).
  auto plain = t.encode("<image>", false, /*parse_special=*/false);
  EXPECT_EQ(t.decode(plain), "<image>");
}

TEST_F(TokenizerTest, EosAndBosStringsAreSpecial) {
  Tokenizer t = tok();
  auto ids = t.encode("yes.</s>USER: no", false);
  auto it = std::find(ids.begin(), ids.end(), t.eos_id());
  ASSERT_NE(it, ids.end());
  EXPECT_EQ(t.decode(ids), "yes.USER: no");  // EOS skipped in decode
  EXPECT_EQ(t.encode("<s>", false), std::vector<int32_t>{t.bos_id()});
}

TEST_F(TokenizerTest, DecodeRejectsBadIds) {
  Tokenizer t = tok();
  expect_throw_with([&] { t.decode({5, 400}); }, "id 400 at position 1");
  expect_throw_with([&] { t.decode({-1}); }, "outside the vocabulary");
  expect_throw_with([&] { t.id_to_piece(1000); }, "Tokenizer::id_to_piece");
}

TEST_F(TokenizerTest, SerializedRoundTrip) {
  Tokenizer t = tok();
  Tokenizer u = Tokenizer::from_serialized(t.serialized(), "copy");
  EXPECT_EQ(u.encode("The green cone."), t.encode("The green cone."));
  EXPECT_EQ(t.serialized(), read_file(result_->model_path));
}

TEST_F(TokenizerTest, Deterministic) {
  TempDir d;
  auto a = train_tokenizer(small_options(d.file("a")));
  auto b = train_tokenizer(small_options(d.file("b")));
  EXPECT_EQ(read_file(a.model_path), read_file(b.model_path));
  EXPECT_EQ(read_file(a.model_path), read_file(result_->model_path));
}

TEST_F(TokenizerTest, ImageIdOptions) {
  // An explicit id equal to the piece is accepted; a different one is a clear error.
  EXPECT_EQ(Tokenizer::load(result_->model_path, {4}).image_id(), 4);
  expect_throw_with([&] { Tokenizer::load(result_->model_path, {400}); },
                    "image_id 400 given but the model has <image> at id 4");
}

// A Llama-like model: no pad and no <image> piece.
std::string llama_like_model(const TempDir& d) {
  TokenizerTrainOptions o = small_options(d.file("llama_like"));
  o.vocab_size = 300;
  o.pad_piece = false;
  o.image_piece = false;
  return train_tokenizer(o).model_path;
}

TEST(TokenizerNoImagePiece, LlavaConventionAppendsImageId) {
  TempDir d;
  const std::string model = llama_like_model(d);
  Tokenizer t = Tokenizer::load(model);
  EXPECT_EQ(t.vocab_size(), 300);
  EXPECT_FALSE(t.has_pad_piece());
  EXPECT_EQ(t.pad_id(), t.unk_id());
  EXPECT_FALSE(t.image_in_vocab());
  EXPECT_EQ(t.image_id(), 300);
  EXPECT_EQ(t.num_ids(), 301);
  EXPECT_EQ(t.id_to_piece(300), "<image>");
  auto ids = t.encode("a <image>\nb", false);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 300), 1);
  EXPECT_EQ(t.decode(ids), "a <image>\nb");
  // An explicit image id (LLaVA-1.5's config: image_token_index) is honoured.
  EXPECT_EQ(Tokenizer::load(model, {320}).image_id(), 320);
  expect_throw_with([&] { Tokenizer::load(model, {5}); }, "not <image>");
}

TEST(TokenizerBadInput, BadModelFiles) {
  TempDir d;
  expect_throw_with([&] { Tokenizer::load(d.file("missing.model")); }, "Tokenizer::load: ");
  write_file_atomic(d.file("empty.model"), "");
  expect_throw_with([&] { Tokenizer::load(d.file("empty.model")); },
                    "empty.model: not a SentencePiece model");
  write_file_atomic(d.file("text.model"), "this is not a protobuf at all\n");
  expect_throw_with([&] { Tokenizer::load(d.file("text.model")); },
                    "text.model: not a SentencePiece model");
}

TEST(TokenizerBadInput, BadTrainOptions) {
  TempDir d;
  TokenizerTrainOptions o = small_options(d.file("t"));
  o.vocab_size = 100;
  expect_throw_with([&] { train_tokenizer(o); }, "vocab_size 100 is too small");
  o = small_options(d.file("t"));
  o.model_type = "wordpiece";
  expect_throw_with([&] { train_tokenizer(o); }, "model_type must be 'bpe' or 'unigram'");
  o = small_options(d.file("t"));
  o.lines = {"", "  "};
  expect_throw_with([&] { train_tokenizer(o); }, "corpus is empty");
  o = small_options("");
  expect_throw_with([&] { train_tokenizer(o); }, "output_prefix is empty");
}

// Chat-template role markers as user-defined symbols: one piece each wherever they occur, ids right
// after "<image>", the text unchanged; the corpus never had to make them frequent.
TEST(TokenizerTrain, SymbolsAreOnePieceEach) {
  TempDir d;
  TokenizerTrainOptions o = small_options(d.file("t"));
  o.symbols = {"USER:", "ASSISTANT:"};
  Tokenizer t = Tokenizer::load(train_tokenizer(o).model_path);
  EXPECT_EQ(t.image_id(), 4);
  EXPECT_EQ(t.piece_to_id("USER:"), 5);
  EXPECT_EQ(t.piece_to_id("ASSISTANT:"), 6);
  const std::string text = "USER: <image>\nIs there a red cube? ASSISTANT: Yes. USER: And a star? ASSISTANT: No.";
  auto pieces = t.encode_pieces(text);
  EXPECT_EQ(std::count(pieces.begin(), pieces.end(), "USER:"), 2);
  EXPECT_EQ(std::count(pieces.begin(), pieces.end(), "ASSISTANT:"), 2);
  EXPECT_EQ(t.decode(t.encode(text, false)), text);
  // Without them the markers are spelt out piece by piece.
  Tokenizer plain = Tokenizer::load(train_tokenizer(small_options(d.file("p"))).model_path);
  EXPECT_EQ(plain.piece_to_id("ASSISTANT:"), -1);
  EXPECT_GT(plain.encode_pieces(text).size(), pieces.size() + 4);
  o.symbols = {"A B"};
  expect_throw_with([&] { train_tokenizer(o); }, "symbol 'A B' must be non-empty, without whitespace or ','");
}

TEST(TokenizerTrain, Unigram) {
  TempDir d;
  TokenizerTrainOptions o = small_options(d.file("u"));
  o.model_type = "unigram";
  o.vocab_size = 320;  // unigram cannot exceed the number of seed pieces (340 on this corpus)
  Tokenizer t = Tokenizer::load(train_tokenizer(o).model_path);
  EXPECT_EQ(t.image_id(), 4);
  EXPECT_EQ(t.decode(t.encode("The blue torus is behind the red cone.")),
            "The blue torus is behind the red cone.");
}

TEST(TokenizerCorpus, Formats) {
  TempDir d;
  write_file_atomic(d.file("plain.txt"), "first line\n\n  second line  \r\n");
  EXPECT_EQ(read_text_corpus(d.file("plain.txt"), ""),
            (std::vector<std::string>{"first line", "second line"}));
  write_file_atomic(d.file("llava.jsonl"),
                    R"({"id":"a","conversations":[{"from":"human","value":"<image>\nWhat color?"},)"
                    R"({"from":"gpt","value":"Red."}]})"
                    "\n");
  EXPECT_EQ(read_text_corpus(d.file("llava.jsonl"), ""),
            (std::vector<std::string>{"What color?", "Red."}));
  write_file_atomic(d.file("llava.json"),
                    R"([{"conversations":[{"from":"human","value":"Q?"},{"from":"gpt","value":"A."}]}])");
  EXPECT_EQ(read_text_corpus(d.file("llava.json"), ""), (std::vector<std::string>{"Q?", "A."}));
  write_file_atomic(d.file("f.jsonl"), "{\"q\":\"one\",\"text\":\"x\"}\n{\"q\":[\"two\",\"three\"]}\n");
  EXPECT_EQ(read_text_corpus(d.file("f.jsonl"), "q"),
            (std::vector<std::string>{"one", "two", "three"}));
  expect_throw_with([&] { read_text_corpus(d.file("f.jsonl"), "nope"); },
                    "f.jsonl:1: missing key 'nope'");
  write_file_atomic(d.file("bad.jsonl"), "{\"text\":\"ok\"}\n{\"other\":1}\n");
  expect_throw_with([&] { read_text_corpus(d.file("bad.jsonl"), ""); }, "bad.jsonl:2: expected");
}

TEST(TokenizerCorpus, TrainFromFiles) {
  TempDir d;
  std::string text;
  for (const auto& l : synthetic_corpus(2000)) text += l + "\n";
  write_file_atomic(d.file("corpus.txt"), text);
  TokenizerTrainOptions o;
  o.corpus_files = {d.file("corpus.txt")};
  o.vocab_size = 350;
  o.output_prefix = d.file("out/tok");
  auto r = train_tokenizer(o);
  EXPECT_EQ(r.num_sentences, 2000);
  EXPECT_EQ(Tokenizer::load(r.model_path).vocab_size(), 350);
}

}  // namespace
}  // namespace mmb
