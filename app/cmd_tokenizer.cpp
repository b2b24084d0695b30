// mmb tokenizer: train a SentencePiece tokenizer on a corpus, encode and decode text.
#include <chrono>
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "mmb/chat_template.h"
#include "mmb/tokenizer.h"

namespace mmb::app {
namespace {

struct TrainOptions {
  CommonOptions common;
  TokenizerTrainOptions train;
};

struct EncodeOptions {
  CommonOptions common;
  std::string model;
  std::string text;
  bool no_bos = false;
  bool chat = false;                   // wrap as a generation prompt with an image
  std::string template_name;           // empty: the model directory's chat_template.json
  int32_t image_id = -1;
  bool json = false;
};

struct DecodeOptions {
  CommonOptions common;
  std::string model;
  std::vector<int32_t> ids;
  int32_t image_id = -1;
};

void setup_tokenizer_train(CLI::App& cmd) {
  auto o = std::make_shared<TrainOptions>();
  TokenizerTrainOptions& t = o->train;
  add_common_options(cmd, o->common, /*with_out=*/true);
  add_examples(cmd, "mmb tokenizer train --corpus world/train/llava.jsonl --vocab-size 2000 --out runs/tok\n");
  cmd.get_option("--out")->required()->description(
      "Run directory: tokenizer.model, tokenizer.vocab, manifest.json");
  const char* g = "Corpus";
  cmd.add_option("--corpus", t.corpus_files,
                 "Text files: .jsonl / .json records (LLaVA conversations, or --field), else "
                 "plain text lines")
      ->required()->group(g);
  cmd.add_option("--field", t.json_field, "JSON key to read (default: conversations' values, "
                 "else \"text\")")->group(g);
  const char* m = "Model";
  cmd.add_option("--vocab-size", t.vocab_size, "Pieces incl. specials and 256 byte pieces")
      ->capture_default_str()->group(m);
  cmd.add_option("--model-type", t.model_type, "bpe (as Llama) or unigram")
      ->check(CLI::IsMember({"bpe", "unigram"}))->capture_default_str()->group(m);
  cmd.add_option("--byte-fallback", t.byte_fallback, "Unknown characters as <0xNN> pieces")
      ->capture_default_str()->group(m);
  cmd.add_option("--character-coverage", t.character_coverage, "Share of characters kept")
      ->capture_default_str()->group(m);
  cmd.add_option("--split-digits", t.split_digits, "One piece per digit")
      ->capture_default_str()->group(m);
  cmd.add_option("--symbol", t.symbols, "A user-defined symbol, always one piece (repeatable), e.g. USER:")
      ->group(m);
  cmd.add_flag("--verbose", t.verbose, "Show SentencePiece's training log")->group(m);
  cmd.callback([&cmd, o] {
    apply_common_options(o->common);
    auto run = open_run_dir(cmd, o->common);
    TokenizerTrainOptions t = o->train;
    t.output_prefix = run->path("tokenizer");
    const auto start = std::chrono::steady_clock::now();
    TokenizerTrainResult r = train_tokenizer(t);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    Tokenizer tok = Tokenizer::load(r.model_path);
    Json result = {{"model", r.model_path},       {"vocab", r.vocab_path},
                   {"vocab_size", tok.vocab_size()}, {"sentences", r.num_sentences},
                   {"corpus_bytes", r.num_bytes},  {"train_s", secs},
                   {"bos_id", tok.bos_id()},       {"eos_id", tok.eos_id()},
                   {"pad_id", tok.pad_id()},       {"unk_id", tok.unk_id()},
                   {"image_id", tok.image_id()}};
    run->set_result("tokenizer", result);
    run->log_metrics({{"phase", "train"}, {"sentences", r.num_sentences}, {"train_s", secs}});
    run->finish();
    std::cout << "wrote " << r.model_path << " (" << tok.vocab_size() << " pieces) from "
              << r.num_sentences << " sentences, " << r.num_bytes << " bytes in " << std::fixed
              << std::setprecision(2) << secs << " s ("
              << std::setprecision(0) << (secs > 0 ? r.num_bytes / secs / 1e6 : 0.0)
              << " MB/s)\n";
  });
}

void setup_tokenizer_encode(CLI::App& cmd) {
  auto o = std::make_shared<EncodeOptions>();
  add_common_options(cmd, o->common, /*with_out=*/false);
  add_examples(cmd, "mmb tokenizer encode --model runs/tok/tokenizer.model --text \"What color is the cube?\"\n");
  cmd.add_option("--model", o->model, "tokenizer.model (SentencePiece), or a model directory holding it")->required();
  cmd.add_option("--text", o->text, "Text to encode; \"<image>\", \"<s>\", \"</s>\" are special")
      ->required();
  cmd.add_flag("--no-bos", o->no_bos, "Do not prepend BOS");
  cmd.add_flag("--chat", o->chat, "Encode the text as a chat prompt with an image");
  cmd.add_option("--template", o->template_name,
                 "Chat template: vicuna_v1 | llava_v1 (default: the model directory's chat_template.json, "
                 "else vicuna_v1)");
  cmd.add_option("--image-id", o->image_id, "Image token id (-1: <image> piece, else vocab size)")
      ->capture_default_str();
  cmd.add_flag("--json", o->json, "Print JSON");
  cmd.callback([o] {
    apply_common_options(o->common);
    // The template the model is run with: its directory's chat_template.json, as `mmb score`.
    const bool is_dir = std::filesystem::is_directory(o->model);
    const std::string model_dir = is_dir ? o->model : std::filesystem::path(o->model).parent_path().string();
    Tokenizer tok = Tokenizer::load(is_dir ? o->model + "/tokenizer.model" : o->model, {o->image_id});
    std::vector<int32_t> ids;
    std::string text = o->text;
    if (o->chat) {
      const ChatTemplate tmpl = o->template_name.empty() ? chat_template_for(model_dir.empty() ? "." : model_dir)
                                                         : ChatTemplate::by_name(o->template_name);
      text = build_prompt(tmpl, o->text, /*with_image=*/true);
      ids = tokenize_prompt(tok, tmpl, {{o->text, ""}}, /*with_image=*/true);
    } else {
      ids = tok.encode(text, !o->no_bos);
    }
    if (o->json) {
      Json pieces = Json::array();
      for (int32_t id : ids) pieces.push_back(tok.id_to_piece(id));
      std::cout << Json{{"text", text}, {"ids", ids}, {"pieces", pieces}}.dump() << "\n";
      return;
    }
    for (int32_t id : ids) std::cout << id << "\t" << tok.id_to_piece(id) << "\n";
    std::cout << ids.size() << " tokens, " << text.size() << " bytes\n";
  });
}

void setup_tokenizer_decode(CLI::App& cmd) {
  auto o = std::make_shared<DecodeOptions>();
  add_common_options(cmd, o->common, /*with_out=*/false);
  add_examples(cmd, "mmb tokenizer decode --model runs/tok/tokenizer.model 1 450 2\n");
  cmd.add_option("--model", o->model, "tokenizer.model (SentencePiece)")->required();
  cmd.add_option("ids", o->ids, "Token ids (space or comma separated)")->required()->delimiter(',');
  cmd.add_option("--image-id", o->image_id, "Image token id (-1: <image> piece, else vocab size)")
      ->capture_default_str();
  cmd.callback([o] {
    apply_common_options(o->common);
    Tokenizer tok = Tokenizer::load(o->model, {o->image_id});
    std::cout << tok.decode(o->ids) << "\n";
  });
}

}  // namespace

void setup_tokenizer(CLI::App& cmd) {
  cmd.require_subcommand(1);
  setup_tokenizer_train(*cmd.add_subcommand("train", "Train a SentencePiece tokenizer (BPE, as Llama)"));
  setup_tokenizer_encode(*cmd.add_subcommand("encode", "Text to token ids and pieces"));
  setup_tokenizer_decode(*cmd.add_subcommand("decode", "Token ids to text"));
}

}  // namespace mmb::app
