#pragma once
// The vocabulary as the grammar engine sees it (declared in grammar_matcher.hpp): each token's raw bytes,
// the ids that end generation, those never allowed (special tokens, holes, tokens of no bytes), and a byte
// trie of the others in preorder, which a mask computation walks once, pruning dead prefixes.

#include "runtime/structured/grammar_matcher.hpp"

#include <bitset>
#include <cstdint>
#include <string>
#include <vector>

namespace troupe {

class token_vocabulary {
public:
  struct trie_node {
    uint8_t byte;          // the byte that leads here from the parent
    uint16_t depth;        // bytes from the root (the root is node 0, depth 0)
    uint32_t subtree_end;  // first node after this one's subtree
    uint32_t token_begin, token_end;  // into trie_tokens: the ids whose bytes end here
  };

  // ids[i]'s bytes; end_ids allowed only at complete matches; special ids never allowed.
  token_vocabulary(std::vector<std::string> bytes, std::vector<uint8_t> special, std::vector<int32_t> end_ids);

  int32_t size() const { return static_cast<int32_t>(bytes_.size()); }
  const std::string& bytes(int32_t id) const { return bytes_[id]; }
  bool is_end(int32_t id) const { return id >= 0 && id < size() && kind_[id] == kind_end; }
  // A token that stands for text a grammar can match (not special, not an end id, not empty).
  bool is_text(int32_t id) const { return id >= 0 && id < size() && kind_[id] == kind_text; }
  const std::vector<int32_t>& end_ids() const { return end_ids_; }
  const std::vector<trie_node>& trie() const { return trie_; }
  const std::vector<int32_t>& trie_tokens() const { return trie_tokens_; }
  // The bytes on the edges below trie node i: when every one of them leaves a parse where it was, every
  // token of the subtree is allowed at once.
  const std::bitset<256>& bytes_below(uint32_t node) const { return bytes_below_[node]; }
  // trie_tokens[tokens_from(i), tokens_from(subtree_end)) are the ids of node i's whole subtree.
  uint32_t tokens_from(uint32_t node) const {
    return node < trie_.size() ? trie_[node].token_begin : static_cast<uint32_t>(trie_tokens_.size());
  }

private:
  static constexpr uint8_t kind_text = 0, kind_never = 1, kind_end = 2;
  std::vector<std::string> bytes_;
  std::vector<uint8_t> kind_;
  std::vector<int32_t> end_ids_;
  std::vector<trie_node> trie_;
  std::vector<int32_t> trie_tokens_;
  std::vector<std::bitset<256>> bytes_below_;
};

} // namespace troupe
