// Builds the grammar engine's view of a tokenizer's vocabulary and the byte trie over it.

#include "runtime/structured/token_vocabulary.hpp"

#include "runtime/tokenizer/tokenizer.hpp"

#include <algorithm>
#include <numeric>
#include <stdexcept>

namespace troupe {

token_vocabulary::token_vocabulary(std::vector<std::string> bytes, std::vector<uint8_t> special,
                                   std::vector<int32_t> end_ids)
    : bytes_(std::move(bytes)), kind_(bytes_.size(), kind_text) {
  for (std::size_t id = 0; id < bytes_.size(); ++id) {
    if ((id < special.size() && special[id]) || bytes_[id].empty() || bytes_[id].size() >= UINT16_MAX)
      kind_[id] = kind_never;
  }
  for (const int32_t id : end_ids) {
    if (id < 0 || id >= size())
      throw std::invalid_argument("structured outputs: end id " + std::to_string(id) + " is outside the vocabulary");
    if (kind_[id] == kind_end) continue;
    kind_[id] = kind_end;
    end_ids_.push_back(id);
  }

  std::vector<int32_t> order;
  for (int32_t id = 0; id < size(); ++id) {
    if (kind_[id] == kind_text) order.push_back(id);
  }
  std::stable_sort(order.begin(), order.end(), [this](int32_t a, int32_t b) { return bytes_[a] < bytes_[b]; });
  trie_.push_back({0, 0, 0, 0, 0});
  std::vector<uint32_t> path{0};  // node indices from the root along the previous token's bytes
  const std::string* previous = nullptr;
  for (const int32_t id : order) {
    const std::string& s = bytes_[id];
    std::size_t common = 0;
    if (previous) {
      const std::size_t limit = std::min(previous->size(), s.size());
      while (common < limit && (*previous)[common] == s[common]) ++common;
    }
    common = std::min(common, path.size() - 1);
    while (path.size() > common + 1) {
      trie_[path.back()].subtree_end = static_cast<uint32_t>(trie_.size());
      path.pop_back();
    }
    for (std::size_t i = common; i < s.size(); ++i) {
      const auto index = static_cast<uint32_t>(trie_.size());
      const auto at = static_cast<uint32_t>(trie_tokens_.size());
      trie_.push_back({static_cast<uint8_t>(s[i]), static_cast<uint16_t>(i + 1), 0, at, at});
      path.push_back(index);
    }
    trie_tokens_.push_back(id);
    // Sorted order puts equal byte strings side by side, so a node's ids are contiguous.
    trie_[path.back()].token_end = static_cast<uint32_t>(trie_tokens_.size());
    previous = &s;
  }
  while (!path.empty()) {
    trie_[path.back()].subtree_end = static_cast<uint32_t>(trie_.size());
    path.pop_back();
  }
  // Children after parents in preorder: a reverse pass carries each node's bytes up to its parent.
  std::vector<uint32_t> parent(trie_.size(), 0), ancestors{0};
  for (uint32_t i = 1; i < trie_.size(); ++i) {
    ancestors.resize(trie_[i].depth);
    parent[i] = ancestors.back();
    ancestors.push_back(i);
  }
  bytes_below_.assign(trie_.size(), {});
  for (auto i = static_cast<uint32_t>(trie_.size()); i-- > 1;) {
    bytes_below_[parent[i]] |= bytes_below_[i];
    bytes_below_[parent[i]].set(trie_[i].byte);
  }
}

std::shared_ptr<const token_vocabulary> make_token_vocabulary(const tokenizer& tok, std::span<const int32_t> end_ids,
                                                              int32_t vocab_size) {
  const int32_t size = std::max(tok.vocab_size(), vocab_size);
  std::vector<std::string> bytes(size);  // ids past the tokenizer's keep no bytes: never allowed
  std::vector<uint8_t> special(size, 0);
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    special[id] = tok.is_special(id) ? 1 : 0;
    if (!special[id]) bytes[id] = tok.token_bytes(id);
  }
  return std::make_shared<const token_vocabulary>(std::move(bytes), std::move(special),
                                                  std::vector<int32_t>(end_ids.begin(), end_ids.end()));
}

} // namespace troupe
