#!/usr/bin/env bash
# Runs real GraphQL clients (Apollo Client with automatic persisted queries; graphql-ws, Apollo's
# GraphQLWsLink and graphql-sse following a live query; from npm) against
# a running server.
# Usage: scripts/client-check.sh [url]     (default url: http://127.0.0.1:8000/graphql)
# Exit code: 0 when every check passes, 1 otherwise.
set -euo pipefail

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/client-check" && pwd)"
cd "$dir"

if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund >&2
fi

exec node check.mjs "$@"
