#!/usr/bin/env bash
# Runs the test project and ends with the plain "N passed, N failed, N skipped" line.
set -uo pipefail
config=${1:-Release}
cd "$(dirname "$0")/.."
results=$(mktemp -d)
dotnet test tests/RlaifOnnx.Tests/RlaifOnnx.Tests.csproj -c "$config" --no-build \
  --logger "trx;LogFileName=tests.trx" --results-directory "$results" --logger "console;verbosity=normal" 2>&1 \
  | grep -vE '^\s*$'
status=${PIPESTATUS[0]}
trx="$results/tests.trx"
if [ -f "$trx" ]; then
  counters=$(grep -o '<Counters [^>]*>' "$trx")
  num() { sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p" <<<"$counters"; }
  passed=$(num passed); failed=$(num failed); total=$(num total); executed=$(num executed)
  skipped=$(( ${total:-0} - ${executed:-0} ))
  echo "${passed:-0} passed, ${failed:-0} failed, ${skipped} skipped"
fi
rm -rf "$results"
exit "$status"
