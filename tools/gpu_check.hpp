#pragma once
// Shared by the parts of troupe_gpu_check (tools/gpu_check*.cpp): the results table, the random
// source and the timer. NEEDS A GPU to run.

#include <functional>
#include <random>
#include <string>

#include "kernels/cuda/cuda_ops.hpp"

namespace gpu_check {

extern std::mt19937_64 rng;

// A checked result: passes when error <= tolerance (and is finite).
void report(std::string op, troupe::dtype t, std::string shape, double error, double tolerance, std::string note = {});
// A timing or a count that never fails.
void inform(std::string op, troupe::dtype t, std::string shape, std::string note);
// Median wall time of f over `reps` runs (after one warm-up), synchronizing after each.
double time_ms(troupe::cuda_ops& gpu, const std::function<void()>& f, int reps = 20);

// tools/gpu_check_sampling.cpp: the CUDA sample op against sample_cpu; quick keeps to small vocabularies.
void check_sampling(troupe::cuda_ops& gpu, bool quick);
// Sample op timings at 256 rows of Qwen2.5's 152,064-token vocabulary.
void time_sampling(troupe::cuda_ops& gpu);

} // namespace gpu_check
