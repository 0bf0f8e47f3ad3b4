#!/usr/bin/env bash
# A new user's first hour, as a test: clone the repository into a temporary folder with nothing beside it
# (no ../shared), install `rlaif` the way README says (into a temporary tool path), run `rlaif --help`,
# the README's first pipeline at its smallest size, and `--help` of every command README shows in a code
# block. Usage: tests/newcomer/newcomer.sh [REPO] — the repository to clone (default: this one's HEAD).
set -euo pipefail
repo=${1:-$(git -C "$(dirname "$0")" rev-parse --show-toplevel)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step() { printf '== %s\n' "$*"; }

step "clone into $work/clone (nothing beside it)"
git clone --quiet "$repo" "$work/clone"
cd "$work/clone"
[ ! -e ../shared ] || { echo "../shared exists beside the clone"; exit 1; }

step "make install TOOL_PATH=$work/tools"
make --no-print-directory install TOOL_PATH="$work/tools" > "$work/install.log" 2>&1 || { tail -n 30 "$work/install.log"; exit 1; }
export PATH="$work/tools:$PATH"
command -v rlaif > /dev/null || { echo "rlaif is not on the PATH after make install"; exit 1; }

step "rlaif --help"
rlaif --help > /dev/null

step "README: the first pipeline at its smallest size"
rlaif model create --arch llama --out models/tiny-llama > /dev/null
rlaif run --config configs/stages/pipeline.yaml --set steps=2 --set iterations=1 --set limit=12 > "$work/run.log" 2>&1 \
  || { tail -n 20 "$work/run.log"; exit 1; }
grep -q '^== done: 9 stages' "$work/run.log" || { tail -n 20 "$work/run.log"; exit 1; }
[ -f runs/stages/07_evaluate/report.json ] || { echo "no evaluation report"; exit 1; }

step "README: every command in a code block parses (--help exits 0)"
checked=0
while IFS= read -r words; do
  if ! rlaif $words --help > /dev/null 2>&1; then echo "rlaif $words --help failed"; exit 1; fi
  checked=$((checked + 1))
done < <(awk '/^```/ { inside = !inside; next } inside' README.md \
  | sed -n 's/^[[:space:]]*rlaif \(.*\)$/\1/p' \
  | awk '{ out = ""; for (i = 1; i <= NF && $i ~ /^[a-z][a-z-]*$/; i++) out = out (out == "" ? "" : " ") $i; print out }' \
  | sort -u)
[ "$checked" -gt 10 ] || { echo "only $checked README commands found"; exit 1; }
echo "newcomer: ok ($checked README commands parse)"
