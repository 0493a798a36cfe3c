#pragma once
// The BPE model of a Hugging Face tokenizer.json: words to ids by applying merges in rank order, with
// byte fallback, unknown-token fusing and ignore_merges. Internal to the tokenizer.

#include <nlohmann/json_fwd.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace troupe::tokenization {

// Hashing for maps keyed by std::string that are looked up with std::string_view.
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view text) const noexcept { return std::hash<std::string_view>{}(text); }
};
using vocabulary = std::unordered_map<std::string, int32_t, string_hash, std::equal_to<>>;

class bpe_model {
public:
  // Reads the "model" section; throws user_error naming the field, merge or token that is wrong.
  explicit bpe_model(const nlohmann::json& section);
  ~bpe_model();

  // Appends the ids of one pre-tokenized word to out (nothing for an empty word).
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  // The id of a vocabulary entry, if there is one.
  std::optional<int32_t> token_to_id(std::string_view token) const;
  const vocabulary& vocab() const { return vocab_; }

private:
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;

  struct merge_target {
    int32_t rank;
    int32_t new_id;
  };
  vocabulary vocab_;
  std::unordered_map<uint64_t, merge_target> merges_;
  std::optional<int32_t> unk_id_;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::array<int32_t, 256> byte_ids_{}; // id of "<0xNN>" for each byte, -1 when absent

  // Words already merged, so common words cost one lookup. Bounded: cleared when full.
  mutable std::shared_mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, string_hash, std::equal_to<>> cache_;
};

} // namespace troupe::tokenization
