# Sanitizer and fuzzing builds (docs/reliability.md). Both stay out of `make test`:
#   MMB_SANITIZE=ON  every target compiles with AddressSanitizer + UndefinedBehaviorSanitizer
#                    (any UB report aborts the process), `make test-sanitize`;
#   MMB_BUILD_FUZZ=ON  the libFuzzer targets of tests/fuzz/ (clang only), `make fuzz-smoke`.
# With both, one build directory serves the sanitized test suite and the fuzzers: the code is
# also compiled with libFuzzer's coverage instrumentation, which the sanitizer runtime stubs
# out in programs without libFuzzer's main.
option(MMB_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
option(MMB_BUILD_FUZZ "Build the libFuzzer targets (clang)" OFF)

if(MMB_BUILD_FUZZ AND NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "MMB_BUILD_FUZZ needs clang (libFuzzer): configure with -DCMAKE_CXX_COMPILER=clang++")
endif()

if(MMB_SANITIZE OR MMB_BUILD_FUZZ)
  set(MMB_SANITIZER_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined
      -fno-omit-frame-pointer -g)
  add_compile_options(${MMB_SANITIZER_FLAGS})
  add_link_options(-fsanitize=address,undefined)
  if(MMB_BUILD_FUZZ)
    add_compile_options(-fsanitize=fuzzer-no-link)
  endif()
  message(STATUS "mmb: sanitized build (${MMB_SANITIZER_FLAGS})")
endif()
