#!/usr/bin/env bash
# Render `make report`'s HTML in headless Chromium (Debian's package) and save a screenshot,
# to check that the self-contained page draws its plots with no network at all.
#   bench/report_screenshot.sh [dvc_plots/report.html] [dvc_plots/report.png]
# Needs: apt-get install chromium
set -euo pipefail
report=$(realpath "${1:-dvc_plots/report.html}")
shot=${2:-dvc_plots/report.png}
browser=$(command -v chromium || command -v chromium-browser) || { echo "error: chromium not found: apt-get install chromium" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# No network: proxy everything to a closed port, so a page that still needs a CDN shows blank plots.
"$browser" --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" \
  --proxy-server=127.0.0.1:9 --window-size=1400,5000 --virtual-time-budget=10000 \
  --screenshot="$(realpath -m "$shot")" "file://$report" 2>/dev/null
echo "$shot"
