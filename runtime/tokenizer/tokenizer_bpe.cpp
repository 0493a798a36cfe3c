#include "runtime/tokenizer/tokenizer_bpe.hpp"

#include <mutex>
#include <queue>

#include "runtime/tokenizer/tokenizer_json.hpp"
#include "runtime/tokenizer/tokenizer_utf8.hpp"

namespace troupe::tokenization {
namespace {

// HF caches words shorter than this; longer ones are rare and would crowd the cache.
constexpr std::size_t max_cached_word_bytes = 256;
constexpr std::size_t cache_capacity = 10000;

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// One symbol of a word being merged: a doubly linked list over a vector, as in HF's Word.
struct symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  int32_t length; // bytes of the word it covers; 0 once merged into its left neighbour
};

struct merge_candidate {
  int32_t rank;
  int32_t pos;
  int32_t new_id;
};

// Orders the heap so that the lowest rank, then the leftmost position, comes out first.
struct lower_priority {
  bool operator()(const merge_candidate& a, const merge_candidate& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};

} // namespace

bpe_model::bpe_model(const json& section) {
  constexpr std::string_view where = "model";
  const std::string type = optional_string(section, "type", "BPE", where);
  if (type != "BPE")
    throw user_error("model type '" + type + "' is not supported (troupe supports BPE)");
  if (section.contains("dropout") && !section["dropout"].is_null() && section["dropout"].get<double>() != 0.0)
    throw user_error("model: BPE dropout is not supported (it makes encoding random); set \"dropout\": null");

  const json& vocab = required_field(section, "vocab", where);
  if (!vocab.is_object()) throw user_error("model: field 'vocab' must be an object of token to id");
  vocab_.reserve(vocab.size());
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<long long>() < 0 || id.get<long long>() > INT32_MAX)
      throw user_error("model: vocab entry '" + token + "' must have a non-negative integer id");
    vocab_.emplace(token, id.get<int32_t>());
  }

  const auto null_or_string = [&](std::string_view key) {
    return optional_string(section, key, std::string(), where);
  };
  continuing_subword_prefix_ = null_or_string("continuing_subword_prefix");
  end_of_word_suffix_ = null_or_string("end_of_word_suffix");
  fuse_unk_ = optional_bool(section, "fuse_unk", false, where);
  byte_fallback_ = optional_bool(section, "byte_fallback", false, where);
  ignore_merges_ = optional_bool(section, "ignore_merges", false, where);
  if (const std::string unk = null_or_string("unk_token"); !unk.empty()) {
    // HF only complains when the unknown token is needed; a file naming a missing one is still broken.
    const auto it = vocab_.find(unk);
    if (it == vocab_.end()) throw user_error("model: unk_token '" + unk + "' is not in the vocabulary");
    unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    static const char* hex = "0123456789ABCDEF";
    const std::string name = std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
    const auto it = vocab_.find(name);
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }

  const json& merges = section.contains("merges") ? section["merges"] : json::array();
  if (!merges.is_array()) throw user_error("model: field 'merges' must be a list");
  merges_.reserve(merges.size());
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const json& merge = merges[rank];
    std::string left, right;
    if (merge.is_string()) {
      // The older "a b" form: tokens never hold a space in files that use it.
      const std::string text = merge.get<std::string>();
      const std::size_t space = text.find(' ');
      if (space == std::string::npos)
        throw user_error("model: merge " + std::to_string(rank) + " ('" + text +
                         "') is not two tokens separated by a space");
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      throw user_error("model: merge " + std::to_string(rank) + " must be \"a b\" or [\"a\", \"b\"]");
    }
    const auto lookup = [&](const std::string& token) {
      const auto it = vocab_.find(token);
      if (it == vocab_.end())
        throw user_error("model: merge " + std::to_string(rank) + " ('" + left + " " + right + "') uses token '" +
                         token + "', which is not in the vocabulary");
      return it->second;
    };
    const int32_t left_id = lookup(left);
    const int32_t right_id = lookup(right);
    const std::string merged =
        left + (right.starts_with(continuing_subword_prefix_) ? right.substr(continuing_subword_prefix_.size()) : right);
    const int32_t merged_id = lookup(merged);
    // A repeated merge keeps its last rank, as HF's map insertion does.
    merges_.insert_or_assign(pair_key(left_id, right_id), merge_target{static_cast<int32_t>(rank), merged_id});
  }
}

bpe_model::~bpe_model() = default;

std::optional<int32_t> bpe_model::token_to_id(std::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

void bpe_model::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    // Llama-3 style: a word that is a whole vocabulary entry is emitted as is, merges or not.
    if (const auto it = vocab_.find(word); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() < max_cached_word_bytes;
  if (cacheable) {
    std::shared_lock lock(cache_mutex_);
    if (const auto it = cache_.find(word); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const std::size_t first = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::unique_lock lock(cache_mutex_);
    if (cache_.size() >= cache_capacity) cache_.clear();
    cache_.emplace(std::string(word), std::vector<int32_t>(out.begin() + static_cast<std::ptrdiff_t>(first), out.end()));
  }
}

void bpe_model::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<symbol> symbols;
  symbols.reserve(word.size());
  const auto add = [&](int32_t id, std::size_t length) {
    const auto index = static_cast<int32_t>(symbols.size());
    if (!symbols.empty()) symbols.back().next = index;
    symbols.push_back({id, index - 1, -1, static_cast<int32_t>(length)});
  };

  // Unknown characters wait here so that consecutive ones can fuse into one unknown token.
  int32_t pending_unk_id = -1;
  std::size_t pending_unk_length = 0;
  std::string buffer;
  for (std::size_t pos = 0; pos < word.size();) {
    char32_t c;
    const std::size_t length = utf8::decode_at(word, pos, c);
    const bool is_first = pos == 0;
    const bool is_last = pos + length == word.size();
    std::string_view piece = word.substr(pos, length);
    pos += length;
    if ((!is_first && !continuing_subword_prefix_.empty()) || (is_last && !end_of_word_suffix_.empty())) {
      buffer.clear();
      if (!is_first) buffer += continuing_subword_prefix_;
      buffer += piece;
      if (is_last) buffer += end_of_word_suffix_;
      piece = buffer;
    }
    if (const auto it = vocab_.find(piece); it != vocab_.end()) {
      if (pending_unk_id >= 0) {
        add(pending_unk_id, pending_unk_length);
        pending_unk_id = -1;
      }
      add(it->second, length);
      continue;
    }
    if (byte_fallback_) {
      bool all_bytes = true;
      for (const char byte : piece) all_bytes = all_bytes && byte_ids_[static_cast<unsigned char>(byte)] >= 0;
      if (all_bytes) {
        // NOTE: like HF, a pending unknown token is not flushed here; it lands after these bytes.
        for (const char byte : piece) add(byte_ids_[static_cast<unsigned char>(byte)], 1);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk_id >= 0 && fuse_unk_) {
        pending_unk_length += length;
      } else {
        if (pending_unk_id >= 0) add(pending_unk_id, pending_unk_length);
        pending_unk_id = *unk_id_;
        pending_unk_length = length;
      }
    }
  }
  if (pending_unk_id >= 0) add(pending_unk_id, pending_unk_length);

  std::priority_queue<merge_candidate, std::vector<merge_candidate>, lower_priority> queue;
  const auto candidate = [&](int32_t left) {
    const int32_t right = symbols[left].next;
    const auto it = merges_.find(pair_key(symbols[left].id, symbols[right].id));
    if (it != merges_.end()) queue.push({it->second.rank, left, it->second.new_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) candidate(i);

  while (!queue.empty()) {
    const merge_candidate top = queue.top();
    queue.pop();
    symbol& current = symbols[top.pos];
    if (current.length == 0 || current.next == -1) continue;
    const symbol right = symbols[current.next];
    // Skip entries made stale by an earlier merge of either side.
    const auto it = merges_.find(pair_key(current.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;

    symbols[current.next].length = 0;
    current.id = top.new_id;
    current.length += right.length;
    current.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (current.prev >= 0) candidate(current.prev);
    if (current.next >= 0) candidate(top.pos);
  }
  for (const symbol& s : symbols) {
    if (s.length != 0) out.push_back(s.id);
  }
}

} // namespace troupe::tokenization
