#pragma once
// Trains a small byte-level BPE tokenizer and writes it as a Hugging Face tokenizer.json
// (Qwen2 layout: NFC, the Qwen2 split regex, ByteLevel). `troupe make-model` ships one with every model
// it makes, so a made model is a complete Hugging Face folder that needs no download.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace troupe {

struct trained_bpe {
  std::vector<std::string> vocab;                           // id -> token (byte-level unicode form)
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::vector<std::string> special_tokens;                  // ids follow the vocab
};

// Learns up to `num_merges` merges from `text` (most frequent pair first, ties broken by the
// pair's text so the result is reproducible).
trained_bpe train_byte_level_bpe(std::string_view text, int num_merges, std::vector<std::string> special_tokens);

// The tokenizer.json text for a trained BPE.
std::string byte_level_tokenizer_json(const trained_bpe& bpe);

// GPT-2's printable stand-in for each byte value.
std::string byte_to_unicode(uint8_t byte);

// A few kilobytes of English prose, code and numbers to train the default tokenizer on.
std::string_view default_training_text();

} // namespace troupe
