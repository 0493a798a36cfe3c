#pragma once
// For fuzz targets: an invariant the code under test promises. Breaking it is a bug, reported as a crash so the
// fuzzer keeps the input (and the replay test fails).

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: broken invariant: %s\n", __FILE__, __LINE__, #cond);   \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)
