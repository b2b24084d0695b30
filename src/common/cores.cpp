// available_cores: in mmb_core (no libtorch), so world generation sizes its pool by it too.
#include <sched.h>

#include <algorithm>
#include <thread>

#include "mmb/threads.h"

namespace mmb {

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, int(std::thread::hardware_concurrency()));
}

}  // namespace mmb
