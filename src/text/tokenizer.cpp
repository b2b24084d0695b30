// Tokenizer over SentencePiece (libsentencepiece 0.1.x), and tokenizer training.
//
// Special strings are cut out of the text before SentencePiece sees it, so a Llama model
// (which has no "<image>" piece) and a model trained here (which has one) encode a prompt with
// the same structure: chunk ids, special id, chunk ids. This is also what LLaVA-1.5's
// tokenizer_image_token() does (it encodes the text on each side of "<image>" separately).
//
// SentencePiece is reached through dlopen() (see the header for why). The SentencePiece headers
// are included for sizeof(SentencePieceProcessor) only; every call goes through a pointer from
// dlsym(). A member function is called as a free function taking `this` first — after the
// hidden return-slot pointer when it returns a class such as std::string or util::Status (the
// x86-64 / AArch64 Itanium C++ ABI). util::Status is one std::unique_ptr, mirrored by SpStatus.
#include "mmb/tokenizer.h"

#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <unordered_map>

#include <sentencepiece_processor.h>

#include "mmb/atomic_file.h"
#include "mmb/error.h"
#include "mmb/json.h"
#include "mmb/jsonl.h"
#include "mmb/strings.h"

namespace mmb {
namespace detail {
namespace {

// Mirror of sentencepiece::util::Status (one pointer; non-trivial destructor, so it is returned
// through a hidden pointer exactly like the real one).
struct SpStatus {
  void* rep = nullptr;
  SpStatus() = default;
  SpStatus(const SpStatus&) = delete;
  SpStatus& operator=(const SpStatus&) = delete;
  ~SpStatus();
  bool ok() const { return rep == nullptr; }
  std::string to_string() const;
};

using StringMap = std::unordered_map<std::string, std::string>;

// Mirror of sentencepiece::SentenceIterator (same virtual functions in the same order, so the
// same vtable layout): feeds training sentences from memory. The trainer only calls these.
class SpSentenceIterator {
 public:
  virtual ~SpSentenceIterator() = default;
  virtual bool done() const = 0;
  virtual void Next() = 0;
  virtual const std::string& value() const = 0;
  virtual SpStatus status() const = 0;
};

class VectorSentenceIterator final : public SpSentenceIterator {
 public:
  explicit VectorSentenceIterator(const std::vector<std::string>& lines) : lines_(lines) {}
  bool done() const override { return i_ >= lines_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return lines_[i_]; }
  SpStatus status() const override { return {}; }  // null rep: OK

 private:
  const std::vector<std::string>& lines_;
  size_t i_ = 0;
};

// The SentencePiece functions mmb uses, looked up by their (Itanium-mangled) names.
struct SpApi {
  void (*construct)(void* self) = nullptr;
  void (*destruct)(void* self) = nullptr;
  SpStatus (*load)(void* self, std::string_view bytes) = nullptr;
  SpStatus (*encode)(const void* self, std::string_view text, std::vector<int>* ids) = nullptr;
  SpStatus (*decode)(const void* self, const std::vector<int>& ids, std::string* text) = nullptr;
  int (*piece_size)(const void* self) = nullptr;
  int (*piece_to_id)(const void* self, std::string_view piece) = nullptr;
  const std::string& (*id_to_piece)(const void* self, int id) = nullptr;
  float (*score)(const void* self, int id) = nullptr;
  int (*unk_id)(const void* self) = nullptr;
  int (*bos_id)(const void* self) = nullptr;
  int (*eos_id)(const void* self) = nullptr;
  int (*pad_id)(const void* self) = nullptr;
  std::string (*serialized)(const void* self) = nullptr;
  void (*status_destruct)(void* self) = nullptr;
  std::string (*status_to_string)(const void* self) = nullptr;
  void (*set_seed)(unsigned seed) = nullptr;
  // SentencePieceTrainer::Train(kwargs, iterator, serialized_model_proto); only in train_api().
  SpStatus (*train)(const StringMap& kwargs, SpSentenceIterator* it, std::string* model) = nullptr;
};

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MMB_ASAN_DLOPEN 1
#endif
#endif

void* open_library(const char* name) {
  // RTLD_DEEPBIND: the library resolves its symbols (its bundled protobuf) in itself first.
#ifdef MMB_ASAN_DLOPEN
  // AddressSanitizer's dlopen refuses RTLD_DEEPBIND, since the library's own malloc/free calls
  // would then bypass its allocator. SentencePiece allocates through libstdc++ (already bound to
  // the sanitizer's malloc), so the sanitized build (make test-sanitize) calls libc's dlopen.
  using DlopenFn = void* (*)(const char*, int);
  static const auto real_dlopen = reinterpret_cast<DlopenFn>(::dlsym(RTLD_NEXT, "dlopen"));
  void* h = real_dlopen(name, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
#else
  void* h = ::dlopen(name, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
#endif
  if (!h) fail("Tokenizer: cannot load ", name, " (", ::dlerror(), "); install libsentencepiece0");
  return h;
}

template <typename Fn>
void bind(void* lib, const char* lib_name, const char* symbol, Fn& fn) {
  void* p = ::dlsym(lib, symbol);
  if (!p) fail("Tokenizer: ", lib_name, " has no symbol ", symbol, " (SentencePiece 0.1.9x expected)");
  fn = reinterpret_cast<Fn>(p);
}

SpApi load_api(bool with_trainer) {
  SpApi a;
  const char* lib_name = "libsentencepiece.so.0";
  void* lib = open_library(lib_name);
  const auto b = [&](const char* sym, auto& fn) { bind(lib, lib_name, sym, fn); };
  b("_ZN13sentencepiece22SentencePieceProcessorC1Ev", a.construct);
  b("_ZN13sentencepiece22SentencePieceProcessorD1Ev", a.destruct);
  b("_ZN13sentencepiece22SentencePieceProcessor23LoadFromSerializedProtoESt17basic_string_viewIcSt11char_traitsIcEE",
    a.load);
  b("_ZNK13sentencepiece22SentencePieceProcessor6EncodeESt17basic_string_viewIcSt11char_traitsIcEEPSt6vectorIiSaIiEE",
    a.encode);
  b("_ZNK13sentencepiece22SentencePieceProcessor6DecodeERKSt6vectorIiSaIiEEPNSt7__cxx1112basic_stringIcSt11char_"
    "traitsIcESaIcEEE",
    a.decode);
  b("_ZNK13sentencepiece22SentencePieceProcessor12GetPieceSizeEv", a.piece_size);
  b("_ZNK13sentencepiece22SentencePieceProcessor9PieceToIdESt17basic_string_viewIcSt11char_traitsIcEE",
    a.piece_to_id);
  b("_ZNK13sentencepiece22SentencePieceProcessor9IdToPieceB5cxx11Ei", a.id_to_piece);
  b("_ZNK13sentencepiece22SentencePieceProcessor8GetScoreEi", a.score);
  b("_ZNK13sentencepiece22SentencePieceProcessor6unk_idEv", a.unk_id);
  b("_ZNK13sentencepiece22SentencePieceProcessor6bos_idEv", a.bos_id);
  b("_ZNK13sentencepiece22SentencePieceProcessor6eos_idEv", a.eos_id);
  b("_ZNK13sentencepiece22SentencePieceProcessor6pad_idEv", a.pad_id);
  b("_ZNK13sentencepiece22SentencePieceProcessor22serialized_model_protoB5cxx11Ev", a.serialized);
  b("_ZN13sentencepiece4util6StatusD1Ev", a.status_destruct);
  b("_ZNK13sentencepiece4util6Status8ToStringB5cxx11Ev", a.status_to_string);
  b("_ZN13sentencepiece22SetRandomGeneratorSeedEj", a.set_seed);
  if (with_trainer) {
    const char* train_name = "libsentencepiece_train.so.0";
    bind(open_library(train_name), train_name,
         "_ZN13sentencepiece20SentencePieceTrainer5TrainERKSt13unordered_mapINSt7__cxx1112basic_"
         "stringIcSt11char_traitsIcESaIcEEES7_St4hashIS7_ESt8equal_toIS7_ESaISt4pairIKS7_S7_EEEPNS_"
         "16SentenceIteratorEPS7_",
         a.train);
  }
  return a;
}

// Loaded once per process, on first use (thread-safe static initialisation).
const SpApi& api() {
  static const SpApi a = load_api(false);
  return a;
}
const SpApi& train_api() {
  static const SpApi a = load_api(true);
  return a;
}

SpStatus::~SpStatus() {
  if (rep) api().status_destruct(this);
}
std::string SpStatus::to_string() const { return api().status_to_string(this); }

}  // namespace

// One SentencePieceProcessor object living in memory we own, built by the library.
class SpProcessor {
 public:
  SpProcessor() : api_(api()), mem_(::operator new(sizeof(sentencepiece::SentencePieceProcessor))) {
    api_.construct(mem_);
  }
  ~SpProcessor() {
    api_.destruct(mem_);
    ::operator delete(mem_);
  }
  SpProcessor(const SpProcessor&) = delete;
  SpProcessor& operator=(const SpProcessor&) = delete;

  // Empty string on success, else SentencePiece's message.
  std::string load(std::string_view bytes) { return message(api_.load(mem_, bytes)); }
  std::string encode(std::string_view text, std::vector<int>* ids) const {
    return message(api_.encode(mem_, text, ids));
  }
  std::string decode(const std::vector<int>& ids, std::string* text) const {
    return message(api_.decode(mem_, ids, text));
  }
  int piece_size() const { return api_.piece_size(mem_); }
  int piece_to_id(std::string_view p) const { return api_.piece_to_id(mem_, p); }
  const std::string& id_to_piece(int id) const { return api_.id_to_piece(mem_, id); }
  float score(int id) const { return api_.score(mem_, id); }
  int unk_id() const { return api_.unk_id(mem_); }
  int bos_id() const { return api_.bos_id(mem_); }
  int eos_id() const { return api_.eos_id(mem_); }
  int pad_id() const { return api_.pad_id(mem_); }
  std::string serialized() const { return api_.serialized(mem_); }

 private:
  static std::string message(const SpStatus& s) {
    if (s.ok()) return {};
    std::string m = s.to_string();
    return m.empty() ? "unknown SentencePiece error" : m;
  }
  const SpApi& api_;
  void* mem_;
};

}  // namespace detail

namespace {

// The special strings encode() cuts the text at, and the id each maps to.
enum class Special { kImage, kBos, kEos };
constexpr std::array<std::pair<const char*, Special>, 3> kSpecialStrings{{
    {kImagePiece, Special::kImage},
    {kBosPiece, Special::kBos},
    {kEosPiece, Special::kEos},
}};

// Appends the non-blank lines of `text`, trimmed.
void push_lines(std::string_view text, std::vector<std::string>& out) {
  size_t start = 0;
  while (start <= text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    std::string line = trim(text.substr(start, nl - start));
    if (!line.empty()) out.push_back(std::move(line));
    start = nl + 1;
  }
}

// Training sentences from one JSON record (see read_text_corpus).
void record_text(const Json& rec, const std::string& field, const std::string& where,
                 std::vector<std::string>& out) {
  if (!rec.is_object()) fail("read_text_corpus: ", where, ": expected a JSON object, found ",
                             rec.type_name());
  if (!field.empty()) {
    auto it = rec.find(field);
    if (it == rec.end()) fail("read_text_corpus: ", where, ": missing key '", field, "'");
    if (it->is_string()) {
      push_lines(it->get<std::string>(), out);
    } else if (it->is_array()) {
      for (const Json& v : *it) {
        if (!v.is_string())
          fail("read_text_corpus: ", where, ": key '", field, "' holds a ", v.type_name(),
               " (expected strings)");
        push_lines(v.get<std::string>(), out);
      }
    } else {
      fail("read_text_corpus: ", where, ": key '", field, "' is a ", it->type_name(),
           " (expected a string or an array of strings)");
    }
    return;
  }
  if (auto it = rec.find("conversations"); it != rec.end() && it->is_array()) {
    for (const Json& turn : *it) {
      std::string value = json_get<std::string>(turn, "value", "read_text_corpus: " + where);
      for (size_t p; (p = value.find(kImagePiece)) != std::string::npos;)
        value.erase(p, std::char_traits<char>::length(kImagePiece));
      push_lines(value, out);
    }
    return;
  }
  if (auto it = rec.find("text"); it != rec.end() && it->is_string()) {
    push_lines(it->get<std::string>(), out);
    return;
  }
  fail("read_text_corpus: ", where,
       ": expected a \"conversations\" array or a \"text\" string (or name a field)");
}

}  // namespace

// ---- loading ------------------------------------------------------------------------------

Tokenizer::Tokenizer() : sp_(std::make_unique<detail::SpProcessor>()) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& path, const TokenizerOptions& options) {
  std::string bytes;
  try {
    bytes = read_file(path);
  } catch (const Error& e) {
    fail("Tokenizer::load: ", e.what());
  }
  return from_serialized(bytes, path, options);
}

Tokenizer Tokenizer::from_serialized(const std::string& bytes, const std::string& name,
                                     const TokenizerOptions& options) {
  Tokenizer t;
  t.source_ = name;
  if (bytes.empty()) fail("Tokenizer::load: ", name, ": not a SentencePiece model (empty file)");
  const std::string error = t.sp_->load(bytes);
  if (!error.empty() || t.sp_->piece_size() <= 0)
    fail("Tokenizer::load: ", name, ": not a SentencePiece model (",
         error.empty() ? "no pieces" : error, ")");
  t.vocab_size_ = t.sp_->piece_size();
  t.unk_id_ = t.sp_->unk_id();
  t.bos_id_ = t.sp_->bos_id();
  t.eos_id_ = t.sp_->eos_id();
  if (t.bos_id_ < 0) fail("Tokenizer::load: ", name, ": the model has no BOS piece (", kBosPiece, ")");
  if (t.eos_id_ < 0) fail("Tokenizer::load: ", name, ": the model has no EOS piece (", kEosPiece, ")");
  t.has_pad_piece_ = t.sp_->pad_id() >= 0;
  t.pad_id_ = t.has_pad_piece_ ? t.sp_->pad_id() : t.unk_id_;

  const int piece_image = t.sp_->piece_to_id(kImagePiece);
  const bool image_piece = t.sp_->id_to_piece(piece_image) == kImagePiece;
  if (options.image_id < 0) {
    t.image_id_ = image_piece ? piece_image : t.vocab_size_;
  } else if (image_piece && options.image_id != piece_image) {
    fail("Tokenizer::load: ", name, ": image_id ", options.image_id, " given but the model has ",
         kImagePiece, " at id ", piece_image);
  } else if (!image_piece && options.image_id < t.vocab_size_) {
    fail("Tokenizer::load: ", name, ": image_id ", options.image_id, " is the piece '",
         t.sp_->id_to_piece(options.image_id), "', not ", kImagePiece,
         " (an appended image id must be >= vocab size ", t.vocab_size_, ")");
  } else {
    t.image_id_ = options.image_id;
  }
  return t;
}

// ---- encoding and decoding ------------------------------------------------------------------

void Tokenizer::encode_chunk(std::string_view chunk, std::vector<int32_t>& out) const {
  if (chunk.empty()) return;
  std::vector<int> ids;
  const std::string error = sp_->encode(chunk, &ids);
  if (!error.empty()) fail("Tokenizer::encode: ", source_, ": ", error);
  out.insert(out.end(), ids.begin(), ids.end());
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos) out.push_back(bos_id_);
  if (!parse_special) {
    encode_chunk(text, out);
    return out;
  }
  size_t pos = 0;
  while (pos < text.size()) {
    // The earliest special string at or after pos.
    size_t best = std::string_view::npos, best_len = 0;
    Special kind = Special::kImage;
    for (const auto& [str, sp] : kSpecialStrings) {
      size_t p = text.find(str, pos);
      if (p < best) {
        best = p;
        best_len = std::char_traits<char>::length(str);
        kind = sp;
      }
    }
    if (best == std::string_view::npos) {
      encode_chunk(text.substr(pos), out);
      break;
    }
    encode_chunk(text.substr(pos, best - pos), out);
    out.push_back(kind == Special::kImage ? image_id_ : kind == Special::kBos ? bos_id_ : eos_id_);
    pos = best + best_len;
  }
  return out;
}

std::vector<std::string> Tokenizer::encode_pieces(std::string_view text) const {
  std::vector<std::string> pieces;
  for (int32_t id : encode(text, /*add_bos=*/false)) pieces.push_back(id_to_piece(id));
  return pieces;
}

bool Tokenizer::is_special(int32_t id) const {
  return id == bos_id_ || id == eos_id_ || id == pad_id_ || id == image_id_;
}

void Tokenizer::decode_run(const std::vector<int>& run, std::string& out) const {
  if (run.empty()) return;
  std::string text;
  const std::string error = sp_->decode(run, &text);
  if (!error.empty()) fail("Tokenizer::decode: ", source_, ": ", error);
  out += text;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  std::vector<int> run;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id != image_id_ && (id < 0 || id >= vocab_size_))
      fail("Tokenizer::decode: id ", id, " at position ", i, " is outside the vocabulary [0, ",
           vocab_size_, ") and is not the image id ", image_id_);
    if (!is_special(id)) {
      run.push_back(id);
      continue;
    }
    decode_run(run, out);
    run.clear();
    if (id == image_id_) out += kImagePiece;
  }
  decode_run(run, out);
  return out;
}

std::string Tokenizer::id_to_piece(int32_t id) const {
  if (id == image_id_) return kImagePiece;
  if (id < 0 || id >= vocab_size_)
    fail("Tokenizer::id_to_piece: id ", id, " is outside the vocabulary [0, ", vocab_size_, ")");
  return sp_->id_to_piece(id);
}

float Tokenizer::piece_score(int32_t id) const {
  if (id < 0 || id >= vocab_size_)
    fail("Tokenizer::piece_score: id ", id, " is outside the vocabulary [0, ", vocab_size_, ")");
  return sp_->score(id);
}

int32_t Tokenizer::piece_to_id(std::string_view piece) const {
  if (piece == kImagePiece) return image_id_;
  const int id = sp_->piece_to_id(piece);
  return sp_->id_to_piece(id) == piece ? id : -1;
}

std::string Tokenizer::serialized() const {
  return sp_->serialized();
}

// ---- training ---------------------------------------------------------------------------------

std::vector<std::string> read_text_corpus(const std::string& path, const std::string& json_field) {
  std::vector<std::string> out;
  if (ends_with(path, ".jsonl")) {
    JsonlReader reader(path);
    Json rec;
    while (reader.next(rec)) record_text(rec, json_field, reader.where(), out);
  } else if (ends_with(path, ".json")) {
    Json doc = read_json_file(path);
    if (!doc.is_array())
      fail("read_text_corpus: ", path, ": expected a JSON array of records, found ", doc.type_name());
    for (size_t i = 0; i < doc.size(); ++i)
      record_text(doc[i], json_field, path + "[" + std::to_string(i) + "]", out);
  } else {
    push_lines(read_file(path), out);
  }
  return out;
}

TokenizerTrainResult train_tokenizer(const TokenizerTrainOptions& o) {
  if (o.output_prefix.empty()) fail("train_tokenizer: output_prefix is empty");
  if (o.model_type != "bpe" && o.model_type != "unigram")
    fail("train_tokenizer: model_type must be 'bpe' or 'unigram', found '", o.model_type, "'");
  const int32_t min_vocab = 5 + (o.byte_fallback ? 256 : 0);
  if (o.vocab_size <= min_vocab)
    fail("train_tokenizer: vocab_size ", o.vocab_size, " is too small (must exceed ", min_vocab,
         ": 5 special pieces", o.byte_fallback ? " + 256 byte pieces" : "", ")");
  if (!(o.character_coverage > 0.0 && o.character_coverage <= 1.0))
    fail("train_tokenizer: character_coverage must be in (0, 1], found ", o.character_coverage);

  std::vector<std::string> sentences;
  for (const std::string& f : o.corpus_files) {
    auto part = read_text_corpus(f, o.json_field);
    sentences.insert(sentences.end(), std::make_move_iterator(part.begin()),
                     std::make_move_iterator(part.end()));
  }
  for (const std::string& l : o.lines) push_lines(l, sentences);
  if (sentences.empty()) fail("train_tokenizer: the corpus is empty (no non-blank lines)");

  TokenizerTrainResult result;
  result.num_sentences = static_cast<int64_t>(sentences.size());
  for (const auto& s : sentences) result.num_bytes += static_cast<int64_t>(s.size());

  // Llama's trainer and normaliser settings, with (by default) a pad piece and "<image>" added.
  const int32_t pad_id = o.pad_piece ? 3 : -1;
  const int32_t image_id = o.image_piece ? (o.pad_piece ? 4 : 3) : -1;
  detail::StringMap kwargs = {
      {"model_type", o.model_type},
      {"vocab_size", std::to_string(o.vocab_size)},
      {"byte_fallback", o.byte_fallback ? "true" : "false"},
      {"character_coverage", std::to_string(o.character_coverage)},
      {"split_digits", o.split_digits ? "true" : "false"},
      {"max_sentence_length", std::to_string(o.max_sentence_length)},
      {"unk_id", "0"}, {"bos_id", "1"}, {"eos_id", "2"}, {"pad_id", std::to_string(pad_id)},
      {"unk_piece", kUnkPiece}, {"bos_piece", kBosPiece},
      {"eos_piece", kEosPiece}, {"pad_piece", kPadPiece},
      {"normalization_rule_name", "identity"},
      {"add_dummy_prefix", "true"},
      {"remove_extra_whitespaces", "false"},
      {"allow_whitespace_only_pieces", "true"},
      // Determinism: one thread and every sentence (no sampling, so no shuffling).
      {"num_threads", "1"},
      {"input_sentence_size", "0"},
      {"shuffle_input_sentence", "false"},
      {"minloglevel", o.verbose ? "0" : "2"},
  };
  std::string symbols = o.image_piece ? kImagePiece : "";
  for (const std::string& s : o.symbols) {
    if (s.empty() || s.find_first_of(" \t\n\r,") != std::string::npos)
      fail("train_tokenizer: symbol '", s, "' must be non-empty, without whitespace or ','");
    symbols += (symbols.empty() ? "" : ",") + s;
  }
  if (!symbols.empty()) kwargs["user_defined_symbols"] = symbols;
  const detail::SpApi& sp = detail::train_api();
  sp.set_seed(1234);  // unigram's EM sampling, if any
  std::string model_bytes;
  {
    detail::VectorSentenceIterator it(sentences);
    detail::SpStatus status = sp.train(kwargs, &it, &model_bytes);
    if (!status.ok()) fail("train_tokenizer: SentencePiece: ", status.to_string());
  }

  // Check the result loads and has the ids promised in the header before writing anything.
  Tokenizer tok = Tokenizer::from_serialized(model_bytes, o.output_prefix + ".model");
  const int32_t expect_pad = o.pad_piece ? pad_id : 0, expect_image = o.image_piece ? image_id
                                                                                    : o.vocab_size;
  if (tok.unk_id() != 0 || tok.bos_id() != 1 || tok.eos_id() != 2 || tok.pad_id() != expect_pad ||
      tok.image_id() != expect_image)
    fail("train_tokenizer: unexpected special ids in the trained model (unk ", tok.unk_id(),
         ", bos ", tok.bos_id(), ", eos ", tok.eos_id(), ", pad ", tok.pad_id(), ", image ",
         tok.image_id(), ")");

  result.model_path = o.output_prefix + ".model";
  result.vocab_path = o.output_prefix + ".vocab";
  std::string vocab;
  for (int i = 0; i < tok.vocab_size(); ++i)
    vocab += tok.id_to_piece(i) + "\t" + std::to_string(tok.piece_score(i)) + "\n";
  write_file_atomic(result.model_path, model_bytes);
  write_file_atomic(result.vocab_path, vocab);
  return result;
}

}  // namespace mmb
