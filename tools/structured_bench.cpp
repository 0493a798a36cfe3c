// Micro benchmark of the grammar engine: vocabulary and grammar compile times, and the time to fill one
// sequence's token mask per step, cold (empty mask cache) and warm, as a batch of constrained sequences
// decodes JSON. Usage: troupe_structured_bench TOKENIZER_JSON [NUM_SEQUENCES [MODEL_VOCAB_SIZE]]

#include "runtime/structured/compiled_grammar.hpp"
#include "runtime/structured/grammar_matcher.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

using namespace troupe;
using clock_type = std::chrono::steady_clock;

namespace {

double micros_since(clock_type::time_point start) {
  return std::chrono::duration<double, std::micro>(clock_type::now() - start).count();
}

const char* schema = R"({"type":"object","properties":{
  "name":{"type":"string","maxLength":40},
  "age":{"type":"integer","minimum":0,"maximum":150},
  "email":{"type":"string","format":"email"},
  "status":{"enum":["active","inactive","pending"]},
  "tags":{"type":"array","items":{"type":"string"},"maxItems":5},
  "address":{"type":"object","properties":{"street":{"type":"string"},"city":{"type":"string"},
             "zip":{"type":"string","pattern":"^[0-9]{5}$"}},"required":["street","city","zip"]},
  "score":{"type":"number"}},
  "required":["name","age","status","tags","address"]})";

// The i-th output of the batch: the same shape, different values.
std::string instance(int i) {
  const char* names[] = {"Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov"};
  const char* cities[] = {"London", "Paris", "New York", "Zürich", "Tokyo"};
  const char* states[] = {"active", "inactive", "pending"};
  std::string s = "{\"name\": \"" + std::string(names[i % 5]) + "\", \"age\": " + std::to_string(20 + i % 70) +
                  ", \"email\": \"user" + std::to_string(i) + "@example.com\", \"status\": \"" + states[i % 3] +
                  "\", \"tags\": [\"t" + std::to_string(i % 7) + "\", \"blue\"], \"address\": {\"street\": \"" +
                  std::to_string(i + 1) + " Main St\", \"city\": \"" + cities[i % 5] + "\", \"zip\": \"" +
                  std::to_string(10000 + i * 37) + "\"}, \"score\": " + std::to_string(i % 10) + ".5}";
  return s;
}

struct run_result {
  double cold_us = 0, warm_us = 0;
  long cold_masks = 0, warm_masks = 0;
  double steps = 0;
};

// Decodes each sequence's text token by token: fill the mask, check the token is allowed, accept it. The
// first sequence runs alone on an empty cache (cold); the others then run step-interleaved (warm, as a
// batch would).
run_result run(const tokenizer& tok, std::shared_ptr<const compiled_grammar> grammar, int num_sequences,
               std::string (*text_of)(int)) {
  run_result result;
  std::vector<std::vector<int32_t>> tokens;
  for (int i = 0; i < num_sequences; ++i) tokens.push_back(tok.encode(text_of(i), false));
  std::vector<grammar_matcher> matchers;
  for (int i = 0; i < num_sequences; ++i) matchers.emplace_back(grammar);
  std::vector<uint32_t> words(matchers[0].bitmask_words());
  const auto step = [&](int i, std::size_t t, double& total, long& count) {
    const auto start = clock_type::now();
    matchers[i].fill_next_token_bitmask(words);
    total += micros_since(start);
    ++count;
    const int32_t id = tokens[i][t];
    if (!(words[id >> 5] >> (id & 31) & 1) || !matchers[i].accept_token(id)) {
      std::fprintf(stderr, "sequence %d: token %zu (%d) was not allowed\n", i, t, id);
      std::exit(1);
    }
  };
  for (std::size_t t = 0; t < tokens[0].size(); ++t) step(0, t, result.cold_us, result.cold_masks);
  std::size_t longest = 0;
  for (const auto& ids : tokens) longest = std::max(longest, ids.size());
  for (std::size_t t = 0; t < longest; ++t) {
    for (int i = 1; i < num_sequences; ++i) {
      if (t < tokens[i].size()) step(i, t, result.warm_us, result.warm_masks);
    }
  }
  result.steps = static_cast<double>(longest);
  return result;
}

void report(const char* name, const run_result& r, const compiled_grammar& grammar, int num_sequences) {
  const auto stats = grammar.stats();
  std::printf("%-12s cold: %8.1f us/mask over %ld masks; warm: %6.2f us/mask over %ld masks "
              "(%.0f us per step for %d sequences); cache %zu masks, %.1f MiB, %zu misses\n",
              name, r.cold_us / r.cold_masks, r.cold_masks, r.warm_us / std::max(1L, r.warm_masks), r.warm_masks,
              r.warm_us / r.steps, num_sequences - 1, stats.entries, stats.bytes / 1048576.0, stats.misses);
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s TOKENIZER_JSON [NUM_SEQUENCES [MODEL_VOCAB_SIZE]]\n", argv[0]);
    return 2;
  }
  const int num_sequences = argc > 2 ? std::atoi(argv[2]) : 129;
  const tokenizer tok = tokenizer::from_file(argv[1]);
  auto start = clock_type::now();
  std::vector<int32_t> ends;
  if (tok.eos_id()) ends.push_back(*tok.eos_id());
  const auto vocab = make_token_vocabulary(tok, ends, argc > 3 ? std::atoi(argv[3]) : 0);
  std::printf("vocabulary: %d ids (%d in the tokenizer), %zu trie nodes, built in %.1f ms\n", vocab->size(),
              tok.vocab_size(), vocab->trie().size(),
              micros_since(start) / 1000);

  start = clock_type::now();
  const auto schema_grammar = compile_structured_output({structured_output::kind::json_schema, schema}, vocab);
  std::printf("json_schema: compiled in %.2f ms (%zu automaton nodes)\n", micros_since(start) / 1000,
              schema_grammar->automaton().nodes.size());
  report("json_schema", run(tok, schema_grammar, num_sequences, instance), *schema_grammar, num_sequences);

  start = clock_type::now();
  const auto object_grammar = compile_structured_output({structured_output::kind::json_object, ""}, vocab);
  std::printf("json_object: compiled in %.2f ms\n", micros_since(start) / 1000);
  report("json_object", run(tok, object_grammar, num_sequences, instance), *object_grammar, num_sequences);
  return 0;
}
