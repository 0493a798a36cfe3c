// The in-process communicator: every collective on 1, 2, 3, 4 and 8 ranks running on threads, checked
// bitwise against a serial computation in rank order.
#include "kernels/cpu/thread_communicator.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <exception>
#include <functional>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

namespace troupe {
namespace {

const int kSizes[] = {1, 2, 3, 4, 8};

// Runs body(comm, rank) on one thread per rank; returns each rank's exception message ("" when none).
std::vector<std::string> run_ranks(int size, const std::function<void(communicator&, int)>& body) {
  auto comms = make_thread_communicators(size);
  std::vector<std::string> errors(size);
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r)
    threads.emplace_back([&, r] {
      try {
        body(*comms[r], r);
      } catch (const std::invalid_argument& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  return errors;
}

std::vector<float> random_values(int64_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-10.0f, 10.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

void expect_bitwise_equal(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
}

TEST(thread_communicator, reports_its_rank_and_size) {
  auto comms = make_thread_communicators(3);
  ASSERT_EQ(comms.size(), 3u);
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(comms[r]->rank(), r);
    EXPECT_EQ(comms[r]->size(), 3);
  }
  EXPECT_THROW(make_thread_communicators(0), std::invalid_argument);
}

TEST(thread_communicator, all_reduce_sums_in_rank_order_bitwise_on_every_rank) {
  for (int size : kSizes) {
    const int64_t rows = 7, cols = 13;  // 91 elements: chunks of unequal length
    std::vector<std::vector<float>> data(size);
    for (int r = 0; r < size; ++r) data[r] = random_values(rows * cols, 100 + r);
    std::vector<float> want = data[0];
    for (int r = 1; r < size; ++r)
      for (size_t i = 0; i < want.size(); ++i) want[i] += data[r][i];

    auto errors = run_ranks(size, [&](communicator& comm, int r) {
      comm.all_reduce_sum(tensor(data[r].data(), dtype::f32, {rows, cols}));
    });
    for (int r = 0; r < size; ++r) {
      SCOPED_TRACE("size " + std::to_string(size) + " rank " + std::to_string(r));
      EXPECT_EQ(errors[r], "");
      expect_bitwise_equal(data[r], want);
    }
  }
}

TEST(thread_communicator, all_reduce_of_bf16_and_f16_rounds_the_f32_sum_in_rank_order_once) {
  struct format {
    dtype type;
    uint16_t (*from_f32)(float);
    float (*to_f32)(uint16_t);
  };
  for (format f : {format{dtype::bf16, f32_to_bf16, bf16_to_f32}, format{dtype::f16, f32_to_f16, f16_to_f32}}) {
    for (int size : kSizes) {
      std::vector<std::vector<uint16_t>> data(size);
      for (int r = 0; r < size; ++r)
        for (float v : random_values(10, 7 + r)) data[r].push_back(f.from_f32(v));
      std::vector<uint16_t> want(10);
      for (size_t i = 0; i < want.size(); ++i) {
        float acc = f.to_f32(data[0][i]);
        for (int r = 1; r < size; ++r) acc += f.to_f32(data[r][i]);
        want[i] = f.from_f32(acc);
      }
      run_ranks(size, [&](communicator& comm, int r) {
        comm.all_reduce_sum(tensor(data[r].data(), f.type, {2, 5}));
      });
      for (int r = 0; r < size; ++r) EXPECT_EQ(data[r], want) << name(f.type) << " size " << size << " rank " << r;
    }
  }
}

TEST(thread_communicator, all_reduce_gives_the_same_bits_on_a_rerun) {
  auto once = [] {
    std::vector<std::vector<float>> data(8);
    for (int r = 0; r < 8; ++r) data[r] = random_values(33, 50 + r);
    run_ranks(8, [&](communicator& comm, int r) { comm.all_reduce_sum(tensor(data[r].data(), dtype::f32, {3, 11})); });
    return data[5];
  };
  expect_bitwise_equal(once(), once());
}

TEST(thread_communicator, all_gather_concatenates_the_last_dimension_in_rank_order) {
  for (int size : kSizes) {
    const int64_t rows = 3, cols = 4;  // logits [rows, V/N] -> [rows, V]
    std::vector<std::vector<float>> in(size), out(size, std::vector<float>(rows * cols * size, -1.0f));
    for (int r = 0; r < size; ++r) in[r] = random_values(rows * cols, 200 + r);

    auto errors = run_ranks(size, [&](communicator& comm, int r) {
      comm.all_gather_last_dim(tensor(in[r].data(), dtype::f32, {rows, cols}),
                               tensor(out[r].data(), dtype::f32, {rows, cols * size}));
    });
    std::vector<float> want;
    for (int64_t row = 0; row < rows; ++row)
      for (int r = 0; r < size; ++r) want.insert(want.end(), in[r].begin() + row * cols, in[r].begin() + (row + 1) * cols);
    for (int r = 0; r < size; ++r) {
      SCOPED_TRACE("size " + std::to_string(size) + " rank " + std::to_string(r));
      EXPECT_EQ(errors[r], "");
      expect_bitwise_equal(out[r], want);
    }
  }
}

TEST(thread_communicator, all_gather_copies_16_bit_elements_whole) {
  std::vector<std::vector<uint16_t>> in = {{1, 2}, {3, 4}}, out(2, std::vector<uint16_t>(4));
  run_ranks(2, [&](communicator& comm, int r) {
    comm.all_gather_last_dim(tensor(in[r].data(), dtype::bf16, {1, 2}), tensor(out[r].data(), dtype::bf16, {1, 4}));
  });
  EXPECT_EQ(out[0], (std::vector<uint16_t>{1, 2, 3, 4}));
  EXPECT_EQ(out[1], (std::vector<uint16_t>{1, 2, 3, 4}));
}

TEST(thread_communicator, broadcast_copies_the_roots_tensor_to_every_rank_from_each_root) {
  for (int size : kSizes) {
    for (int root = 0; root < size; ++root) {
      std::vector<std::vector<float>> data(size);
      for (int r = 0; r < size; ++r) data[r] = random_values(6, 300 + 10 * root + r);
      const std::vector<float> want = data[root];
      auto errors = run_ranks(size, [&](communicator& comm, int r) {
        comm.broadcast(tensor(data[r].data(), dtype::f32, {2, 3}), root);
      });
      for (int r = 0; r < size; ++r) {
        SCOPED_TRACE("size " + std::to_string(size) + " root " + std::to_string(root) + " rank " + std::to_string(r));
        EXPECT_EQ(errors[r], "");
        expect_bitwise_equal(data[r], want);
      }
    }
  }
}

TEST(thread_communicator, collectives_on_zero_rows_return_on_every_rank) {
  for (int size : kSizes) {
    auto errors = run_ranks(size, [&](communicator& comm, int) {
      float unused = 0;
      comm.all_reduce_sum(tensor(&unused, dtype::f32, {0, 5}));
      comm.all_gather_last_dim(tensor(&unused, dtype::f32, {0, 5}), tensor(&unused, dtype::f32, {0, 5 * size}));
      comm.broadcast(tensor(nullptr, dtype::f32, {0, 5}), size - 1);
    });
    for (int r = 0; r < size; ++r) EXPECT_EQ(errors[r], "") << "size " << size << " rank " << r;
  }
}

TEST(thread_communicator, a_thousand_small_collectives_in_a_row_stay_in_step) {
  const int size = 4;
  std::vector<int> wrong(size, 0);
  run_ranks(size, [&](communicator& comm, int r) {
    for (int step = 0; step < 1000; ++step) {
      float x[2] = {float(r + step), float(r)};
      comm.all_reduce_sum(tensor(x, dtype::f32, {1, 2}));  // sum of r over ranks = 6
      if (x[0] != float(6 + size * step) || x[1] != 6.0f) ++wrong[r];
      float gathered[size];
      float mine = float(step * 10 + r);
      comm.all_gather_last_dim(tensor(&mine, dtype::f32, {1, 1}), tensor(gathered, dtype::f32, {1, size}));
      for (int c = 0; c < size; ++c)
        if (gathered[c] != float(step * 10 + c)) ++wrong[r];
      float b = float(r == step % size ? step : -1);
      comm.broadcast(tensor(&b, dtype::f32, {1}), step % size);
      if (b != float(step)) ++wrong[r];
    }
  });
  EXPECT_EQ(wrong, std::vector<int>(size, 0));
}

TEST(thread_communicator, mismatched_row_counts_throw_on_every_rank_and_the_group_stays_usable) {
  for (int size : {2, 3, 4, 8}) {
    std::vector<float> after(size);
    auto errors = run_ranks(size, [&](communicator& comm, int r) {
      std::vector<float> x(10, 1.0f);
      try {
        comm.all_reduce_sum(tensor(x.data(), dtype::f32, {r == size - 1 ? 1 : 2, 5}));
      } catch (const std::invalid_argument&) {
        float one = 1.0f;
        comm.all_reduce_sum(tensor(&one, dtype::f32, {1}));
        after[r] = one;
        throw;
      }
    });
    for (int r = 0; r < size; ++r) {
      EXPECT_EQ(errors[r], "all_reduce_sum: rank 0 has [2, 5] F32 but rank " + std::to_string(size - 1) +
                               " has [1, 5] F32: every rank must pass the same shape and dtype");
      EXPECT_EQ(after[r], float(size));
    }
  }
}

TEST(thread_communicator, disagreements_and_bad_arguments_throw_on_every_rank) {
  auto expect_all_throw = [](int size, const std::function<void(communicator&, int)>& body, const std::string& want) {
    auto errors = run_ranks(size, body);
    for (int r = 0; r < size; ++r) EXPECT_EQ(errors[r], want) << "rank " << r;
  };
  float a[4] = {}, b[8] = {};
  std::vector<std::vector<float>> own(3, std::vector<float>(8));
  expect_all_throw(
      2, [&](communicator& c, int r) { c.broadcast(tensor(own[r].data(), dtype::f32, {4}), r); },
      "broadcast: rank 0 names root 0 but rank 1 names root 1");
  expect_all_throw(
      2, [&](communicator& c, int r) { c.broadcast(tensor(own[r].data(), dtype::f32, {4}), 2); },
      "broadcast: root 2 is not a rank of a group of 2");
  expect_all_throw(
      2, [&](communicator& c, int r) { c.all_reduce_sum(tensor(own[r].data(), r ? dtype::bf16 : dtype::f32, {4})); },
      "all_reduce_sum: rank 0 has [4] F32 but rank 1 has [4] BF16: every rank must pass the same shape and dtype");
  expect_all_throw(
      1, [&](communicator& c, int) { c.all_reduce_sum(tensor(a, dtype::i32, {4})); },
      "all_reduce_sum sums F32, BF16 or F16, not I32");
  expect_all_throw(
      3,
      [&](communicator& c, int r) {
        if (r == 1) c.broadcast(tensor(own[r].data(), dtype::f32, {4}), 0);
        else c.all_reduce_sum(tensor(own[r].data(), dtype::f32, {4}));
      },
      "all_reduce_sum on rank 0 met broadcast on rank 1: every rank must call the same collective");
  expect_all_throw(
      2,
      [&](communicator& c, int r) {
        c.all_gather_last_dim(tensor(own[r].data(), dtype::f32, {2, 2}), tensor(r ? b : a, dtype::f32, {r ? 2 : 1, 4}));
      },
      "all_gather_last_dim: rank 0 gathers [2, 2] F32 into [1, 4] F32; the output must be [2, 4] F32 (the last "
      "dimension times 2)");
  expect_all_throw(
      2,
      [&](communicator& c, int r) {
        c.all_gather_last_dim(tensor(own[r].data() + 2, dtype::f32, {1, 2}), tensor(own[r].data(), dtype::f32, {1, 4}));
      },
      "all_gather_last_dim: rank 0's output overlaps its input");
}

} // namespace
} // namespace troupe
