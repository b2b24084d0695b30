# mmb — top-level entry points. `make demo` and `make test` work on a fresh Debian 12 machine:
# both install what is missing (scripts/setup), build (Release, Ninja) and run.
BUILD ?= build
JOBS ?= $(shell nproc)
GENERATOR := $(shell command -v ninja >/dev/null 2>&1 && echo Ninja || echo "Unix Makefiles")
DEMO_OUT ?= runs/demo
# FROM_SCRATCH=1: `make demo` trains the base model (configs/base.toml) instead of starting from models/base
FROM_SCRATCH ?= 0

.PHONY: all setup configure build test demo bench format-check clean test-sanitize fuzz-smoke fuzz

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

# Sanitizer and fuzz builds (docs/reliability.md): clang, AddressSanitizer + UndefinedBehaviorSanitizer
# and libFuzzer's coverage, in their own build directory. Not part of `make test`.
SAN_BUILD ?= build-asan
FUZZ_SECONDS ?= 30
FUZZ_JOBS ?= $(JOBS)
FUZZ_TARGETS ?= safetensors checkpoint_index model_config jsonl prefs image tokenizer verifier sentences chat_template toml_config
export ASAN_OPTIONS ?= detect_leaks=1:alloc_dealloc_mismatch=0:abort_on_error=1:detect_stack_use_after_return=0
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS ?= suppressions=$(CURDIR)/tests/sanitizers/lsan.supp:print_suppressions=0

$(SAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(SAN_BUILD) -G "$(GENERATOR)" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ \
	  -DMMB_SANITIZE=ON -DMMB_BUILD_FUZZ=ON -DMMB_BUILD_BENCH=OFF

test-sanitize: setup $(SAN_BUILD)/CMakeCache.txt
	cmake --build $(SAN_BUILD) -j $(JOBS)
	cd $(SAN_BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 3000

# Each fuzz target for FUZZ_SECONDS on a scratch copy of its seed corpus (tests/fuzz/corpus/NAME).
fuzz-smoke: setup $(SAN_BUILD)/CMakeCache.txt
	cmake --build $(SAN_BUILD) -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	FUZZ_JOBS=$(FUZZ_JOBS) scripts/fuzz $(SAN_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz: FUZZ_SECONDS = 600
fuzz: fuzz-smoke

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
