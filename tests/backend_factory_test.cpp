// Choosing a backend and a dtype by name, and the greedy path that takes the argmax on the backend.
// Runs on the CPU; the CUDA twins are checked on a GPU by troupe_gpu_check (scripts/gpu/check.sh).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "kernels/backend_factory.hpp"
#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/model.hpp"
#include "kernels/model_loader.hpp"
#include "runtime/error.hpp"
#include "runtime/model/safetensors.hpp"
#include "tests/support/reference_model.hpp"

using namespace troupe;
namespace fs = std::filesystem;

TEST(backend_factory, auto_dtype_is_bf16_on_cuda_and_f32_on_the_cpu) {
  EXPECT_EQ(activation_dtype("cuda", "auto"), dtype::bf16);
  EXPECT_EQ(activation_dtype("cpu", "auto"), dtype::f32);
  EXPECT_EQ(activation_dtype("cuda", "float16"), dtype::f16);
  EXPECT_EQ(activation_dtype("cuda", "float32"), dtype::f32);
  EXPECT_EQ(activation_dtype("cpu", "float32"), dtype::f32);
}

TEST(backend_factory, the_cpu_backend_refuses_16_bit_dtypes) {
  EXPECT_THROW(activation_dtype("cpu", "bfloat16"), user_error);
  EXPECT_THROW(activation_dtype("cuda", "float8"), user_error);
}

TEST(backend_factory, an_unknown_backend_is_refused_with_the_known_names) {
  try {
    make_backend("tpu");
    FAIL() << "no error";
  } catch (const user_error& e) {
    EXPECT_NE(std::string(e.what()).find("cpu"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'tpu'"), std::string::npos) << e.what();
  }
  const auto names = available_backends();
  EXPECT_NE(std::find(names.begin(), names.end(), "cpu"), names.end());
}

TEST(backend_factory, the_cpu_backend_has_no_device_memory) {
  const auto backend = make_backend("cpu");
  EXPECT_EQ(backend->name(), "cpu");
  EXPECT_FALSE(device_memory(*backend).has_value());
}

TEST(cpu_argmax, takes_the_lowest_index_among_equal_maxima_and_skips_nan) {
  cpu_ops ops;
  device_buffer logits = ops.alloc(dtype::f32, {3, 4});
  ops.upload(logits, std::vector<float>{1, 5, 5, 2, NAN, -1, 3, NAN, -INFINITY, -INFINITY, -INFINITY, -INFINITY});
  device_buffer out = ops.alloc(dtype::i32, {3});
  ops.argmax(logits, out);
  std::vector<int32_t> ids(3);
  ops.download_raw(ids.data(), out);
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 2, 0}));
}

TEST(model_forward_greedy, picks_the_argmax_of_each_sampled_rows_logits) {
  cpu_ops ops;
  const auto model_ptr = troupe::testing::reference_model_on(ops);
  model& net = *model_ptr;
  // Two sequences of 5 and 3 tokens in blocks 0 and 4; both sample.
  const step_input in = troupe::testing::two_sequence_step();
  std::vector<float> logits;
  net.forward(in, logits);
  std::vector<int32_t> tokens;
  net.forward_greedy(in, tokens);
  const size_t vocab = static_cast<size_t>(net.config().vocab_size);
  ASSERT_EQ(tokens.size(), 2u);
  for (size_t r = 0; r < 2; ++r) {
    const auto row = std::span<const float>(logits).subspan(r * vocab, vocab);
    EXPECT_EQ(tokens[r], std::max_element(row.begin(), row.end()) - row.begin()) << "row " << r;
  }
}
