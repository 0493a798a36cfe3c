#include "runtime/structured/grammar_cache.hpp"

namespace troupe {
namespace {

// grammar_matcher as the engine's token_constraint.
class grammar_constraint final : public token_constraint {
 public:
  explicit grammar_constraint(std::shared_ptr<const compiled_grammar> g) : matcher_(std::move(g)) {}
  void fill_next_token_bitmask(std::span<uint32_t> words) override { matcher_.fill_next_token_bitmask(words); }
  bool accept_token(int32_t id) override { return matcher_.accept_token(id); }
  bool is_terminated() const override { return matcher_.is_terminated(); }

 private:
  grammar_matcher matcher_;
};

std::string key_of(const structured_output& spec) {
  std::string key(1, static_cast<char>('0' + static_cast<int>(spec.type)));
  key += spec.text;
  return key;
}

} // namespace

grammar_cache::grammar_cache(std::shared_ptr<const token_vocabulary> vocab, size_t capacity)
    : vocab_(std::move(vocab)), capacity_(capacity == 0 ? 1 : capacity) {}

std::shared_ptr<const compiled_grammar> grammar_cache::get(const structured_output& spec) {
  const std::string key = key_of(spec);
  {
    std::lock_guard lock(mutex_);
    if (auto it = grammars_.find(key); it != grammars_.end()) {
      order_.splice(order_.begin(), order_, it->second.at);
      return it->second.grammar;
    }
  }
  // Compiled outside the lock: a large schema takes a while, and other specs need not wait for it.
  std::shared_ptr<const compiled_grammar> g = compile_structured_output(spec, vocab_);
  std::lock_guard lock(mutex_);
  if (auto it = grammars_.find(key); it != grammars_.end()) return it->second.grammar;  // compiled twice meanwhile
  order_.push_front(key);
  grammars_.emplace(key, entry{g, order_.begin()});
  while (grammars_.size() > capacity_) {
    grammars_.erase(order_.back());
    order_.pop_back();
  }
  return g;
}

constraint_factory grammar_cache::factory() {
  return [this](const structured_output& spec) -> std::unique_ptr<token_constraint> {
    return std::make_unique<grammar_constraint>(get(spec));
  };
}

size_t grammar_cache::size() const {
  std::lock_guard lock(mutex_);
  return grammars_.size();
}

} // namespace troupe
