#!/usr/bin/env bash
# Runs every test jml has. Needs Go and the servers the connector tests
# talk to: PostgreSQL the tests can create databases on (127.0.0.1:5432 as
# user postgres, or JML_TEST_POSTGRES; its server binaries also start a
# private instance that checks passwords), MariaDB (root@127.0.0.1:3306 or
# JML_TEST_MYSQL) and Redis (127.0.0.1:6379 or JML_TEST_REDIS). OpenLDAP's
# slapd is installed here from Debian's packages if missing; the tests
# start it on their own port. A missing server fails the run; nothing is
# skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# apt-get install, once more after refreshing the package lists if the
# first try fails (a fresh machine may have none).
install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null 2>&1 ||
    { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null; }
}
for tool in curl jq; do
  command -v "$tool" >/dev/null || { echo "the quickstart needs $tool; installing it"; install "$tool"; }
done

if [ ! -x /usr/sbin/slapd ]; then
  echo "the LDAP connector tests need slapd; installing it"
  install slapd ldap-utils
fi

echo "== gofmt, go vet"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "not gofmt'd:" $unformatted >&2
  exit 1
fi
go vet ./...
go vet -tags benchsvc ./internal/bench

# jml builds where its users build, and carries no test servers.
echo "== cross-builds: darwin, windows"
GOOS=darwin go build -o /dev/null ./cmd/jml
GOOS=windows go build -o /dev/null ./cmd/jml
if go list -deps ./cmd/jml | grep -q internal/testsvc; then
  echo "the jml binary depends on internal/testsvc: test servers must not ship" >&2
  exit 1
fi

echo "== go test"
go test -count=1 -timeout 20m ./...

# Budgets are execution counts, not durations: with a duration, Go 1.26's
# fuzz coordinator can report "context deadline exceeded" at the end of a
# clean run (golang/go#75804, fixed in Go 1.27).
echo "== fuzz targets, briefly"
go test -run '^$' -fuzz '^FuzzReadCSV$' -fuzztime 200000x ./internal/hrfeed
go test -run '^$' -fuzz '^FuzzFilter$' -fuzztime 50000x ./internal/store/sqlstore
go test -run '^$' -fuzz '^FuzzPatch$' -fuzztime 100000x ./internal/scimserver

echo "== go test -race (the concurrent parts)"
go test -race -count=1 -timeout 20m ./internal/engine/... ./internal/store/... ./internal/httpapi/...

echo "== policy check and test cases"
go run ./cmd/jml policy check examples/quickstart/policy.yaml
go run ./cmd/jml policy test examples/quickstart/policy.test.yaml

echo "== quickstart"
bash examples/quickstart/quickstart.sh
