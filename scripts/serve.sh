#!/usr/bin/env bash
# Set up (without the browser) and run the dashboard: bash scripts/serve.sh [dockext serve options]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
bash scripts/setup.sh --no-browser || exit 1
exec .venv/bin/dockext serve "$@"
