# Convenience entry points; the build itself is Meson (see README.md).
BUILD ?= build
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/cuda/bin

.PHONY: all deps build demo test clean

all: build

deps:
	@tools/install-deps.sh

build: deps
	@tools/configure.sh $(BUILD)
	@tools/cuda-header-deps.sh $(BUILD)
	ninja -C $(BUILD)

# The main job.
demo: build
	tools/demo.sh $(BUILD)

# The test suites; ends with "N passed, N failed, N skipped".
test: build
	@set -o pipefail; meson test -C $(BUILD) --print-errorlogs --num-processes 2 2>&1 | tee $(BUILD)/test-output.txt; \
	 tools/test-summary.sh < $(BUILD)/test-output.txt

clean:
	rm -rf $(BUILD)
