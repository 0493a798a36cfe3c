// The custom all-reduce's host-side decisions (kernels/custom_all_reduce_rules.hpp): which sums take the kernel,
// its grid, the records ranks swap and the verdicts they reach, and the in-process exchange. The kernel itself
// needs GPUs: troupe_gpu_check --custom-all-reduce (tools/gpu_check_custom_all_reduce.cpp).

#include <gtest/gtest.h>
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cpu/thread_communicator.hpp"
#include "kernels/cuda/custom_all_reduce.hpp"
#include "kernels/custom_all_reduce_rules.hpp"

using namespace troupe;

namespace {

constexpr size_t kMiB = size_t{1} << 20;

std::string decode_error(const std::string& record) {
  try {
    decode_custom_all_reduce_peer(record);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

custom_all_reduce_peer sample_peer() {
  custom_all_reduce_peer p;
  p.host = "node-a/0b1c";
  p.process = "4242-9f";
  p.pci_bus_id = "0000:19:00.0";
  p.address = 0x7f00'0000'1000ull;
  for (size_t i = 0; i < p.ipc_handle.size(); ++i) p.ipc_handle[i] = static_cast<uint8_t>(i * 5);
  return p;
}

} // namespace

TEST(custom_all_reduce, takes_float_sums_that_fit_the_buffer_once_rounded_to_16_bytes) {
  EXPECT_TRUE(custom_all_reduce_takes(3584 * 2, dtype::bf16, 8 * kMiB));        // batch 1, hidden 3584
  EXPECT_TRUE(custom_all_reduce_takes(256 * 3584 * 2, dtype::bf16, 8 * kMiB));  // 256 rows: 1.75 MiB
  EXPECT_TRUE(custom_all_reduce_takes(8 * kMiB, dtype::f32, 8 * kMiB));         // the buffer exactly
  EXPECT_FALSE(custom_all_reduce_takes(8 * kMiB + 4, dtype::f32, 8 * kMiB));    // one element over
  EXPECT_TRUE(custom_all_reduce_takes(8 * kMiB - 2, dtype::f16, 8 * kMiB));     // rounds up to the buffer
  EXPECT_TRUE(custom_all_reduce_takes(2, dtype::bf16, 8 * kMiB));               // one element
  EXPECT_FALSE(custom_all_reduce_takes(0, dtype::bf16, 8 * kMiB));              // nothing to sum
  EXPECT_FALSE(custom_all_reduce_takes(16, dtype::i32, 8 * kMiB));              // not a float type
  EXPECT_TRUE(custom_all_reduce_takes(96, dtype::f32, 100));
  EXPECT_FALSE(custom_all_reduce_takes(98, dtype::f16, 100));  // 112 bytes of 16-byte units
}

TEST(custom_all_reduce, launches_a_block_per_512_units_up_to_the_cap_which_is_smaller_when_ranks_share_a_gpu) {
  EXPECT_EQ(custom_all_reduce_max_blocks(0, true), 16);
  EXPECT_EQ(custom_all_reduce_max_blocks(0, false), 36);
  EXPECT_EQ(custom_all_reduce_max_blocks(24, true), 24);
  EXPECT_EQ(custom_all_reduce_blocks(0, 16), 1);
  EXPECT_EQ(custom_all_reduce_blocks(3584 * 2, 16), 1);  // 448 units
  EXPECT_EQ(custom_all_reduce_blocks(3 * 512 * 16, 16), 3);
  EXPECT_EQ(custom_all_reduce_blocks(3 * 512 * 16 + 2, 16), 4);
  EXPECT_EQ(custom_all_reduce_blocks(256 * 3584 * 2, 16), 16);
  EXPECT_EQ(custom_all_reduce_blocks(256 * 3584 * 2, 36), 36);
}

TEST(custom_all_reduce, a_peer_record_reads_back_as_written) {
  const custom_all_reduce_peer p = sample_peer();
  const std::string record = encode_custom_all_reduce_peer(p);
  EXPECT_EQ(record.substr(0, record.find("\nipc ")),
            "custom_all_reduce 1\nhost node-a/0b1c\nprocess 4242-9f\npci 0000:19:00.0\naddress 139637976731648");
  const custom_all_reduce_peer q = decode_custom_all_reduce_peer(record);
  EXPECT_EQ(q.host, p.host);
  EXPECT_EQ(q.process, p.process);
  EXPECT_EQ(q.pci_bus_id, p.pci_bus_id);
  EXPECT_EQ(q.address, p.address);
  EXPECT_EQ(q.ipc_handle, p.ipc_handle);
}

TEST(custom_all_reduce, a_record_of_another_build_or_cut_short_is_refused_saying_what_is_wrong) {
  const std::string good = encode_custom_all_reduce_peer(sample_peer());
  EXPECT_EQ(decode_error("custom_all_reduce 2\n"),
            "a custom all-reduce peer record starts with 'custom_all_reduce 2', not 'custom_all_reduce 1' (are all "
            "ranks the same troupe build?)");
  EXPECT_EQ(decode_error(good.substr(0, good.find("ipc "))),
            "a custom all-reduce peer record lacks its ipc (are all ranks the same troupe build?)");
  std::string bad_address = good;
  bad_address.replace(bad_address.find("139637976731648"), 15, "0x10");
  EXPECT_EQ(decode_error(bad_address),
            "a custom all-reduce peer record has address '0x10', not a number (are all ranks the same troupe build?)");
  std::string short_handle = good;
  short_handle.erase(short_handle.size() - 3, 2);
  EXPECT_EQ(decode_error(short_handle), "a custom all-reduce peer record has an ipc handle of 126 hex digits, not 128 "
                                        "(are all ranks the same troupe build?)");
  std::string upper = good;
  upper[upper.find("\nipc ") + 5] = 'G';
  EXPECT_NE(decode_error(upper).find("not lowercase hex"), std::string::npos);
}

TEST(custom_all_reduce, ranks_on_other_hosts_are_out_of_reach_and_one_refusal_turns_it_off_for_the_group) {
  custom_all_reduce_peer a = sample_peer(), b = sample_peer();
  EXPECT_EQ(custom_all_reduce_host_refusal(a, b, 1), "");
  b.host = "node-b/77";
  EXPECT_EQ(custom_all_reduce_host_refusal(a, b, 1),
            "rank 1 runs on host node-b/77, this rank on node-a/0b1c: GPU memory is shared within one host only");
  EXPECT_EQ(custom_all_reduce_group_refusal({"", "", ""}), "");
  EXPECT_EQ(custom_all_reduce_group_refusal({"", "no peer access", "no IPC"}), "rank 1: no peer access");
}

TEST(custom_all_reduce, this_process_has_one_id_starting_with_its_pid) {
  const std::string id = custom_all_reduce_process_id();
  EXPECT_EQ(id, custom_all_reduce_process_id());
  EXPECT_EQ(id.substr(0, id.find('-')), std::to_string(getpid()));
  EXPECT_FALSE(custom_all_reduce_host_id().empty());
}

TEST(custom_all_reduce, ranks_in_one_process_swap_strings_in_rank_order_round_after_round) {
  in_process_exchange board(3);
  std::vector<std::vector<std::string>> first(3), second(3);
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r)
    threads.emplace_back([&, r] {
      const exchange_strings swap = board.for_rank(r);
      first[r] = swap("a" + std::to_string(r));
      second[r] = swap(r == 1 ? "" : "b" + std::to_string(r));
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(first[r], (std::vector<std::string>{"a0", "a1", "a2"}));
    EXPECT_EQ(second[r], (std::vector<std::string>{"b0", "", "b2"}));
  }
}

TEST(custom_all_reduce, turned_off_or_alone_it_hands_back_the_wrapped_communicator_without_any_exchange) {
  cpu_ops cpu;
  int exchanges = 0;
  const exchange_strings counted = [&](const std::string&) {
    ++exchanges;
    return std::vector<std::string>{};
  };
  custom_all_reduce_options off;
  off.enabled = false;
  auto pair = make_thread_communicators(2);
  communicator* rank_0 = pair[0].get();
  std::string why;
  std::unique_ptr<communicator> kept = make_custom_all_reduce(std::move(pair[0]), cpu, counted, off, &why);
  EXPECT_EQ(kept.get(), rank_0);
  EXPECT_EQ(why, "turned off (--disable-custom-all-reduce)");
  EXPECT_EQ(custom_all_reduce_calls(*kept), -1);

  auto alone = make_thread_communicators(1);
  communicator* only = alone[0].get();
  kept = make_custom_all_reduce(std::move(alone[0]), cpu, counted, custom_all_reduce_options{}, &why);
  EXPECT_EQ(kept.get(), only);
  EXPECT_EQ(why, "a group of one rank has nothing to sum");
  EXPECT_EQ(exchanges, 0);
}
