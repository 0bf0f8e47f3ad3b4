#!/usr/bin/env bash
# Renders an HTML report as a reader sees it: headless Chromium (Debian's `chromium` package) loads the file
# and writes a PNG screenshot. Usage: scripts/screenshot-report.sh REPORT_HTML OUT_PNG [WIDTH,HEIGHT]
# (default 1200,2400). The report is self-contained, so nothing is fetched; background networking is off.
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: $0 REPORT_HTML OUT_PNG [WIDTH,HEIGHT]" >&2; exit 2; fi
html=$1 out=$2 size=${3:-1200,2400}
if [ ! -f "$html" ]; then echo "error: $html: file not found" >&2; exit 2; fi
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then echo "error: chromium not found (Debian: apt-get install -y chromium)" >&2; exit 2; fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
mkdir -p "$(dirname "$out")"
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
  --disable-background-networking --disable-component-update --no-first-run --no-default-browser-check \
  --window-size="$size" --screenshot="$(realpath -m "$out")" "file://$(realpath "$html")" >/dev/null 2>&1
[ -s "$out" ] || { echo "error: $out was not written" >&2; exit 1; }
echo "wrote $out"
