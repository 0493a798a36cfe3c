// Submits 100 jobs to a running troupe server through the native client API, cancels 10 of them, and
// waits for the rest. Exits 0 when 90 jobs completed, 10 were cancelled, and the server's KV block pool
// is back to its starting count.
//
//   troupe serve --api-key KEY &
//   client_jobs 127.0.0.1 8001 --api-key KEY     (--api-key: when the server was given one)

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <troupe/client.hpp>

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  troupe::client_options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--api-key" && i + 1 < argc) options.api_key = argv[++i];
    else positional.push_back(arg);
  }
  const std::string host = positional.size() > 0 ? positional[0] : "127.0.0.1";
  const auto port = static_cast<uint16_t>(positional.size() > 1 ? std::atoi(positional[1].c_str()) : 8001);
  try {
    auto c = troupe::client::connect(host, port, options);
    const troupe::server_stats before = c->stats();

    std::vector<uint64_t> ids;
    for (int i = 0; i < 100; ++i) {
      troupe::job j;
      j.prompt = "Job number " + std::to_string(i) + ": tell me a story.";
      j.max_tokens = 256;  // long enough that the cancelled ones are still running when cancelled
      j.ignore_eos = true;
      j.seed = static_cast<uint64_t>(i);
      ids.push_back(c->submit(j));
    }
    for (int i = 90; i < 100; ++i) c->cancel(ids[i]);

    int completed = 0, cancelled = 0, other = 0;
    size_t tokens = 0;
    for (uint64_t id : ids) {
      const troupe::job_result r = c->wait(id);
      tokens += r.token_ids.size();
      if (r.finish_reason == "length" && r.token_ids.size() == 256) ++completed;
      else if (r.finish_reason == "abort") ++cancelled;
      else ++other;
    }
    const troupe::server_stats after = c->stats();
    std::printf("completed %d, cancelled %d, other %d, tokens %zu\n", completed, cancelled, other, tokens);
    std::printf("free KV blocks before %d, after %d (of %d)\n", before.num_free_blocks, after.num_free_blocks,
                after.num_blocks);
    const bool ok = completed == 90 && cancelled == 10 && other == 0 && after.num_running == 0 &&
                    after.num_free_blocks == before.num_free_blocks;
    std::printf("%s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "client_jobs: %s\n", e.what());
    return 2;
  }
}
