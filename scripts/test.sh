#!/usr/bin/env bash
# The whole test suite: installs what it needs, typechecks, then runs every test file with
# node:test (files passed explicitly: with no file arguments Node 20 runs nothing and exits 0).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
echo "== typecheck" >&2
npx tsc --noEmit -p .
echo "== layers" >&2
npx tsx scripts/check-layers.ts
mapfile -t files < <(find src test -name '*.test.ts' -not -path '*/node_modules/*' | sort)
if [ ${#files[@]} -eq 0 ]; then echo "no test files found" >&2; exit 1; fi
echo "== ${#files[@]} test files" >&2
# One file at a time per core pair: the integration tests start real processes and time them.
exec node --import tsx --test --test-concurrency=1 --test-timeout=600000 "$@" "${files[@]}"
