#pragma once
// Chooses a compute backend by name, so that actors/ and launch/ never include a backend's header (the
// CUDA one would bring CUDA's headers with it).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kernels/ops.hpp"

namespace troupe {

// The backends this build has: "cpu", and "cuda" when built with CUDA.
std::vector<std::string> available_backends();

// Makes the backend called `name`, on GPU `device` for "cuda". Throws user_error for a name this build
// lacks, and for "cuda" when no usable GPU is found.
std::unique_ptr<ops> make_backend(const std::string& name, int device = 0);

// The GPUs the backend called `name` can use on this machine: 0 for "cpu" and "null", and for "cuda"
// when there is none or this build has no CUDA.
int device_count(const std::string& name);

// The dtype of weights and activations for --dtype (auto, bfloat16, float16, float32; also bf16, fp16,
// half, fp32, float): auto is bf16 on CUDA and f32 on the CPU, which computes only in f32. Throws
// user_error for anything else.
dtype activation_dtype(const std::string& backend, const std::string& requested);

// Free and total bytes of a GPU backend's device memory; nullopt for a host backend.
std::optional<std::pair<int64_t, int64_t>> device_memory(const ops& backend);

} // namespace troupe
