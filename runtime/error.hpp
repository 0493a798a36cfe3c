#pragma once
// runtime/: the engine's decisions as plain C++ (no CAF, no CUDA), one folder and one library per
// subsystem (runtime/CMakeLists.txt): tokenizer/, chat/, metrics/, model/, engine/, openai/, gateway/. This
// file is their common base: every subsystem may include it, and it includes only the standard library.
//
// Errors a user can act on: a bad flag, a bad checkpoint, a bad request.
// They carry the whole message; the edge (main, the gateway) reports them once.

#include <stdexcept>
#include <string>

namespace troupe {

class user_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// A checkpoint that cannot be used: the message names the file and, where known, the tensor.
class checkpoint_error : public user_error {
public:
  using user_error::user_error;
};

} // namespace troupe
