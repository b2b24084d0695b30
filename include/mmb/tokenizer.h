// Tokenizer: a SentencePiece model plus the special tokens a LLaVA-style VLM needs.
//
// Any Llama / LLaVA-1.5 `tokenizer.model` loads as is, and `train_tokenizer` writes one of the
// same kind (BPE, byte fallback, identity normalisation, split digits) from a text corpus.
//
// Special tokens (ids are those of the loaded model):
//   BOS "<s>", EOS "</s>", UNK "<unk>"  required; load fails if the model lacks BOS or EOS.
//   pad "<pad>"   the piece if the model has one, else unk_id() — what LLaVA's training code
//                 does for Vicuna v1 (pad = unk). Padded positions are always masked anyway.
//   "<image>"     the piece if the model has one (every tokenizer train_tokenizer writes does),
//                 else vocab_size(): LLaVA-1.5 appends it as an added token (image_token_index
//                 32000 after Llama's 32000 pieces). TokenizerOptions::image_id overrides both.
//
// Encoding: the text is cut at the special strings "<image>", "<s>", "</s>" (when parse_special
// is set; as Hugging Face's Llama tokenizer does with its special tokens), each chunk between
// them is encoded by SentencePiece on its own (with SentencePiece's dummy-prefix space, like the
// "legacy" Llama tokenizer LLaVA-1.5 was trained with), and the special ids are put in between.
// Decoding is the inverse: decode(encode(t, false)) == t for well-formed UTF-8 text without
// special strings (SentencePiece reads ill-formed bytes as U+FFFD; tests/fuzz checks the rest).
//
// Thread safety: all const methods may be called concurrently.
//
// Linking: libsentencepiece carries its own copy of protobuf 3.14, and libtorch loads
// libprotobuf 3.21; the two cannot share one symbol namespace (the process crashes before main,
// see google/sentencepiece#505, Lightning-AI/pytorch-lightning#11663). So mmb never links
// libsentencepiece: it dlopen()s libsentencepiece.so.0 (and libsentencepiece_train.so.0 to train)
// on first use with RTLD_LOCAL | RTLD_DEEPBIND, which binds SentencePiece to its own protobuf,
// and calls it through symbols looked up by name (src/text/tokenizer.cpp).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mmb {

namespace detail {
class SpProcessor;  // a SentencePieceProcessor in the dlopen()ed library
}

// The text of the special tokens.
inline constexpr const char* kBosPiece = "<s>";
inline constexpr const char* kEosPiece = "</s>";
inline constexpr const char* kUnkPiece = "<unk>";
inline constexpr const char* kPadPiece = "<pad>";
inline constexpr const char* kImagePiece = "<image>";

struct TokenizerOptions {
  // Id of the image token. -1: the "<image>" piece if the model has one, else vocab_size().
  // A value < vocab_size() must be the id of the "<image>" piece.
  int32_t image_id = -1;
};

class Tokenizer {
 public:
  // Loads a SentencePiece model file. Throws mmb::Error
  // "Tokenizer::load: <path>: not a SentencePiece model (...)" on a bad file.
  static Tokenizer load(const std::string& path, const TokenizerOptions& options = {});
  // The same from the bytes of a model file; `name` is used in error messages.
  static Tokenizer from_serialized(const std::string& bytes, const std::string& name,
                                   const TokenizerOptions& options = {});

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Token ids of `text`, with BOS first when `add_bos`. With `parse_special`, "<image>", "<s>"
  // and "</s>" in the text become image_id(), bos_id() and eos_id(); otherwise they are text.
  std::vector<int32_t> encode(std::string_view text, bool add_bos = true,
                              bool parse_special = true) const;
  // The pieces of `text` (no BOS), e.g. {"▁The", "▁cube", "."}; special strings as themselves.
  std::vector<std::string> encode_pieces(std::string_view text) const;

  // Text of `ids`. BOS, EOS and pad are skipped; image_id() is written "<image>". Each run of
  // ids between special ids is decoded on its own (its leading dummy-prefix space dropped),
  // mirroring encode(). Throws mmb::Error on an id outside [0, vocab_size()) other than image_id().
  std::string decode(const std::vector<int32_t>& ids) const;

  // The piece of one id ("▁cube", "<0x0A>", "</s>"; "<image>" for image_id()). Throws on a bad id.
  std::string id_to_piece(int32_t id) const;
  // SentencePiece's score of a piece (BPE: merge priority; unigram: log-probability).
  float piece_score(int32_t id) const;
  // The id of a piece, or -1 if the model has no such piece ("<image>" gives image_id()).
  int32_t piece_to_id(std::string_view piece) const;

  // Number of SentencePiece pieces (32000 for Llama).
  int32_t vocab_size() const { return vocab_size_; }
  // Smallest embedding table that covers every id this tokenizer emits:
  // max(vocab_size(), image_id() + 1). 32001 for Llama with the LLaVA convention.
  int32_t num_ids() const { return image_id_ >= vocab_size_ ? image_id_ + 1 : vocab_size_; }

  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  int32_t pad_id() const { return pad_id_; }
  int32_t unk_id() const { return unk_id_; }
  int32_t image_id() const { return image_id_; }
  // True if the model has a "<pad>" piece (else pad_id() == unk_id()).
  bool has_pad_piece() const { return has_pad_piece_; }
  // True if "<image>" is a piece of the model (else it is the appended id vocab_size()).
  bool image_in_vocab() const { return image_id_ < vocab_size_; }
  // True for BOS, EOS, pad and image ids (the ids decode() does not render as text pieces).
  bool is_special(int32_t id) const;

  // The serialized SentencePiece model (the bytes of a tokenizer.model file).
  std::string serialized() const;
  // Where the model came from (path or name given at load).
  const std::string& source() const { return source_; }

 private:
  Tokenizer();
  void encode_chunk(std::string_view chunk, std::vector<int32_t>& out) const;
  void decode_run(const std::vector<int>& run, std::string& out) const;

  std::unique_ptr<detail::SpProcessor> sp_;
  std::string source_;
  int32_t vocab_size_ = 0;
  int32_t bos_id_ = -1, eos_id_ = -1, pad_id_ = -1, unk_id_ = -1, image_id_ = -1;
  bool has_pad_piece_ = false;
};

// ---- training ---------------------------------------------------------------------------

struct TokenizerTrainOptions {
  std::vector<std::string> corpus_files;  // read with read_text_corpus(file, json_field)
  std::vector<std::string> lines;         // extra training sentences, used as given
  std::string json_field;                 // JSONL/JSON key to read; "" = auto (see below)
  int32_t vocab_size = 8000;              // total pieces incl. specials and 256 byte pieces
  std::string model_type = "bpe";         // "bpe" (as Llama) or "unigram"
  bool byte_fallback = true;              // unknown characters as <0xNN> pieces (as Llama)
  double character_coverage = 0.99995;    // share of characters kept as pieces (as Llama)
  bool split_digits = true;               // every digit its own piece (as Llama)
  int32_t max_sentence_length = 4192;     // bytes; longer sentences are skipped (as Llama)
  std::string output_prefix;              // writes <prefix>.model and <prefix>.vocab
  bool pad_piece = true;                  // false: no "<pad>" piece (as Llama)
  bool image_piece = true;                // false: no "<image>" piece (as Llama; LLaVA appends it)
  std::vector<std::string> symbols;       // more user-defined symbols, each always one piece (ids
                                          // after "<image>"), e.g. a chat template's "USER:"; no
                                          // whitespace or ',' inside

  bool verbose = false;                   // SentencePiece's own training log on stderr
};

// What training produced.
struct TokenizerTrainResult {
  std::string model_path;  // <prefix>.model
  std::string vocab_path;  // <prefix>.vocab: "<piece>\t<score>" per line, in id order
  int64_t num_sentences = 0;
  int64_t num_bytes = 0;   // corpus size
};

// Trains a SentencePiece model with ids unk=0, bos=1, eos=2, pad=3, "<image>"=4 (a user-defined
// symbol, never split; without a pad piece it is 3) and Llama's normaliser settings (identity, dummy prefix, whitespace
// kept). Deterministic: one thread, every sentence used (no sampling), fixed seed — the same input gives the same
// bytes. Both files are written atomically. Throws mmb::Error "train_tokenizer: ...".
TokenizerTrainResult train_tokenizer(const TokenizerTrainOptions& options);

// Reads training text from one file, one sentence per returned string:
//   *.jsonl  one JSON object per line; *.json  an array of objects (LLaVA's data files);
//   from each object: `json_field` if given (a string or an array of strings), else every
//   "value" of a "conversations" array (LLaVA format; "<image>" removed), else "text".
//   anything else: plain text, one sentence per non-blank line.
// Throws mmb::Error naming the file and line when a record has none of the expected keys.
std::vector<std::string> read_text_corpus(const std::string& path, const std::string& json_field);

}  // namespace mmb
