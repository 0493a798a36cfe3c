// The tokenizer pipeline: added tokens, normalizer, pre-tokenizer, BPE, post-processor; and decoding.
// Follows HF tokenizers' TokenizerImpl::encode_single_sequence and decode step for step.

#include "runtime/tokenizer/tokenizer.hpp"

#include <fstream>
#include <sstream>
#include <unordered_set>

#include "runtime/tokenizer/tokenizer_added_tokens.hpp"
#include "runtime/tokenizer/tokenizer_bpe.hpp"
#include "runtime/tokenizer/tokenizer_components.hpp"
#include "runtime/tokenizer/tokenizer_json.hpp"
#include "runtime/tokenizer/tokenizer_utf8.hpp"

namespace troupe {

using tokenization::json;

struct tokenizer::impl {
  std::unique_ptr<tokenization::normalizer> normalizer;
  std::unique_ptr<tokenization::pre_tokenizer> pre_tokenizer;
  std::unique_ptr<tokenization::bpe_model> model;
  std::unique_ptr<tokenization::post_processor> post_processor;
  std::unique_ptr<tokenization::decoder> decoder;

  // Added tokens matched on the raw text, and those matched after normalization.
  tokenization::added_token_matcher raw_added;
  tokenization::added_token_matcher normalized_added;
  tokenization::vocabulary added_ids;

  std::vector<std::string> tokens;   // by id
  std::vector<uint8_t> known;        // by id: 1 when the id has a token
  std::vector<uint8_t> special;      // by id: 1 for special added tokens
  std::optional<int32_t> bos;
  std::optional<int32_t> eos;

  void encode_plain(std::string_view text, bool at_start, std::vector<int32_t>& ids) const;
};

namespace {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw user_error(path.string() + ": cannot be read (does the file exist?)");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw user_error(path.string() + ": cannot be read");
  return text.str();
}

json parse_json(std::string_view text, std::string_view origin) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    throw user_error(std::string(origin) + ": not valid JSON (syntax error at byte " + std::to_string(e.byte) + ")");
  }
}

std::vector<tokenization::added_token> parse_added_tokens(const json& doc) {
  std::vector<tokenization::added_token> added;
  if (!doc.contains("added_tokens") || doc["added_tokens"].is_null()) return added;
  const json& list = doc["added_tokens"];
  if (!list.is_array()) throw user_error("field 'added_tokens' must be a list");
  for (const json& entry : list) {
    constexpr std::string_view where = "added_tokens";
    tokenization::added_token token;
    token.content = tokenization::required_string(entry, "content", where);
    const json& id = tokenization::required_field(entry, "id", where);
    if (!id.is_number_integer() || id.get<long long>() < 0 || id.get<long long>() > INT32_MAX)
      throw user_error("added token '" + token.content + "' must have a non-negative integer id");
    token.id = id.get<int32_t>();
    token.special = tokenization::optional_bool(entry, "special", false, where);
    token.single_word = tokenization::optional_bool(entry, "single_word", false, where);
    token.lstrip = tokenization::optional_bool(entry, "lstrip", false, where);
    token.rstrip = tokenization::optional_bool(entry, "rstrip", false, where);
    token.normalized = tokenization::optional_bool(entry, "normalized", !token.special, where);
    added.push_back(std::move(token));
  }
  return added;
}

// The token text of a tokenizer_config.json entry: a string, {"content": ...}, or null.
std::optional<std::string> config_token(const json& config, std::string_view key) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  throw user_error("field '" + std::string(key) + "' must be a string or {\"content\": ...}");
}

std::shared_ptr<tokenizer::impl> build(const json& doc) {
  if (!doc.is_object()) throw user_error("not a tokenizer.json: the top level must be an object");
  if (!doc.contains("model")) throw user_error("not a tokenizer.json: missing field 'model'");
  auto state = std::make_shared<tokenizer::impl>();
  state->model = std::make_unique<tokenization::bpe_model>(doc["model"]);
  const auto section = [&](const char* key) -> const json& {
    static const json null_value;
    const auto it = doc.find(key);
    return it == doc.end() ? null_value : *it;
  };
  state->normalizer = tokenization::make_normalizer(section("normalizer"));
  state->pre_tokenizer = tokenization::make_pre_tokenizer(section("pre_tokenizer"));
  state->post_processor = tokenization::make_post_processor(section("post_processor"));
  state->decoder = tokenization::make_decoder(section("decoder"));

  // Ids of added tokens as HF assigns them on load: a vocabulary entry keeps its id, an added token seen
  // before keeps its id, and any other one takes the next id after the vocabulary and the added tokens
  // so far. NOTE: HF ignores the "id" written in the file (it only warns when it differs).
  const auto model_size = static_cast<int32_t>(state->model->vocab().size());
  std::optional<int32_t> max_added;
  std::vector<tokenization::added_token> placed;
  std::unordered_set<std::string> special_contents;
  for (tokenization::added_token token : parse_added_tokens(doc)) {
    if (token.content.empty()) continue;
    if (token.special) special_contents.insert(token.content);
    if (const auto it = state->added_ids.find(token.content); it != state->added_ids.end()) {
      token.id = it->second;
    } else if (const auto id = state->model->token_to_id(token.content)) {
      token.id = *id;
    } else if (!max_added) {
      token.id = model_size;
    } else {
      token.id = *max_added >= model_size || model_size == 0 ? *max_added + 1 : model_size;
    }
    state->added_ids.insert_or_assign(token.content, token.id);
    max_added = std::max(max_added.value_or(token.id), token.id);
    placed.push_back(std::move(token));
  }

  int32_t size = max_added ? *max_added + 1 : 0;
  for (const auto& [token, id] : state->model->vocab()) size = std::max(size, id + 1);
  state->tokens.assign(size, std::string());
  state->known.assign(size, 0);
  state->special.assign(size, 0);
  for (const auto& [token, id] : state->model->vocab()) {
    state->tokens[id] = token;
    state->known[id] = 1;
  }
  for (const auto& token : placed) {
    // HF decodes a normalized added token as its normalized text (what the decoder would have seen).
    std::string shown = token.content;
    if (token.normalized && state->normalizer) state->normalizer->normalize(shown);
    state->tokens[token.id] = std::move(shown);
    state->known[token.id] = 1;
  }
  // HF's skip test is by text: any id whose token text is a special token's content is special.
  if (!special_contents.empty()) {
    for (int32_t id = 0; id < size; ++id) {
      if (state->known[id] && special_contents.contains(state->tokens[id])) state->special[id] = 1;
    }
  }
  // HF matches special tokens first, then the others.
  for (const bool special_pass : {true, false}) {
    for (const auto& token : placed) {
      if (special_contents.contains(token.content) != special_pass) continue;
      if (!token.normalized) {
        state->raw_added.add(token, token.content);
      } else {
        std::string pattern = token.content;
        if (state->normalizer) state->normalizer->normalize(pattern);
        state->normalized_added.add(token, std::move(pattern));
      }
    }
  }
  return state;
}

} // namespace

tokenizer::tokenizer(std::shared_ptr<const impl> state) : impl_(std::move(state)) {}
tokenizer::~tokenizer() = default;

tokenizer tokenizer::from_json_text(std::string_view tokenizer_json, std::string_view origin,
                                    std::string_view tokenizer_config_json) {
  std::shared_ptr<impl> state;
  try {
    state = build(parse_json(tokenizer_json, origin));
  } catch (const json::exception& e) {
    throw user_error(std::string(origin) + ": " + e.what());
  } catch (const user_error& e) {
    const std::string message = e.what();
    if (message.starts_with(std::string(origin) + ": ")) throw;
    throw user_error(std::string(origin) + ": " + message);
  }
  if (!tokenizer_config_json.empty()) {
    const std::string config_origin = std::filesystem::path(origin).parent_path().empty()
                                          ? std::string("tokenizer_config.json")
                                          : (std::filesystem::path(origin).parent_path() / "tokenizer_config.json").string();
    try {
      const json config = parse_json(tokenizer_config_json, config_origin);
      const auto resolve = [&](std::string_view key) -> std::optional<int32_t> {
        const auto content = config_token(config, key);
        if (!content) return std::nullopt;
        const tokenizer probe(state);
        const auto id = probe.token_to_id(*content);
        if (!id) throw user_error(std::string(key) + " '" + *content + "' is not a token of " + std::string(origin));
        return id;
      };
      state->bos = resolve("bos_token");
      state->eos = resolve("eos_token");
    } catch (const json::exception& e) {
      throw user_error(config_origin + ": " + e.what());
    } catch (const user_error& e) {
      const std::string message = e.what();
      if (message.starts_with(config_origin + ": ")) throw;
      throw user_error(config_origin + ": " + message);
    }
  }
  return tokenizer(std::move(state));
}

tokenizer tokenizer::from_file(const std::filesystem::path& path) {
  // A model folder stands for the tokenizer.json in it.
  const std::filesystem::path tokenizer_json = std::filesystem::is_directory(path) ? path / "tokenizer.json" : path;
  const std::string text = read_file(tokenizer_json);
  const std::filesystem::path config_path = tokenizer_json.parent_path() / "tokenizer_config.json";
  std::string config;
  if (std::filesystem::exists(config_path)) config = read_file(config_path);
  return from_json_text(text, tokenizer_json.string(), config);
}

void tokenizer::impl::encode_plain(std::string_view text, bool at_start, std::vector<int32_t>& ids) const {
  std::string normalized(text);
  if (normalizer) normalizer->normalize(normalized);
  for (const auto& part : normalized_added.split(normalized)) {
    if (part.id >= 0) {
      ids.push_back(part.id);
      continue;
    }
    std::vector<tokenization::piece> pieces{
        {normalized.substr(part.begin, part.end - part.begin), at_start && part.begin == 0}};
    if (pre_tokenizer) pre_tokenizer->pre_tokenize(pieces);
    for (const auto& p : pieces) model->tokenize(p.text, ids);
  }
}

std::vector<int32_t> tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::string valid;
  if (!utf8::is_valid(text)) {
    valid = utf8::make_valid(text);
    text = valid;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  for (const auto& part : impl_->raw_added.split(text)) {
    if (part.id >= 0) {
      ids.push_back(part.id);
    } else {
      impl_->encode_plain(text.substr(part.begin, part.end - part.begin), part.begin == 0, ids);
    }
  }
  if (impl_->post_processor) return impl_->post_processor->process(std::move(ids), add_special_tokens);
  return ids;
}

std::string tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  const auto size = static_cast<int32_t>(impl_->tokens.size());
  for (const int32_t id : ids) {
    if (id < 0 || id >= size || !impl_->known[id]) continue;
    if (skip_special_tokens && impl_->special[id]) continue;
    tokens.push_back(impl_->tokens[id]);
  }
  std::string text;
  if (impl_->decoder) {
    impl_->decoder->decode_chain(tokens);
    for (const auto& token : tokens) text += token;
  } else {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (i != 0) text += ' ';
      text += tokens[i];
    }
  }
  return text;
}

std::string tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size() || !impl_->known[id]) return std::string();
  std::string bytes = impl_->tokens[id];
  bool fused = false;
  if (impl_->decoder) impl_->decoder->token_bytes(bytes, fused);
  return bytes;
}

int32_t tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->tokens.size()); }

std::optional<int32_t> tokenizer::token_to_id(std::string_view token) const {
  if (const auto it = impl_->added_ids.find(token); it != impl_->added_ids.end()) return it->second;
  return impl_->model->token_to_id(token);
}

std::string tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= vocab_size() || !impl_->known[id]) return std::string();
  return impl_->tokens[id];
}

bool tokenizer::is_special(int32_t id) const { return id >= 0 && id < vocab_size() && impl_->special[id]; }

std::optional<int32_t> tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> tokenizer::eos_id() const { return impl_->eos; }

} // namespace troupe
