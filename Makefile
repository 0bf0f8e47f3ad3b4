# Quick start: `make demo` and `make test`. Both restore and build first.
DOTNET ?= dotnet
CONFIG ?= Release
export DOTNET_CLI_TELEMETRY_OPTOUT := 1
export DOTNET_NOLOGO := 1
export DOTNET_SKIP_FIRST_TIME_EXPERIENCE := 1

.PHONY: restore build test demo bench clean

restore:
	$(DOTNET) restore RlaifOnnx.sln

build: restore
	$(DOTNET) build RlaifOnnx.sln -c $(CONFIG) --no-restore

# Runs every test; the last line is the plain "N passed, N failed" summary.
test: build
	bash scripts/run-tests.sh $(CONFIG)

# Runs the pipeline on the embedded default (configs/demo/) into runs/demo.
demo: build
	bash scripts/demo.sh $(CONFIG)

# Benchmarks on this machine; writes bench/RESULTS.md.
bench: build
	$(DOTNET) run --project bench/RlaifOnnx.Bench -c $(CONFIG) --no-build -- --out bench/RESULTS.md

clean:
	$(DOTNET) clean RlaifOnnx.sln
	rm -rf runs
