#include "runtime/model/job_fingerprint.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <stdexcept>

#include <xxhash.h>

namespace troupe {
namespace fs = std::filesystem;
namespace {

std::string hex(uint64_t v) {
  std::array<char, 17> buf{};
  std::snprintf(buf.data(), buf.size(), "%016llx", static_cast<unsigned long long>(v));
  return buf.data();
}

// The digest of a file's first `limit` bytes (all of it by default), read in pieces; "absent" when it cannot
// be opened.
std::string file_digest(const fs::path& path, uint64_t limit = UINT64_MAX, uint64_t skip = 0) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "absent";
  in.seekg(static_cast<std::streamoff>(skip));
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  std::vector<char> buf(1 << 20);
  uint64_t left = limit;
  while (left > 0 && in) {
    in.read(buf.data(), static_cast<std::streamsize>(std::min<uint64_t>(buf.size(), left)));
    const auto got = static_cast<uint64_t>(in.gcount());
    if (got == 0) break;
    XXH3_64bits_update(state, buf.data(), got);
    left -= got;
  }
  const uint64_t digest = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return hex(digest);
}

std::string escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\t') out += "\\t";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    if (++i == s.size()) throw std::invalid_argument("job fingerprint: a line ends in a lone backslash");
    out += s[i] == 't' ? '\t' : s[i] == 'n' ? '\n' : s[i];
  }
  return out;
}

} // namespace

std::string job_fingerprint::serialize() const {
  std::string out;
  for (const auto& [key, value] : items) out += escape(key) + '\t' + escape(value) + '\n';
  return out;
}

job_fingerprint job_fingerprint::parse(std::string_view text) {
  job_fingerprint f;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    if (end == std::string_view::npos) throw std::invalid_argument("job fingerprint: the last line has no newline");
    const std::string_view line = text.substr(0, end);
    const size_t tab = line.find('\t');
    if (tab == std::string_view::npos) throw std::invalid_argument("job fingerprint: a line has no tab");
    f.add(unescape(line.substr(0, tab)), unescape(line.substr(tab + 1)));
    text.remove_prefix(end + 1);
  }
  return f;
}

void add_checkpoint_identity(job_fingerprint& f, const fs::path& dir) {
  for (const char* name : {"config.json", "tokenizer.json", "tokenizer_config.json"})
    f.add(std::string("checkpoint ") + name, "digest " + file_digest(dir / name));
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.path().extension() == ".safetensors") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  f.add("checkpoint weight files", std::to_string(files.size()));
  for (const fs::path& p : files) {
    // A safetensors file starts with the header's length (u64, little-endian), then the header.
    uint64_t header_len = 0;
    std::ifstream in(p, std::ios::binary);
    unsigned char len[8] = {};
    in.read(reinterpret_cast<char*>(len), 8);
    for (int i = 7; i >= 0; --i) header_len = header_len << 8 | len[i];
    f.add("checkpoint " + p.filename().string(),
          "size " + std::to_string(fs::file_size(p, ec)) + ", header digest " + file_digest(p, header_len, 8));
  }
}

void add_build_identity(job_fingerprint& f) { f.add("troupe build", "digest " + file_digest("/proc/self/exe")); }

std::string first_difference(const job_fingerprint& ours, int our_rank, const job_fingerprint& theirs, int their_rank) {
  const std::string us = "rank " + std::to_string(our_rank), them = "rank " + std::to_string(their_rank);
  const size_t n = std::min(ours.items.size(), theirs.items.size());
  for (size_t i = 0; i < n; ++i) {
    const auto& [key, value] = ours.items[i];
    if (theirs.items[i].first != key)
      return them + " differs from " + us + " in what it checks: '" + theirs.items[i].first + "' where " + us +
             " has '" + key + "' (a different troupe version?)";
    if (theirs.items[i].second != value)
      return them + " differs from " + us + " in " + key + ": " + theirs.items[i].second + " on " + them + ", " +
             value + " on " + us;
  }
  if (ours.items.size() != theirs.items.size())
    return them + " differs from " + us + " in what it checks: " + std::to_string(theirs.items.size()) +
           " items where " + us + " has " + std::to_string(ours.items.size()) + " (a different troupe version?)";
  return {};
}

} // namespace troupe
