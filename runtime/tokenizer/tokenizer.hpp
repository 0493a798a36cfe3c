#pragma once
// runtime/tokenizer/: Hugging Face tokenizer.json (normalizers, pre-tokenizers, BPE, added tokens,
// post-processors, decoders), incremental detokenization and the BPE trainer of the built-in model; this
// is its public face. May include runtime/error.hpp only (PCRE2, utf8proc, nlohmann-json stay inside).
//
// A Hugging Face tokenizer loaded from tokenizer.json: encodes and decodes exactly as the `tokenizers`
// library does for BPE models (Qwen2/3, Llama 2/3, Mistral, GPT-2 style files).
// Copies share the loaded tables; every member is safe to call from several threads at once.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

class tokenizer {
public:
  // Loads tokenizer.json (and, when present beside it, tokenizer_config.json for bos/eos metadata); a
  // model folder stands for the tokenizer.json in it. Throws user_error naming the file and what is
  // wrong on anything it cannot use.
  static tokenizer from_file(const std::filesystem::path& tokenizer_json);

  // Builds from the text of a tokenizer.json and, optionally, of a tokenizer_config.json (empty: none).
  // origin names the source in error messages. Throws user_error like from_file.
  static tokenizer from_json_text(std::string_view tokenizer_json, std::string_view origin,
                                  std::string_view tokenizer_config_json = {});

  // The ids of text. Added and special tokens written in the text are matched as such; with
  // add_special_tokens the post-processor's tokens (e.g. BOS) are added. Invalid UTF-8 in text is
  // replaced by U+FFFD first.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;

  // The text of ids; ids out of range are left out, and so are special tokens when skip_special_tokens.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // The raw bytes id stands for in the middle of a text (byte-level characters mapped back to bytes,
  // SentencePiece's ▁ as a space, <0xNN> as its byte; no U+FFFD repair of partial characters): what
  // constrained decoding matches grammars against. "" for ids out of range.
  std::string token_bytes(int32_t id) const;

  // Largest id + 1, counting added tokens.
  int32_t vocab_size() const;
  // The id of a vocabulary entry or added token (added tokens win).
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // The vocabulary entry of id; "" when out of range.
  std::string id_to_token(int32_t id) const;
  // True for added tokens marked special (those decode(..., true) leaves out).
  bool is_special(int32_t id) const;
  // From tokenizer_config.json's bos_token / eos_token (a string or {"content": ...}), when present.
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;

  tokenizer(const tokenizer&) = default;
  tokenizer(tokenizer&&) noexcept = default;
  tokenizer& operator=(const tokenizer&) = default;
  tokenizer& operator=(tokenizer&&) noexcept = default;
  ~tokenizer();

  struct impl;

private:
  explicit tokenizer(std::shared_ptr<const impl> state);
  std::shared_ptr<const impl> impl_;
};

// Turns a growing list of token ids into text deltas that never split a UTF-8 character. Concatenated,
// the deltas (and flush()) equal decode(prompt + generated) with the text of decode(prompt) taken off
// the front; with an empty prompt, decode(generated). Like vLLM's incremental detokenizer it decodes a
// short window of recent tokens, so SentencePiece leading-space stripping and byte fallback come out
// as in a whole decode, and a character split over byte tokens is held back until it is complete.
// Exceptions, where a whole decode changes text it has already shown: a decoder that strips the end of
// the text (Strip with stop > 0), and a byte-fallback run that turns out invalid UTF-8 (HF then shows
// every byte of the run as U+FFFD); the deltas then hold the new tokens' own text.
class incremental_detokenizer {
public:
  incremental_detokenizer(const tokenizer& tok, std::span<const int32_t> prompt_ids, bool skip_special_tokens);

  // The new complete text after id, possibly empty.
  std::string push(int32_t id);
  // Whatever is left at the end of the stream (U+FFFD for a dangling partial character).
  std::string flush();

private:
  tokenizer tokenizer_; // a copy shares the loaded tables, so the detokenizer never dangles
  bool skip_special_tokens_;
  std::vector<int32_t> window_;  // ids from the start of the decoding window on
  std::size_t read_offset_ = 0;  // window_[0, read_offset_) is text already shown
  std::string prefix_text_;      // decode(window_[0, read_offset_))
};

} // namespace troupe
