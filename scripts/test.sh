#!/usr/bin/env bash
# Runs every test jml has. Needs Go and a PostgreSQL server the tests can
# create databases on: 127.0.0.1:5432 as user postgres, or the URL in
# JML_TEST_POSTGRES. A missing PostgreSQL fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in curl jq; do
  command -v "$tool" >/dev/null || { echo "the quickstart needs $tool; installing it"; apt-get install -y "$tool" >/dev/null; }
done

echo "== go vet"
go vet ./...

echo "== go test"
go test -count=1 -timeout 20m ./...

echo "== go test -race (the concurrent parts)"
go test -race -count=1 -timeout 20m ./internal/engine/... ./internal/store/... ./internal/httpapi/...

echo "== quickstart"
bash examples/quickstart/quickstart.sh
