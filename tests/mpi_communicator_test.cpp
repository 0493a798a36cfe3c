// The MPI communicator, run by ctest under `mpirun -np 2` and `mpirun -np 4` (tests/CMakeLists.txt): every
// collective gives the bits the thread communicator gives for the same inputs, disagreements throw on every
// rank and leave the group usable, and the session's startup exchanges carry every rank's bytes. Every rank
// runs every test; rank 0 prints gtest's report, the others only their failures, and a failure on any rank
// fails mpirun's exit code.
#include "kernels/cpu/mpi_communicator.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <iostream>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/cpu/thread_communicator.hpp"

namespace troupe {
namespace {

mpi_session* session = nullptr;  // made by main, before any test

std::vector<float> random_values(int64_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-10.0f, 10.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen) * (seed % 3 == 0 ? 1e-3f : 1.0f);  // magnitudes apart, so order shows in the bits
  return v;
}

// Rank r's input for a test, the same in every process: values from seed + r, in `type` (f32, bf16 or f16).
std::vector<uint16_t> as_16_bit(const std::vector<float>& v, dtype type) {
  std::vector<uint16_t> bits;
  for (float x : v) bits.push_back(type == dtype::bf16 ? f32_to_bf16(x) : f32_to_f16(x));
  return bits;
}

// The result of body(comm, rank) on each rank of a thread communicator of `size` ranks, run in this process.
void run_thread_ranks(int size, const std::function<void(communicator&, int)>& body) {
  auto comms = make_thread_communicators(size);
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) threads.emplace_back([&, r] { body(*comms[r], r); });
  for (auto& t : threads) t.join();
}

// The message this rank's call threw with std::invalid_argument ("" when it returned).
std::string error_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(mpi_communicator, reports_the_jobs_rank_and_size) {
  auto comm = session->make_world_communicator();
  EXPECT_EQ(comm->rank(), session->rank());
  EXPECT_EQ(comm->size(), session->size());
  EXPECT_GE(session->size(), 2);
  // ctest starts every rank on this machine.
  EXPECT_EQ(session->local_rank(), session->rank());
  EXPECT_EQ(session->local_size(), session->size());
  EXPECT_TRUE(session->multiple_threads());  // Open MPI 4.1 gives MPI_THREAD_MULTIPLE
}

TEST(mpi_communicator, all_reduce_in_f32_gives_the_thread_communicators_bits_and_the_rank_order_sum) {
  auto comm = session->make_world_communicator();
  const int size = comm->size(), me = comm->rank();
  // Each rank sums one chunk: 91 elements make chunks of unequal length, 3 leave a rank of 4 without one.
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{7, 13}, {1, 3}}) {
    SCOPED_TRACE("[" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
    std::vector<std::vector<float>> data(size);
    for (int r = 0; r < size; ++r) data[r] = random_values(rows * cols, 100 + r);

    std::vector<float> serial = data[0], reversed = data[size - 1];
    for (int r = 1; r < size; ++r)
      for (size_t i = 0; i < serial.size(); ++i) {
        serial[i] += data[r][i];
        reversed[i] += data[size - 1 - r][i];
      }
    if (size >= 3 && rows > 1) {
      EXPECT_NE(serial, reversed) << "the inputs should tell rank order from reverse order";
    }

    std::vector<std::vector<float>> threads = data;
    run_thread_ranks(size, [&](communicator& c, int r) { c.all_reduce_sum(tensor(threads[r].data(), dtype::f32, {rows, cols})); });

    std::vector<float> mine = data[me];
    comm->all_reduce_sum(tensor(mine.data(), dtype::f32, {rows, cols}));
    EXPECT_EQ(std::memcmp(mine.data(), serial.data(), mine.size() * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(mine.data(), threads[me].data(), mine.size() * sizeof(float)), 0);
  }
}

TEST(mpi_communicator, all_reduce_of_bf16_and_f16_rounds_the_f32_sum_in_rank_order_once_as_threads_do) {
  auto comm = session->make_world_communicator();
  const int size = comm->size(), me = comm->rank();
  struct format {
    dtype type;
    uint16_t (*from_f32)(float);
    float (*to_f32)(uint16_t);
  };
  for (format f : {format{dtype::bf16, f32_to_bf16, bf16_to_f32}, format{dtype::f16, f32_to_f16, f16_to_f32}}) {
    SCOPED_TRACE(std::string(name(f.type)));
    std::vector<std::vector<uint16_t>> data(size);
    for (int r = 0; r < size; ++r) data[r] = as_16_bit(random_values(10, 7 + r), f.type);
    std::vector<uint16_t> serial(10), rounded_each_step(10);
    for (size_t i = 0; i < serial.size(); ++i) {
      float acc = f.to_f32(data[0][i]);
      uint16_t step = data[0][i];
      for (int r = 1; r < size; ++r) {
        acc += f.to_f32(data[r][i]);
        step = f.from_f32(f.to_f32(step) + f.to_f32(data[r][i]));
      }
      serial[i] = f.from_f32(acc);
      rounded_each_step[i] = step;
    }
    if (size >= 3) {
      EXPECT_NE(serial, rounded_each_step) << "the inputs should tell one rounding from several";
    }

    std::vector<std::vector<uint16_t>> threads = data;
    run_thread_ranks(size, [&](communicator& c, int r) { c.all_reduce_sum(tensor(threads[r].data(), f.type, {2, 5})); });

    std::vector<uint16_t> mine = data[me];
    comm->all_reduce_sum(tensor(mine.data(), f.type, {2, 5}));
    EXPECT_EQ(mine, serial);
    EXPECT_EQ(mine, threads[me]);
  }
}

TEST(mpi_communicator, all_gather_concatenates_the_last_dimension_in_rank_order_for_one_row_and_several) {
  auto comm = session->make_world_communicator();
  const int size = comm->size(), me = comm->rank();
  for (int64_t rows : {1, 3}) {
    SCOPED_TRACE("rows " + std::to_string(rows));
    const int64_t cols = 4;  // logits [rows, V/N] -> [rows, V]
    std::vector<std::vector<float>> in(size);
    for (int r = 0; r < size; ++r) in[r] = random_values(rows * cols, 200 + r);
    std::vector<float> want;
    for (int64_t row = 0; row < rows; ++row)
      for (int r = 0; r < size; ++r) want.insert(want.end(), in[r].begin() + row * cols, in[r].begin() + (row + 1) * cols);

    std::vector<float> out(rows * cols * size, -1.0f);
    comm->all_gather_last_dim(tensor(in[me].data(), dtype::f32, {rows, cols}), tensor(out.data(), dtype::f32, {rows, cols * size}));
    EXPECT_EQ(out, want);
  }
}

TEST(mpi_communicator, all_gather_copies_16_bit_elements_whole) {
  auto comm = session->make_world_communicator();
  const int size = comm->size(), me = comm->rank();
  std::vector<uint16_t> in = {uint16_t(2 * me + 1), uint16_t(2 * me + 2)}, out(2 * size);
  comm->all_gather_last_dim(tensor(in.data(), dtype::bf16, {1, 2}), tensor(out.data(), dtype::bf16, {1, 2 * size}));
  for (int i = 0; i < 2 * size; ++i) EXPECT_EQ(out[i], i + 1);
}

TEST(mpi_communicator, broadcast_copies_the_roots_tensor_to_every_rank_from_each_root) {
  auto comm = session->make_world_communicator();
  const int size = comm->size(), me = comm->rank();
  for (int root = size - 1; root >= 0; --root) {  // the non-zero roots first
    SCOPED_TRACE("root " + std::to_string(root));
    std::vector<float> mine = random_values(6, 300 + 10 * root + me);
    comm->broadcast(tensor(mine.data(), dtype::f32, {2, 3}), root);
    EXPECT_EQ(mine, random_values(6, 300 + 10 * root + root));
  }
}

TEST(mpi_communicator, collectives_on_zero_rows_return_on_every_rank) {
  auto comm = session->make_world_communicator();
  const int size = comm->size();
  float unused = 0;
  EXPECT_EQ(error_of([&] { comm->all_reduce_sum(tensor(&unused, dtype::f32, {0, 5})); }), "");
  EXPECT_EQ(error_of([&] {
              comm->all_gather_last_dim(tensor(&unused, dtype::f32, {0, 5}), tensor(&unused, dtype::f32, {0, 5 * size}));
            }), "");
  EXPECT_EQ(error_of([&] { comm->broadcast(tensor(nullptr, dtype::f32, {0, 5}), size - 1); }), "");
  float one = 1.0f;
  comm->all_reduce_sum(tensor(&one, dtype::f32, {1}));
  EXPECT_EQ(one, float(size));
}

TEST(mpi_communicator, a_thousand_small_collectives_in_a_row_stay_in_step) {
  auto comm = session->make_world_communicator();
  const int size = comm->size(), r = comm->rank();
  const float rank_sum = float(size * (size - 1) / 2);
  int wrong = 0;
  std::vector<float> gathered(size);
  for (int step = 0; step < 1000; ++step) {
    float x[2] = {float(r + step), float(r)};
    comm->all_reduce_sum(tensor(x, dtype::f32, {1, 2}));
    if (x[0] != rank_sum + float(size * step) || x[1] != rank_sum) ++wrong;
    float mine = float(step * 10 + r);
    comm->all_gather_last_dim(tensor(&mine, dtype::f32, {1, 1}), tensor(gathered.data(), dtype::f32, {1, size}));
    for (int c = 0; c < size; ++c)
      if (gathered[c] != float(step * 10 + c)) ++wrong;
    float b = float(r == step % size ? step : -1);
    comm->broadcast(tensor(&b, dtype::f32, {1}), step % size);
    if (b != float(step)) ++wrong;
  }
  EXPECT_EQ(wrong, 0);
}

TEST(mpi_communicator, mismatched_row_counts_throw_on_every_rank_and_the_next_collective_still_works) {
  auto comm = session->make_world_communicator();
  const int size = comm->size(), r = comm->rank();
  std::vector<float> x(10, 1.0f);
  EXPECT_EQ(error_of([&] { comm->all_reduce_sum(tensor(x.data(), dtype::f32, {r == size - 1 ? 1 : 2, 5})); }),
            "all_reduce_sum: rank 0 has [2, 5] F32 but rank " + std::to_string(size - 1) +
                " has [1, 5] F32: every rank must pass the same shape and dtype");
  EXPECT_EQ(x, std::vector<float>(10, 1.0f));  // untouched
  float one = 1.0f;
  comm->all_reduce_sum(tensor(&one, dtype::f32, {1}));
  EXPECT_EQ(one, float(size));
}

TEST(mpi_communicator, disagreements_and_bad_arguments_throw_on_every_rank) {
  auto comm = session->make_world_communicator();
  const int size = comm->size(), r = comm->rank();
  std::vector<float> own(8), a(4 * size), b(8 * size);
  EXPECT_EQ(error_of([&] { comm->broadcast(tensor(own.data(), dtype::f32, {4}), r); }),
            "broadcast: rank 0 names root 0 but rank 1 names root 1");
  EXPECT_EQ(error_of([&] { comm->broadcast(tensor(own.data(), dtype::f32, {4}), size); }),
            "broadcast: root " + std::to_string(size) + " is not a rank of a group of " + std::to_string(size));
  EXPECT_EQ(error_of([&] { comm->all_reduce_sum(tensor(own.data(), r ? dtype::bf16 : dtype::f32, {4})); }),
            "all_reduce_sum: rank 0 has [4] F32 but rank 1 has [4] BF16: every rank must pass the same shape and dtype");
  EXPECT_EQ(error_of([&] { comm->all_reduce_sum(tensor(own.data(), dtype::i32, {4})); }),
            "all_reduce_sum sums F32, BF16 or F16, not I32");
  EXPECT_EQ(error_of([&] {
              if (r == 1) comm->broadcast(tensor(own.data(), dtype::f32, {4}), 0);
              else comm->all_reduce_sum(tensor(own.data(), dtype::f32, {4}));
            }),
            "all_reduce_sum on rank 0 met broadcast on rank 1: every rank must call the same collective");
  EXPECT_EQ(error_of([&] {
              comm->all_gather_last_dim(tensor(own.data(), dtype::f32, {2, 2}),
                                        tensor(r ? b.data() : a.data(), dtype::f32, {r ? 2 : 1, 2 * size}));
            }),
            "all_gather_last_dim: rank 0 gathers [2, 2] F32 into [1, " + std::to_string(2 * size) +
                "] F32; the output must be [2, " + std::to_string(2 * size) + "] F32 (the last dimension times " +
                std::to_string(size) + ")");
  // Only the last rank's output overlaps its input: the others learn it from the exchange.
  EXPECT_EQ(error_of([&] {
              float* in = r == size - 1 ? b.data() + 1 : own.data();
              comm->all_gather_last_dim(tensor(in, dtype::f32, {1, 2}), tensor(b.data(), dtype::f32, {1, 2 * size}));
            }),
            "all_gather_last_dim: rank " + std::to_string(size - 1) + "'s output overlaps its input");
  float one = 1.0f;
  comm->all_reduce_sum(tensor(&one, dtype::f32, {1}));
  EXPECT_EQ(one, float(size));
}

TEST(mpi_session, broadcast_bytes_gives_every_rank_the_roots_bytes_whatever_their_size_before) {
  const int root = session->size() - 1;
  std::vector<std::byte> bytes(session->rank() + 1, std::byte(session->rank()));  // sizes differ before
  session->broadcast_bytes(bytes, root);
  EXPECT_EQ(bytes, std::vector<std::byte>(root + 1, std::byte(root)));
  std::vector<std::byte> none = session->rank() == 0 ? std::vector<std::byte>{} : std::vector<std::byte>(3);
  session->broadcast_bytes(none, 0);
  EXPECT_TRUE(none.empty());
}

TEST(mpi_session, all_gather_string_returns_every_ranks_string_in_rank_order) {
  const int size = session->size(), r = session->rank();
  std::vector<std::string> want;
  for (int i = 0; i < size; ++i) want.push_back(i == 1 ? "" : "tcp://10.0.0." + std::to_string(i) + std::string(i, 'x'));
  EXPECT_EQ(session->all_gather_string(want[r]), want);
}

// Prints what failed on a rank other than 0, naming the rank (rank 0 prints gtest's whole report).
class failure_printer : public testing::EmptyTestEventListener {
public:
  explicit failure_printer(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& result) override {
    if (result.failed())
      std::cerr << "[rank " << rank_ << "] " << (result.file_name() ? result.file_name() : "?") << ":"
                << result.line_number() << ": " << result.summary() << std::endl;
  }

private:
  int rank_;
};

} // namespace
} // namespace troupe

int main(int argc, char** argv) {
  troupe::mpi_session mpi;
  troupe::session = &mpi;
  testing::InitGoogleTest(&argc, argv);
  if (mpi.rank() != 0) {
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new troupe::failure_printer(mpi.rank()));
  }
  return RUN_ALL_TESTS();
}
