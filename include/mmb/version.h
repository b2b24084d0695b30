// Build identity for --version and manifests.
#pragma once

namespace mmb {
const char* version();      // e.g. "0.1.0"
const char* git_commit();   // short hash, "-dirty" when built from a modified tree, or "unknown"
const char* blas_path();    // the BLAS library libblas.so.3 resolved to at configure time
}  // namespace mmb
