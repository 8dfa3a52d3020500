#!/usr/bin/env bash
# Runs the graphql-http GraphQL-over-HTTP conformance audit against a running server.
# Usage: scripts/http-audit.sh [url]     (default url: http://127.0.0.1:8000/graphql)
# Exit code: 0 when every MUST/SHOULD audit passes, 1 otherwise.
set -euo pipefail

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/http-audit" && pwd)"
cd "$dir"

if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund >&2
fi

exec node audit.mjs "$@"
