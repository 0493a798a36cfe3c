// Decoders: token strings back to text, as in HF tokenizers/decoders (decode_chain semantics).

#include "runtime/tokenizer/tokenizer_components.hpp"
#include "runtime/tokenizer/tokenizer_json.hpp"
#include "runtime/tokenizer/tokenizer_regex.hpp"
#include "runtime/tokenizer/tokenizer_utf8.hpp"

namespace troupe::tokenization {
namespace {

class byte_level_decoder final : public decoder {
public:
  // Every token's characters map back to bytes; a token with a character outside the byte alphabet (an
  // added token such as "中") contributes its own UTF-8 bytes. The joined bytes are decoded lossily.
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& token : tokens) {
      const std::size_t mark = bytes.size();
      bool all_mapped = true;
      for (std::size_t pos = 0; pos < token.size();) {
        char32_t c;
        pos += utf8::decode_at(token, pos, c);
        const int byte = byte_level_byte(c);
        if (byte < 0) {
          all_mapped = false;
          break;
        }
        bytes.push_back(static_cast<char>(byte));
      }
      if (!all_mapped) {
        bytes.resize(mark);
        bytes += token;
      }
    }
    tokens.assign(1, utf8::make_valid(bytes));
  }
  void token_bytes(std::string& token, bool&) const override {
    std::string bytes;
    for (std::size_t pos = 0; pos < token.size();) {
      char32_t c;
      pos += utf8::decode_at(token, pos, c);
      const int byte = byte_level_byte(c);
      if (byte < 0) return; // an added token outside the byte alphabet stands for its own text
      bytes.push_back(static_cast<char>(byte));
    }
    token = std::move(bytes);
  }
};

class metaspace_decoder final : public decoder {
public:
  metaspace_decoder(char32_t replacement, prepend_scheme scheme) : replacement_(replacement), scheme_(scheme) {}
  // NOTE: like HF, the first token loses every replacement character, not only a leading one.
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& token = tokens[i];
      for (std::size_t pos = 0; pos < token.size();) {
        char32_t c;
        const std::size_t length = utf8::decode_at(token, pos, c);
        if (c == replacement_) {
          if (i != 0 || scheme_ == prepend_scheme::never) out += ' ';
        } else {
          out.append(token, pos, length);
        }
        pos += length;
      }
      tokens[i] = std::move(out);
    }
  }
  void token_bytes(std::string& token, bool&) const override {
    std::string out;
    for (std::size_t pos = 0; pos < token.size();) {
      char32_t c;
      const std::size_t length = utf8::decode_at(token, pos, c);
      if (c == replacement_) {
        out += ' ';
      } else {
        out.append(token, pos, length);
      }
      pos += length;
    }
    token = std::move(out);
  }

private:
  char32_t replacement_;
  prepend_scheme scheme_;
};

class replace_decoder final : public decoder {
public:
  replace_decoder(regex pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& token : tokens) {
      const auto matches = pattern_.find_all(token);
      if (matches.empty()) continue;
      std::string out;
      std::size_t last = 0;
      for (const auto& [begin, end] : matches) {
        out.append(token, last, begin - last);
        out += content_;
        last = end;
      }
      out.append(token, last, std::string::npos);
      token = std::move(out);
    }
  }
  void token_bytes(std::string& token, bool&) const override {
    std::vector<std::string> one{std::move(token)};
    decode_chain(one);
    token = std::move(one[0]);
  }

private:
  regex pattern_;
  std::string content_;
};

// The byte of a "<0xNN>" token, or -1.
int fallback_byte(const std::string& token) {
  if (token.size() != 6 || !token.starts_with("<0x") || token[5] != '>') return -1;
  int value = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = token[i];
    int digit = -1;
    if (c >= '0' && c <= '9') digit = c - '0';
    if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

class byte_fallback_decoder final : public decoder {
public:
  // Runs of <0xNN> tokens become their UTF-8 text; a run that is not valid UTF-8 becomes one U+FFFD per
  // byte (HF's rule, not the lossy one).
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string run;
    const auto flush_run = [&] {
      if (run.empty()) return;
      if (utf8::is_valid(run)) {
        out.push_back(run);
      } else {
        for (std::size_t i = 0; i < run.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
      }
      run.clear();
    };
    for (std::string& token : tokens) {
      const int byte = fallback_byte(token);
      if (byte >= 0) {
        run.push_back(static_cast<char>(byte));
      } else {
        flush_run();
        out.push_back(std::move(token));
      }
    }
    flush_run();
    tokens = std::move(out);
  }
  void token_bytes(std::string& token, bool&) const override {
    if (const int byte = fallback_byte(token); byte >= 0) token.assign(1, static_cast<char>(byte));
  }
};

class fuse_decoder final : public decoder {
public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string joined;
    for (const std::string& token : tokens) joined += token;
    tokens.assign(1, std::move(joined));
  }
  void token_bytes(std::string&, bool& fused) const override { fused = true; }
};

class strip_decoder final : public decoder {
public:
  strip_decoder(char32_t content, std::size_t start, std::size_t stop) : content_(content), start_(start), stop_(stop) {}
  // Removes up to start leading and stop trailing content characters from each token.
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& token : tokens) {
      std::vector<std::size_t> offsets; // byte offset of each character, then the end
      std::vector<char32_t> chars;
      for (std::size_t pos = 0; pos < token.size();) {
        char32_t c;
        offsets.push_back(pos);
        pos += utf8::decode_at(token, pos, c);
        chars.push_back(c);
      }
      offsets.push_back(token.size());
      std::size_t start_cut = 0;
      for (std::size_t i = 0; i < start_ && i < chars.size(); ++i) {
        if (chars[i] != content_) break;
        start_cut = i + 1;
      }
      std::size_t stop_cut = chars.size();
      for (std::size_t i = 0; i < stop_ && i < chars.size(); ++i) {
        const std::size_t index = chars.size() - i - 1;
        if (chars[index] != content_) break;
        stop_cut = index;
      }
      // HF slices chars[start_cut..stop_cut], which would panic when they cross; keep nothing then.
      if (stop_cut < start_cut) stop_cut = start_cut;
      token = token.substr(offsets[start_cut], offsets[stop_cut] - offsets[start_cut]);
    }
  }
  void token_bytes(std::string& token, bool& fused) const override {
    if (fused) return;
    std::vector<std::string> one{std::move(token)};
    decode_chain(one);
    token = std::move(one[0]);
  }

private:
  char32_t content_;
  std::size_t start_, stop_;
};

class bpe_suffix_decoder final : public decoder {
public:
  explicit bpe_suffix_decoder(std::string suffix) : suffix_(std::move(suffix)) {}
  // The end-of-word suffix becomes a space, except in the last token where it goes.
  void decode_chain(std::vector<std::string>& tokens) const override {
    if (suffix_.empty()) return;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      const std::string replacement = i + 1 == tokens.size() ? "" : " ";
      std::string& token = tokens[i];
      std::string out;
      std::size_t last = 0;
      for (std::size_t found = token.find(suffix_); found != std::string::npos; found = token.find(suffix_, last)) {
        out.append(token, last, found - last);
        out += replacement;
        last = found + suffix_.size();
      }
      out.append(token, last, std::string::npos);
      token = std::move(out);
    }
  }
  void token_bytes(std::string& token, bool&) const override {
    if (suffix_.empty()) return;
    std::vector<std::string> two{std::move(token), std::string()};  // not the last token: the suffix is a space
    decode_chain(two);
    token = std::move(two[0]);
  }

private:
  std::string suffix_;
};

class sequence_decoder final : public decoder {
public:
  explicit sequence_decoder(std::vector<std::unique_ptr<decoder>> steps) : steps_(std::move(steps)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& step : steps_) step->decode_chain(tokens);
  }
  void token_bytes(std::string& token, bool& fused) const override {
    for (const auto& step : steps_) step->token_bytes(token, fused);
  }

private:
  std::vector<std::unique_ptr<decoder>> steps_;
};

std::size_t count_field(const json& section, std::string_view key, std::string_view where) {
  const json& value = required_field(section, key, where);
  if (!value.is_number_unsigned() && !(value.is_number_integer() && value.get<long long>() >= 0))
    throw user_error(std::string(where) + ": field '" + std::string(key) + "' must be a count");
  return value.get<std::size_t>();
}

} // namespace

std::unique_ptr<decoder> make_decoder(const json& section) {
  if (section.is_null()) return nullptr;
  const std::string type = type_of(section, "decoder");
  if (type == "ByteLevel") return std::make_unique<byte_level_decoder>();
  if (type == "Metaspace") {
    constexpr std::string_view where = "Metaspace decoder";
    return std::make_unique<metaspace_decoder>(single_char(section, "replacement", where),
                                               parse_prepend_scheme(section, where));
  }
  if (type == "Replace") {
    constexpr std::string_view where = "Replace decoder";
    return std::make_unique<replace_decoder>(make_pattern(required_field(section, "pattern", where), where),
                                             required_string(section, "content", where));
  }
  if (type == "ByteFallback") return std::make_unique<byte_fallback_decoder>();
  if (type == "Fuse") return std::make_unique<fuse_decoder>();
  if (type == "Strip") {
    constexpr std::string_view where = "Strip decoder";
    return std::make_unique<strip_decoder>(single_char(section, "content", where), count_field(section, "start", where),
                                           count_field(section, "stop", where));
  }
  if (type == "BPEDecoder")
    return std::make_unique<bpe_suffix_decoder>(optional_string(section, "suffix", "</w>", "BPEDecoder decoder"));
  if (type == "Sequence") {
    const json& list = required_field(section, "decoders", "Sequence decoder");
    if (!list.is_array()) throw user_error("Sequence decoder: field 'decoders' must be a list");
    std::vector<std::unique_ptr<decoder>> steps;
    for (const json& step : list) {
      if (auto made = make_decoder(step)) steps.push_back(std::move(made));
    }
    return std::make_unique<sequence_decoder>(std::move(steps));
  }
  throw user_error("decoder type '" + type + "' is not supported (troupe supports ByteLevel, Metaspace, Replace, "
                   "ByteFallback, Fuse, Strip, BPEDecoder, Sequence)");
}

} // namespace troupe::tokenization
