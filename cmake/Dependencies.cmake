# Finds every dependency and checks that libtorch will multiply matrices with an optimised BLAS.
find_package(Threads REQUIRED)
find_package(Torch REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(tomlplusplus REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(SentencePiece REQUIRED IMPORTED_TARGET sentencepiece)

# CLI11 is header-only; Debian 12 ships no CMake config for it.
find_path(CLI11_INCLUDE_DIR CLI/CLI.hpp REQUIRED)
add_library(CLI11::CLI11 INTERFACE IMPORTED)
target_include_directories(CLI11::CLI11 INTERFACE ${CLI11_INCLUDE_DIR})

find_path(STB_INCLUDE_DIR stb_image.h PATH_SUFFIXES stb REQUIRED)

# TORCH_CXX_FLAGS is a string; split it for target_compile_options.
separate_arguments(TORCH_CXX_FLAGS_LIST UNIX_COMMAND "${TORCH_CXX_FLAGS}")

# OpenBLAS: linked directly so mmb can set its thread count (openblas_set_num_threads). Debian
# ships it built on pthreads (the default of the libblas.so.3 alternative) and on OpenMP
# (libopenblas0-openmp). libtorch runs its own ops on an OpenMP pool, so with the pthreads build
# two pools share the cores and only one can have them (docs/performance.md has the CLIP and SFT
# steps under each build). mmb's executables load the OpenMP build when it is installed: they
# link it by path and carry its directory as DT_RPATH, which also applies to libtorch's own
# libblas.so.3 / liblapack.so.3 (libtorch has no RUNPATH), so the process has one OpenBLAS.
set(MMB_OPENBLAS_OPENMP_DIR "/usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp")
option(MMB_OPENBLAS_OPENMP "Use OpenBLAS's OpenMP build when installed" ON)
if(MMB_OPENBLAS_OPENMP AND EXISTS "${MMB_OPENBLAS_OPENMP_DIR}/libopenblas.so.0")
  set(OPENBLAS_LIBRARY "${MMB_OPENBLAS_OPENMP_DIR}/libopenblas.so.0")
  set(MMB_BLAS_RPATH "${MMB_OPENBLAS_OPENMP_DIR}")
  message(STATUS "mmb: executables load OpenBLAS's OpenMP build from ${MMB_OPENBLAS_OPENMP_DIR}")
else()
  find_library(OPENBLAS_LIBRARY NAMES openblas REQUIRED)
  set(MMB_BLAS_RPATH "")
  message(STATUS "mmb: OpenBLAS ${OPENBLAS_LIBRARY} (install libopenblas0-openmp for one thread pool)")
endif()

# libtorch links libblas.so.3, which Debian's alternatives system points at OpenBLAS or at the
# reference BLAS (60x slower). Resolve the link and warn loudly on the reference one.
set(_blas_link "/usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/libblas.so.3")
if(EXISTS "${_blas_link}")
  get_filename_component(MMB_BLAS_REAL "${_blas_link}" REALPATH)
  if(MMB_BLAS_REAL MATCHES "openblas|blis|mkl|atlas")
    message(STATUS "mmb: the system's libblas.so.3 is ${MMB_BLAS_REAL}")
  else()
    message(WARNING
      "\n*** mmb: libblas.so.3 resolves to ${MMB_BLAS_REAL}, the REFERENCE BLAS. ***\n"
      "*** Matrix products will be ~60x slower. Install libopenblas-dev (scripts/setup)  ***\n"
      "*** or run: update-alternatives --config libblas.so.3-${CMAKE_LIBRARY_ARCHITECTURE} ***\n")
  endif()
else()
  set(MMB_BLAS_REAL "unknown")
  message(WARNING "mmb: cannot find ${_blas_link}; cannot check which BLAS libtorch uses")
endif()
if(MMB_BLAS_RPATH)
  set(MMB_BLAS_REAL "${MMB_BLAS_RPATH}/libblas.so.3")  # what the executables load (DT_RPATH above)
endif()

# Distributed training over c10d: Gloo on CPU when the headers are present.
set(MMB_TORCH_DEFS "")
if(EXISTS "/usr/include/torch/csrc/distributed/c10d/ProcessGroupGloo.hpp" OR
   EXISTS "${TORCH_INSTALL_PREFIX}/include/torch/csrc/distributed/c10d/ProcessGroupGloo.hpp")
  find_path(GLOO_INCLUDE_DIR gloo/config.h)
  if(GLOO_INCLUDE_DIR)
    list(APPEND MMB_TORCH_DEFS USE_C10D_GLOO)
    message(STATUS "mmb: c10d Gloo backend enabled")
  endif()
endif()
