# mmb — top-level entry points. `make demo` and `make test` work on a fresh Debian 12 machine:
# both install what is missing (scripts/setup), build (Release, Ninja) and run.
BUILD ?= build
JOBS ?= $(shell nproc)
GENERATOR := $(shell command -v ninja >/dev/null 2>&1 && echo Ninja || echo "Unix Makefiles")
DEMO_OUT ?= runs/demo
# FROM_SCRATCH=1: `make demo` trains the base model (configs/base.toml) instead of starting from models/base
FROM_SCRATCH ?= 0

.PHONY: all setup configure build test demo bench format-check clean

all: build

setup:
	@scripts/setup

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -G "$(GENERATOR)" -DCMAKE_BUILD_TYPE=Release

configure: setup $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The main job on the built-in world: from the shipped base model (models/base), the methods.
demo: build
	FROM_SCRATCH=$(FROM_SCRATCH) scripts/demo $(BUILD) $(DEMO_OUT)

bench: build
	@echo "benchmarks: see docs/performance.md for each command"

# Formatting is checked on the lines changed since FORMAT_BASE (default: the last commit), so the
# code is formatted as it is touched, never in one sweep that buries history.
FORMAT_BASE ?= HEAD
format-check:
	@out=$$(git clang-format --diff --extensions cpp,h,hpp $(FORMAT_BASE) -- app src include tests bench); \
	if [ -z "$$out" ] || echo "$$out" | grep -q "^no modified files to format\|did not modify any files"; then \
	  echo "format-check: clean"; \
	else echo "$$out"; echo "format-check: run 'git clang-format $(FORMAT_BASE)' to fix"; exit 1; fi

clean:
	rm -rf $(BUILD)
