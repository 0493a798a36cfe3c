#pragma once
// TEMPORARY: replaced by the safetensors work's dtype.hpp at merge.
#include <cstddef>
#include <string_view>
namespace troupe {
enum class dtype { f32, f16, bf16, i32, i64, u8, i8, f8_e4m3 };
}
