# Convenience entry points; the build itself is Meson (see README.md).
BUILD ?= build
SAN_BUILD ?= build-sanitize
GCC_SAN_BUILD ?= build-sanitize-gcc
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/cuda/bin

# The sanitizer build's runtime options (docs/design.md §5.7). intercept_tls_get_addr=0: up to
# LLVM 16 the runtime's __tls_get_addr hook can take a glibc >= 2.25 TLS block for an old header
# by chance, and LeakSanitizer then dies at exit ("Tracer caught signal 11") with no leak to
# report; nothing here keeps pointers only in dlopen'ed TLS, which is all that tracking covers.
SAN_ENV := ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:intercept_tls_get_addr=0 \
           UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# Instrumented code runs a few times slower than the timeouts in tests/ were set for.
SAN_TIMEOUT_MULTIPLIER ?= 3

# $(call run-suites,BUILD_DIR,ENV,MESON_TEST_ARGS): every suite of a build, its log kept in
# BUILD_DIR/test-output.txt for tools/test-summary.sh; fails when meson test does.
run-suites = set -o pipefail; env $(2) meson test -C $(1) --print-errorlogs --num-processes 2 $(3) \
             2>&1 | tee $(1)/test-output.txt

.PHONY: all deps configure build build-command sanitize-build sanitize-gcc-build demo test test-sanitize check clean

all: build

deps:
	@tools/install-deps.sh

configure: deps
	@tools/configure.sh $(BUILD)
	@tools/cuda-header-deps.sh $(BUILD)

build: configure
	ninja -C $(BUILD)

# zotune alone, for the demo.
build-command: configure
	ninja -C $(BUILD) src/cli/zotune

# clang with ASan + UBSan, every test and the fuzz harnesses (tools/configure-sanitize.sh).
sanitize-build: deps
	@tools/configure-sanitize.sh $(SAN_BUILD)
	ninja -C $(SAN_BUILD)

# The library and the command under GCC's sanitizers, compiled, not run: GCC's instrumented
# -Werror build has warnings of its own.
sanitize-gcc-build: deps
	@tools/configure-sanitize.sh $(GCC_SAN_BUILD) gcc
	ninja -C $(GCC_SAN_BUILD)

# The main job.
# The build's output goes to out/build.log, so what the terminal shows is the fine-tune; a
# failed build prints the log's tail. Only the command is built (the tests, the benchmarks and
# the executor's copies of the CUDA kernels wait for `make build` or `make check`).
demo:
	@mkdir -p out; echo "building zotune (log: out/build.log) ..."; \
	 start=$$(date +%s); \
	 if ! $(MAKE) --no-print-directory build-command > out/build.log 2>&1; then \
	   tail -n 40 out/build.log; echo "build failed: see out/build.log"; exit 1; fi; \
	 echo "built in $$(( $$(date +%s) - start )) s"; echo
	@tools/demo.sh $(BUILD)

# The test suites; ends with "N passed, N failed, N skipped".
test: build
	@$(call run-suites,$(BUILD)); tools/test-summary.sh $(BUILD)/test-output.txt

# The same suites (and the fuzz harnesses' corpus runs) under ASan + UBSan; any report fails
# the test that triggered it. Ends with "N passed, N failed, N skipped".
test-sanitize: sanitize-build
	@$(call run-suites,$(SAN_BUILD),$(SAN_ENV),--timeout-multiplier $(SAN_TIMEOUT_MULTIPLIER)); \
	 tools/test-summary.sh $(SAN_BUILD)/test-output.txt

# make test, then make test-sanitize, whatever the first found; one closing line for both. The
# GCC sanitizer build is compiled first.
check: build sanitize-build sanitize-gcc-build
	@$(call run-suites,$(BUILD)); \
	 $(call run-suites,$(SAN_BUILD),$(SAN_ENV),--timeout-multiplier $(SAN_TIMEOUT_MULTIPLIER)); \
	 tools/test-summary.sh $(BUILD)/test-output.txt $(SAN_BUILD)/test-output.txt

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(GCC_SAN_BUILD)
