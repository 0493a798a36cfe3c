// guided_choice: a JSON array of strings becomes the alternation of their bytes.

#include "runtime/structured/grammar_front_ends.hpp"

#include <nlohmann/json.hpp>

#include <stdexcept>

namespace troupe::structured {

grammar choice_grammar(std::string_view json_array) {
  const auto list = nlohmann::json::parse(json_array.begin(), json_array.end(), nullptr, false);
  if (list.is_discarded() || !list.is_array())
    throw std::invalid_argument("guided_choice: must be a list of strings");
  if (list.empty()) throw std::invalid_argument("guided_choice: the list of choices is empty");
  grammar g;
  g.what = "guided_choice";
  std::vector<std::string> texts;
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (!list[i].is_string())
      throw std::invalid_argument("guided_choice: choice " + std::to_string(i) + " is not a string");
    texts.push_back(list[i].get<std::string>());
  }
  g.root = g.rule("root");
  g.set_body(g.root, g.literal_set(std::move(texts)));
  return g;
}

} // namespace troupe::structured
