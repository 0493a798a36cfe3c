#pragma once
// The stages of a Hugging Face tokenizer pipeline (normalizer, pre-tokenizer, decoder, post-processor),
// each built from its tokenizer.json section. Internal to the tokenizer: include tokenizer.hpp instead.
// NOTE: every stage takes and returns valid UTF-8.

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace troupe::tokenization {

// A piece of text on its way to the model. at_start: the piece begins at offset 0 of the original
// input (Metaspace's prepend_scheme "first" looks at it).
struct piece {
  std::string text;
  bool at_start = false;
};

class normalizer {
public:
  virtual ~normalizer() = default;
  virtual void normalize(std::string& text) const = 0;
};

class pre_tokenizer {
public:
  virtual ~pre_tokenizer() = default;
  // Replaces pieces by their splits; empty splits are dropped.
  virtual void pre_tokenize(std::vector<piece>& pieces) const = 0;
};

class decoder {
public:
  virtual ~decoder() = default;
  // HF's decode_chain: maps the list of token strings to a new list; the caller joins the result.
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
  // The raw bytes one token stands for in the middle of a longer text (constrained decoding matches
  // grammars against them): decode_chain's mapping without the lossy repair of partial UTF-8 characters.
  // fused: set by a Fuse step, after which a Strip acts on the text's edges only and leaves the token alone.
  virtual void token_bytes(std::string& token, bool& fused) const = 0;
};

class post_processor {
public:
  virtual ~post_processor() = default;
  // The ids of one encoded sequence with special tokens added when add_special_tokens is set.
  virtual std::vector<int32_t> process(std::vector<int32_t> ids, bool add_special_tokens) const = 0;
};

// Each factory returns nullptr for a JSON null and throws user_error naming the section and the
// offending type or field for anything it cannot use.
std::unique_ptr<normalizer> make_normalizer(const nlohmann::json& section);
std::unique_ptr<pre_tokenizer> make_pre_tokenizer(const nlohmann::json& section);
std::unique_ptr<decoder> make_decoder(const nlohmann::json& section);
std::unique_ptr<post_processor> make_post_processor(const nlohmann::json& section);

// Shared by pre-tokenizers and the Split behaviours: how a match separates a piece.
enum class split_behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

// A covering of a text by byte ranges, each flagged as a match of the pattern or a gap between matches.
struct span_mark {
  std::size_t begin;
  std::size_t end;
  bool is_match;
};

// Splits piece by marks (which cover its text in order) the way HF's NormalizedString::split does.
void split_piece(const piece& source, std::span<const span_mark> marks, split_behavior behavior,
                 std::vector<piece>& out);

// The GPT-2 byte-to-character map used by ByteLevel: printable bytes map to themselves, the rest to
// U+0100 upwards. byte_to_char[b] is the UTF-8 of the character for byte b.
const std::vector<std::string>& byte_level_chars();
// Inverse of byte_level_chars on code points; -1 when c is not one of the 256 characters.
int byte_level_byte(char32_t c);

} // namespace troupe::tokenization
