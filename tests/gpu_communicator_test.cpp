// The GPU communicators' entry points on a machine without a GPU: their headers include no CUDA, so they
// link in every build, and they refuse a backend that is not CUDA (or a rank outside the group) before
// touching a device. What they compute is checked on a GPU by troupe_gpu_check --comm
// (tools/gpu_check_comm.cpp, run by scripts/gpu/check.sh).

#include <gtest/gtest.h>

#include <functional>
#include <stdexcept>
#include <string>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cpu/thread_communicator.hpp"
#include "kernels/cuda/nccl_communicator.hpp"
#include "kernels/cuda/shared_gpu_communicator.hpp"
#include "runtime/error.hpp"

namespace troupe {
namespace {

// The message `f` throws as an E ("" when it throws nothing; another exception type fails the test).
template <class E> std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

TEST(gpu_communicators, the_shared_gpu_communicator_refuses_a_cpu_backend) {
  cpu_ops cpu;
#if TROUPE_HAVE_CUDA
  EXPECT_EQ(message_of<std::invalid_argument>([&] { make_shared_gpu_communicators({&cpu, &cpu}); }),
            "the shared-GPU communicator needs a cuda backend for every rank; rank 0 has 'cpu'");
  EXPECT_EQ(message_of<std::invalid_argument>([&] { make_shared_gpu_communicators({}); }),
            "a shared-GPU communicator group needs 1 to 16 ranks, not 0");
#else
  EXPECT_EQ(message_of<user_error>([&] { make_shared_gpu_communicators({&cpu, &cpu}); }),
            "the shared-GPU communicator: this troupe was built without CUDA (no nvcc at build time)");
#endif
}

TEST(gpu_communicators, the_nccl_communicator_refuses_a_rank_outside_the_group_and_a_cpu_backend) {
  cpu_ops cpu;
  const nccl_unique_id id;
  if (!nccl_available()) {
    EXPECT_NE(message_of<user_error>([&] { make_nccl_communicator(id, 0, 1, cpu); }), "");
    return;
  }
  EXPECT_EQ(message_of<std::invalid_argument>([&] { make_nccl_communicator(id, 2, 2, cpu); }),
            "an NCCL communicator needs 0 <= rank < size, got rank 2 of 2");
  EXPECT_EQ(message_of<std::invalid_argument>([&] { make_nccl_communicator(id, 0, 1, cpu); }),
            "the NCCL communicator needs the cuda backend, not 'cpu'");
}

TEST(gpu_communicators, nccl_async_error_refuses_a_communicator_that_is_not_nccls) {
  auto threads = make_thread_communicators(1);
  EXPECT_NE(message_of<std::invalid_argument>([&] { nccl_async_error(*threads[0]); }), "");
}

TEST(gpu_communicators, the_thread_communicator_may_not_sit_inside_a_cuda_graph) {
  EXPECT_FALSE(make_thread_communicators(2)[0]->capturable());
}

} // namespace
} // namespace troupe
