// troupe_gpu_check, edge sizes: every CUDA op at 0, 1 and a few rows against its CPU twin (the table of
// tests/support/op_cases.hpp, which the CPU test runs too), and a model step that samples nothing (a
// prefill chunk short of its prompt's end) on every sampling path.

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/model.hpp"
#include "tests/support/op_cases.hpp"
#include "tools/gpu_check.hpp"

using namespace troupe;

namespace gpu_check {
void check_op_rows(cuda_ops& gpu, dtype t, bool only_fp8_kv, bool only_fp8_weights, bool only_int4) {
  cpu_ops cpu;
  for (const testing::op_case& c : testing::op_cases()) {
    const bool fp8_weights = c.name.starts_with("linear_fp8");
    if (only_fp8_kv && (fp8_weights || c.name.find("fp8") == std::string::npos)) continue;
    if (only_fp8_weights && !fp8_weights) continue;
    if (only_int4 && !c.name.starts_with("linear_int4")) continue;
    // Integer results (argmax, sample) must match exactly; floats within the dtype's tolerance.
    const bool exact = c.name == "argmax" || c.name == "sample";
    if (exact && t != dtype::f32) continue;  // they read f32 logits whatever the model's dtype
    for (const int64_t rows : {int64_t{0}, int64_t{1}, testing::kCapacity}) {
      const auto on_gpu = c.run(gpu, rows, t);
      const auto on_cpu = c.run(cpu, rows, dtype::f32);
      double worst = 0;
      for (size_t i = 0; i < on_gpu.size(); ++i) {
        // At 0 rows nothing may change, to the bit.
        if (rows == 0) worst = std::max(worst, on_gpu[i].after == on_gpu[i].before ? 0.0 : double(INFINITY));
        worst = std::max(worst, relative_error(on_gpu[i].after, on_cpu[i].after));
      }
      report(c.name, t, "rows=" + std::to_string(rows), worst, exact ? 0.0 : tolerance_for(t),
             rows == 0 ? "writes nothing" : "");
    }
  }
}

void check_unsampled_steps(model& net, const std::string& label, dtype t, const std::vector<int32_t>& prompt,
                           const std::function<step_input(const std::vector<int32_t>&, int32_t)>& step_of) {
  // The whole prompt in one step gives the reference first token; then the same prompt in chunks of 7
  // whose steps sample nothing but the last, through each of the model's three entry points.
  std::vector<int32_t> whole;
  net.forward_greedy(step_of(prompt, 0), whole);
  const int32_t chunk = 7;
  for (int path = 0; path < 3; ++path) {
    std::vector<int32_t> tokens;
    std::vector<float> logits;
    size_t begin = 0;
    bool empty_results = true;
    for (; begin + chunk < prompt.size(); begin += chunk) {
      step_input in = step_of({prompt.begin() + begin, prompt.begin() + begin + chunk}, static_cast<int32_t>(begin));
      in.logits_indices.clear();
      tokens.assign(1, -1);
      logits.assign(1, NAN);
      if (path == 0) net.forward_greedy(in, tokens);
      if (path == 1) net.forward(in, logits);
      if (path == 2) net.forward_sample(in, sampling_inputs{}, tokens);
      empty_results = empty_results && (path == 1 ? logits.empty() : tokens.empty());
    }
    const step_input last = step_of({prompt.begin() + begin, prompt.end()}, static_cast<int32_t>(begin));
    net.forward_greedy(last, tokens);
    const char* name[] = {"forward_greedy", "forward", "forward_sample"};
    report(label, t, std::string("chunks of 7 sampling nothing, ") + name[path],
           empty_results && tokens.size() == 1 && tokens[0] == whole.at(0) ? 0.0 : 1.0, 0.0,
           "first token " + std::to_string(tokens.empty() ? -1 : tokens[0]) + ", whole prompt " + std::to_string(whole.at(0)));
  }
}

} // namespace gpu_check
