// Post-processors: the special tokens wrapped around one encoded sequence (HF tokenizers/processors).
// Only single sequences are encoded, so pair templates are read past.

#include "runtime/tokenizer/tokenizer_components.hpp"
#include "runtime/tokenizer/tokenizer_json.hpp"

namespace troupe::tokenization {
namespace {

// A single-sequence template: ids before the sequence, then ids after it.
class template_post_processor final : public post_processor {
public:
  template_post_processor(std::vector<int32_t> before, std::vector<int32_t> after)
      : before_(std::move(before)), after_(std::move(after)) {}
  std::vector<int32_t> process(std::vector<int32_t> ids, bool add_special_tokens) const override {
    if (!add_special_tokens) return ids;
    std::vector<int32_t> out;
    out.reserve(before_.size() + ids.size() + after_.size());
    out.insert(out.end(), before_.begin(), before_.end());
    out.insert(out.end(), ids.begin(), ids.end());
    out.insert(out.end(), after_.begin(), after_.end());
    return out;
  }

private:
  std::vector<int32_t> before_, after_;
};

class identity_post_processor final : public post_processor {
public:
  std::vector<int32_t> process(std::vector<int32_t> ids, bool) const override { return ids; }
};

class sequence_post_processor final : public post_processor {
public:
  explicit sequence_post_processor(std::vector<std::unique_ptr<post_processor>> steps) : steps_(std::move(steps)) {}
  std::vector<int32_t> process(std::vector<int32_t> ids, bool add_special_tokens) const override {
    for (const auto& step : steps_) ids = step->process(std::move(ids), add_special_tokens);
    return ids;
  }

private:
  std::vector<std::unique_ptr<post_processor>> steps_;
};

std::unique_ptr<post_processor> make_template(const json& section) {
  constexpr std::string_view where = "TemplateProcessing post_processor";
  const json& single = required_field(section, "single", where);
  const json& specials = section.contains("special_tokens") ? section["special_tokens"] : json::object();
  if (!single.is_array()) throw user_error(std::string(where) + ": field 'single' must be a list");
  std::vector<int32_t> before, after;
  bool seen_sequence = false;
  for (const json& item : single) {
    if (item.is_object() && item.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    if (!item.is_object() || !item.contains("SpecialToken") || !item["SpecialToken"].contains("id"))
      throw user_error(std::string(where) + ": each item of 'single' must be {\"Sequence\": ...} or "
                       "{\"SpecialToken\": {\"id\": ...}}");
    const std::string name = item["SpecialToken"]["id"].get<std::string>();
    if (!specials.is_object() || !specials.contains(name) || !specials[name].contains("ids") ||
        !specials[name]["ids"].is_array())
      throw user_error(std::string(where) + ": special token '" + name + "' has no ids in 'special_tokens'");
    auto& target = seen_sequence ? after : before;
    for (const json& id : specials[name]["ids"]) {
      if (!id.is_number_integer()) throw user_error(std::string(where) + ": ids of '" + name + "' must be integers");
      target.push_back(id.get<int32_t>());
    }
  }
  return std::make_unique<template_post_processor>(std::move(before), std::move(after));
}

// The id of a ["token", id] pair (BertProcessing, RobertaProcessing).
int32_t pair_id(const json& section, std::string_view key, std::string_view where) {
  const json& value = required_field(section, key, where);
  if (!value.is_array() || value.size() != 2 || !value[1].is_number_integer())
    throw user_error(std::string(where) + ": field '" + std::string(key) + "' must be [token, id]");
  return value[1].get<int32_t>();
}

} // namespace

std::unique_ptr<post_processor> make_post_processor(const json& section) {
  if (section.is_null()) return nullptr;
  const std::string type = type_of(section, "post_processor");
  if (type == "TemplateProcessing") return make_template(section);
  // ByteLevel as a post-processor only trims offsets, which troupe does not report.
  if (type == "ByteLevel") return std::make_unique<identity_post_processor>();
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    const std::string where = type + " post_processor";
    return std::make_unique<template_post_processor>(std::vector<int32_t>{pair_id(section, "cls", where)},
                                                     std::vector<int32_t>{pair_id(section, "sep", where)});
  }
  if (type == "Sequence") {
    const json& list = required_field(section, "processors", "Sequence post_processor");
    if (!list.is_array()) throw user_error("Sequence post_processor: field 'processors' must be a list");
    std::vector<std::unique_ptr<post_processor>> steps;
    for (const json& step : list) {
      if (auto made = make_post_processor(step)) steps.push_back(std::move(made));
    }
    return std::make_unique<sequence_post_processor>(std::move(steps));
  }
  throw user_error("post_processor type '" + type + "' is not supported (troupe supports TemplateProcessing, "
                   "ByteLevel, BertProcessing, RobertaProcessing, Sequence)");
}

} // namespace troupe::tokenization
