#include "mmb/version.h"

namespace mmb {
const char* version() { return MMB_VERSION; }
const char* blas_path() { return MMB_BLAS_PATH; }
}  // namespace mmb
