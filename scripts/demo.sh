#!/usr/bin/env bash
# `make demo`: runs what exists of the pipeline on the embedded default, from scratch into runs/demo.
set -euo pipefail
config=${1:-Release}
cd "$(dirname "$0")/.."
rlaif() { dotnet "src/RlaifOnnx.Cli/bin/$config/net10.0/rlaif.dll" "$@"; }
rm -rf runs/demo && mkdir -p runs/demo
echo "== demo: the full pipeline is not built yet; this runs the parts that exist."
rlaif --help
