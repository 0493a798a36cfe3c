#pragma once
// A test-only token_constraint: the output must be one of a few fixed token sequences, then an end id. It
// behaves as grammar_matcher's contract says (runtime/structured/grammar_matcher.hpp): end ids are allowed
// exactly when a choice is complete, only end ids once nothing longer can follow, and a refused token
// leaves the state unchanged. Specs are structured_output{choice, "5 7 9|5 8"}: choices of token ids.

#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/structured/token_constraint.hpp"

namespace troupe::testing {

class choice_constraint : public token_constraint {
 public:
  choice_constraint(std::vector<std::vector<int32_t>> choices, std::vector<int32_t> end_ids)
      : choices_(std::move(choices)), end_ids_(std::move(end_ids)) {}

  void fill_next_token_bitmask(std::span<uint32_t> words) override {
    std::fill(words.begin(), words.end(), 0u);
    auto allow = [&](int32_t id) { words[static_cast<size_t>(id) / 32] |= 1u << (id % 32); };
    if (terminated_) {
      for (int32_t id : end_ids_) allow(id);
      return;
    }
    for (const auto& c : choices_) {
      if (!extends(c)) continue;
      if (c.size() == output_.size()) {
        for (int32_t id : end_ids_) allow(id);
      } else {
        allow(c[output_.size()]);
      }
    }
  }

  bool accept_token(int32_t id) override {
    if (terminated_) return false;
    for (const auto& c : choices_) {
      if (!extends(c)) continue;
      if (c.size() == output_.size() && std::find(end_ids_.begin(), end_ids_.end(), id) != end_ids_.end()) {
        terminated_ = true;
        return true;
      }
      if (c.size() > output_.size() && c[output_.size()] == id) {
        output_.push_back(id);
        return true;
      }
    }
    return false;
  }

  bool is_terminated() const override { return terminated_; }
  bool ended() const override { return terminated_; }  // terminated only by an end id

  // "5 7 9|5 8" -> {{5, 7, 9}, {5, 8}}. Throws std::invalid_argument for an empty spec.
  static std::vector<std::vector<int32_t>> parse(const std::string& text) {
    std::vector<std::vector<int32_t>> out;
    std::stringstream all(text);
    std::string one;
    while (std::getline(all, one, '|')) {
      std::stringstream ids(one);
      std::vector<int32_t> c;
      for (int32_t id; ids >> id;) c.push_back(id);
      if (!c.empty()) out.push_back(std::move(c));
    }
    if (out.empty()) throw std::invalid_argument("choice: no choices in '" + text + "'");
    return out;
  }

  // A factory for constraint_table and model_runner.
  static constraint_factory factory(std::vector<int32_t> end_ids) {
    return [end_ids](const structured_output& spec) -> std::unique_ptr<token_constraint> {
      return std::make_unique<choice_constraint>(parse(spec.text), end_ids);
    };
  }

 private:
  bool extends(const std::vector<int32_t>& c) const {
    return c.size() >= output_.size() && std::equal(output_.begin(), output_.end(), c.begin());
  }

  std::vector<std::vector<int32_t>> choices_;
  std::vector<int32_t> end_ids_;
  std::vector<int32_t> output_;
  bool terminated_ = false;
};

} // namespace troupe::testing
