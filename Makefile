# Quick start: `make demo` and `make test`. Both restore and build first.
DOTNET ?= dotnet
CONFIG ?= Release
export DOTNET_CLI_TELEMETRY_OPTOUT := 1
export DOTNET_NOLOGO := 1
export DOTNET_SKIP_FIRST_TIME_EXPERIENCE := 1

.PHONY: restore build test demo bench clean install publish sandbox-world sandbox-model

restore:
	$(DOTNET) restore RlaifOnnx.sln

build: restore
	$(DOTNET) build RlaifOnnx.sln -c $(CONFIG) --no-restore

# Installs the `rlaif` command as a .NET tool: globally (~/.dotnet/tools, on the PATH once that folder
# is), or into TOOL_PATH=DIR. The package holds this machine's native libraries only (RID, e.g. linux-x64).
TOOL_PATH ?=
RID ?= $(shell $(DOTNET) --info 2>/dev/null | awk '/ RID:/ {print $$2; exit}')
TOOL_WHERE = $(if $(TOOL_PATH),--tool-path $(TOOL_PATH),--global)
install: restore
	$(DOTNET) pack src/RlaifOnnx.Cli -c $(CONFIG) -o artifacts/packages -p:RuntimeIdentifier=$(RID) -p:SelfContained=false
	-@$(DOTNET) tool uninstall $(TOOL_WHERE) RlaifOnnx.Cli >/dev/null 2>&1
	$(DOTNET) tool install $(TOOL_WHERE) --no-cache --add-source artifacts/packages RlaifOnnx.Cli

# A self-contained single-file `rlaif` for linux-x64 in artifacts/publish: .NET, ASP.NET Core and the
# ONNX Runtime native libraries inside, so it serves (`rlaif serve`) on a machine without the SDK.
PUBLISH_RID ?= linux-x64
publish:
	$(DOTNET) publish src/RlaifOnnx.Cli -c $(CONFIG) -r $(PUBLISH_RID) --self-contained true -p:PublishSingleFile=true \
		-p:IncludeNativeLibrariesForSelfExtract=true -p:PackAsTool=false -o artifacts/publish
	@ls -l artifacts/publish/rlaif

# Runs every test; the last line is the plain "N passed, N failed" summary.
test: build
	bash scripts/run-tests.sh $(CONFIG)

RLAIF = $(DOTNET) src/RlaifOnnx.Cli/bin/$(CONFIG)/net10.0/rlaif.dll

# The whole pipeline in the sandbox world (configs/demo/pipeline.yaml, models/sandbox-base) into runs/demo;
# ends with the table of harmful compliance, refusals and benign accuracy per model. Rerunning resumes.
demo: build
	$(RLAIF) run --config configs/demo/pipeline.yaml

# The sandbox world's prompt sets, evaluation sets and checks (configs/demo/sandbox) from their seed.
sandbox-world: build
	$(RLAIF) sandbox world --out configs/demo/sandbox --seed 7

# Rebuilds models/sandbox-base from its seed: world and corpus, tokenizer and random weights, pretraining.
sandbox-model: build
	$(RLAIF) sandbox world --out configs/demo/sandbox --corpus runs/sandbox-model/corpus.jsonl --seed 7
	rm -rf runs/sandbox-model/random runs/sandbox-model/train
	$(RLAIF) model create --arch llama --out runs/sandbox-model/random --vocab-size 1536 --hidden-size 160 --layers 4 \
		--heads 4 --kv-heads 2 --max-positions 512 --seed 1 --tokenizer-corpus runs/sandbox-model/corpus.jsonl
	$(RLAIF) train-lm --config configs/sandbox-model/train.yaml
	rm -rf models/sandbox-base && cp -r runs/sandbox-model/train/model models/sandbox-base

# Benchmarks on this machine; writes bench/RESULTS.md. The training section trains a ~100M model (~5-10 GiB) and then
# the same model in PyTorch (bench/torch_train.py) when python3 has torch; on a shared machine pass
# BENCH_LOCK=FILE to run the whole bench under `flock FILE`, so two memory-heavy runs never overlap.
BENCH_LOCK ?=
bench: build
	$(if $(BENCH_LOCK),flock $(BENCH_LOCK)) $(DOTNET) run --project bench/RlaifOnnx.Bench -c $(CONFIG) --no-build -- --out bench/RESULTS.md

clean:
	$(DOTNET) clean RlaifOnnx.sln
	rm -rf runs artifacts
