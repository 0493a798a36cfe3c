#pragma once
// What every process of a multi-process job (mpirun) must agree on before it loads anything: the build, the
// flags that shape the model and its steps, and the checkpoint. Rank 0 gathers every rank's fingerprint and
// every rank refuses to start, naming the first difference, when any rank's differs from rank 0's.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace troupe {

struct job_fingerprint {
  std::vector<std::pair<std::string, std::string>> items;  // (what, its value on this rank), in order

  void add(std::string key, std::string value) { items.emplace_back(std::move(key), std::move(value)); }
  // One "key\tvalue\n" line per item; keys and values may hold neither tabs nor newlines (they are escaped).
  std::string serialize() const;
  // The inverse of serialize. Throws std::invalid_argument for text serialize cannot have written.
  static job_fingerprint parse(std::string_view text);
};

// Adds the identity of the checkpoint in `dir` without reading its weights: the digests of config.json,
// tokenizer.json and tokenizer_config.json (each "absent" when missing) and, for each *.safetensors file in
// name order, its size and the digest of its header (which names every tensor, its dtype, shape and offsets).
void add_checkpoint_identity(job_fingerprint& f, const std::filesystem::path& dir);

// Adds the digest of this program's own file (/proc/self/exe): two builds differ in it.
void add_build_identity(job_fingerprint& f);

// "" when `theirs` equals `ours`; else one sentence naming the first item that differs and both values, e.g.
// "rank 1 differs from rank 0 in checkpoint config.json: digest 3f1e... on rank 1, 9a2b... on rank 0".
std::string first_difference(const job_fingerprint& ours, int our_rank, const job_fingerprint& theirs, int their_rank);

} // namespace troupe
