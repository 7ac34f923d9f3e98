#!/usr/bin/env bash
# The jml quickstart: a human engineer, a CI/CD pipeline and an AI agent go
# through joiner, mover and leaver over the REST API. Every expectation is
# checked; the script exits non-zero at the first one that fails.
#
# With JML_URL and JML_TOKEN (an admin token) set it uses that server;
# otherwise it builds jml, starts it on SQLite in a temporary directory and
# stops it at the end. Needs bash, curl and jq.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
run=$(date +%s)-$RANDOM   # keeps external IDs unique against a long-lived server

passed=0
say()  { printf '\n== %s\n' "$*"; }
ok()   { printf '   ok: %s\n' "$*"; passed=$((passed + 1)); }
fail() { printf '   FAIL: %s\n' "$*" >&2; exit 1; }

# expect DESCRIPTION ACTUAL WANTED
expect() { [ "$2" == "$3" ] && ok "$1" || fail "$1: got '$2', want '$3'"; }

own_server=""
if [ -z "${JML_URL:-}" ]; then
  work=$(mktemp -d)
  port=$((20000 + RANDOM % 20000))
  echo "building jml and starting it on 127.0.0.1:$port (data in $work)"
  (cd "$root" && go build -o "$work/jml" ./cmd/jml)
  JML_TOKEN="bootstrap-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  # The config's paths are relative to it: a copy in $work keeps the
  # store and its key there.
  cp "$here/jml.yaml" "$here/policy.yaml" "$work/"
  (cd "$work" && JML_BOOTSTRAP_TOKEN="$JML_TOKEN" exec ./jml serve --config "$work/jml.yaml" --addr "127.0.0.1:$port" >serve.log 2>&1) &
  own_server=$!
  trap 'kill $own_server 2>/dev/null || true; rm -rf "$work"' EXIT
  JML_URL="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -fs "$JML_URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fs "$JML_URL/readyz" >/dev/null || { cat "$work/serve.log"; fail "jml did not become ready"; }
fi
: "${JML_TOKEN:?set JML_TOKEN to an admin token when JML_URL is set}"

# api METHOD PATH TOKEN [JSON] -> prints the body; sets $code.
api() {
  local out
  out=$(curl -sS -X "$1" "$JML_URL$2" -H "Authorization: Bearer $3" -H 'Content-Type: application/json' \
        ${4:+--data "$4"} -w '\n%{http_code}')
  code=${out##*$'\n'}
  body=${out%$'\n'*}
}

# wait_case ID STATUS: poll the case until it has STATUS (10 s at most).
wait_case() {
  for _ in $(seq 200); do
    api GET "/v1/cases/$1" "$JML_TOKEN"
    [ "$(jq -r .status <<<"$body")" == "$2" ] && return 0
    sleep 0.05
  done
  fail "case $1 is $(jq -r '.status + " " + .reason' <<<"$body"), want $2"
}

# introspect KEY: what a protected resource asks (RFC 7662), with its own token.
introspect() { curl -sS -X POST "$JML_URL/v1/introspect" -H "Authorization: Bearer $RESOURCE" --data-urlencode "token=$1" | jq -r .active; }

say "tokens: a source (the HR feed) submits the events of source hr; a resource server introspects keys"
api POST /v1/tokens "$JML_TOKEN" '{"role":"source","source":"hr"}'; expect "source token created" "$code" 201
SRC=$(jq -r .token <<<"$body")
api POST /v1/tokens "$JML_TOKEN" '{"role":"resource","name":"deploy-api"}'; expect "resource token created" "$code" 201
RESOURCE=$(jq -r .token <<<"$body")
api POST /v1/events "$SRC" "{\"source\":\"workday\",\"id\":\"$run-0\",\"type\":\"joiner\",\"externalId\":\"x-$run\",\"kind\":\"human\"}"
expect "the hr token cannot submit another source's events" "$code $(jq -r .error.field <<<"$body")" "403 source"

say "approver: bob, the security lead, is a person; his approver token is bound to him"
api POST /v1/events "$SRC" "{\"source\":\"hr\",\"id\":\"$run-b\",\"type\":\"joiner\",\"externalId\":\"bob-$run\",\"kind\":\"human\",\"attributes\":{\"department\":\"Security\"}}"
expect "bob joins" "$code" 202
api POST /v1/tokens "$JML_TOKEN" '{"role":"approver"}'; expect "an approver token must name its person" "$code $(jq -r .error.field <<<"$body")" "400 identity"
api POST /v1/tokens "$JML_TOKEN" "{\"role\":\"approver\",\"identity\":\"hr/bob-$run\"}"; expect "approver token created" "$code" 201
APPROVER=$(jq -r .token <<<"$body")

say "joiner: alice, an engineer, gets the engineering birthright role and a personal token"
api POST /v1/events "$SRC" "{\"source\":\"hr\",\"id\":\"$run-1\",\"type\":\"joiner\",\"externalId\":\"alice-$run\",\"kind\":\"human\",\"displayName\":\"Alice\",\"attributes\":{\"department\":\"Engineering\"}}"
expect "joiner accepted" "$code" 202
ALICE=$(jq -r .identityId <<<"$body"); wait_case "$(jq -r .caseId <<<"$body")" completed; ok "case completed"
api GET "/v1/identities/$ALICE" "$JML_TOKEN"
expect "alice's grants" "$(jq -r '[.grants[].entitlement] | join(",")' <<<"$body")" "git-read,git-write"
expect "alice holds one credential" "$(jq '.credentials | length' <<<"$body")" 1
expect "the identity view never shows a secret" "$(jq 'paths | map(tostring) | join(".") | test("secret")' <<<"$body" | sort -u | tr -d '\n')" "false"
ALICE_CRED=$(jq -r '.credentials[0].id' <<<"$body")

say "joiner: deploy-bot, a pipeline owned by alice, gets a scoped role and an API key from the vault"
api POST /v1/events "$SRC" "{\"source\":\"hr\",\"id\":\"$run-2\",\"type\":\"joiner\",\"externalId\":\"deploy-bot-$run\",\"kind\":\"pipeline\",\"owner\":\"alice-$run\",\"attributes\":{\"cluster\":\"eu-1\"}}"
expect "joiner accepted" "$code" 202
BOT=$(jq -r .identityId <<<"$body"); wait_case "$(jq -r .caseId <<<"$body")" completed
api GET "/v1/identities/$BOT" "$JML_TOKEN"
expect "deploy-bot's grants" "$(jq -r '[.grants[].entitlement] | join(",")' <<<"$body")" "ci-deploy-staging,git-read"
BOT_CRED=$(jq -r '.credentials[0].id' <<<"$body")
expect "its key is named by marker and fingerprint only" "$(jq -r '.credentials[0] | "\(.marker) \(.fingerprint | test("^[0-9a-f]{16}$"))"' <<<"$body")" "jml_ true"

say "member: alice's own token reads her identity and deploy-bot's, and reveals the pipeline's key exactly once"
api POST /v1/tokens "$JML_TOKEN" "{\"role\":\"member\",\"identity\":\"$ALICE\"}"
ALICE_TOKEN=$(jq -r .token <<<"$body")
api GET "/v1/identities/$BOT" "$ALICE_TOKEN"; expect "alice reads what she owns, without the audit timeline" "$code $(jq 'has("timeline")' <<<"$body")" "200 false"
api GET "/v1/identities?source=hr" "$ALICE_TOKEN"; expect "alice lists herself and deploy-bot only" "$(jq '.items | length' <<<"$body")" 2
api POST /v1/events "$ALICE_TOKEN" "{\"source\":\"hr\",\"id\":\"$run-x\",\"type\":\"leaver\",\"externalId\":\"bob-$run\"}"; expect "alice cannot submit events" "$code" 403
api POST "/v1/credentials/$BOT_CRED/reveal" "$APPROVER"; expect "a stranger may not reveal it" "$code" 403
api POST "/v1/credentials/$BOT_CRED/reveal" "$ALICE_TOKEN"; expect "the owner reveals it" "$code" 200
BOT_KEY=$(jq -r .secret <<<"$body")
api POST "/v1/credentials/$BOT_CRED/reveal" "$ALICE_TOKEN"; expect "a second reveal is gone" "$code" 410
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$JML_URL/v1/introspect" --data-urlencode "token=$BOT_KEY")
expect "introspection needs a resource token" "$code" 401
expect "introspection: the pipeline key is active" "$(introspect "$BOT_KEY")" true

say "joiner: triage-agent, an AI agent owned by alice, gets the tools its attributes name"
api POST /v1/events "$SRC" "{\"source\":\"hr\",\"id\":\"$run-3\",\"type\":\"joiner\",\"externalId\":\"triage-agent-$run\",\"kind\":\"ai_agent\",\"owner\":\"alice-$run\",\"attributes\":{\"tools\":[\"search-docs\",\"read-tickets\"]}}"
AGENT=$(jq -r .identityId <<<"$body"); wait_case "$(jq -r .caseId <<<"$body")" completed
api GET "/v1/identities/$AGENT" "$JML_TOKEN"
expect "agent tool scopes" "$(jq -r '[.grants[].entitlement] | join(",")' <<<"$body")" "tool:read-tickets,tool:search-docs"

say "mover: the agent gains a production tool - widening waits for approval"
api POST /v1/events "$SRC" "{\"source\":\"hr\",\"id\":\"$run-4\",\"type\":\"mover\",\"externalId\":\"triage-agent-$run\",\"attributes\":{\"tools\":[\"search-docs\",\"read-tickets\",\"prod-db-write\"]}}"
WIDEN=$(jq -r .caseId <<<"$body"); wait_case "$WIDEN" awaiting_approval; ok "case awaits approval"
api GET "/v1/identities/$AGENT" "$JML_TOKEN"
expect "no production tool before approval" "$(jq -r '[.grants[].entitlement] | index("tool:prod-db-write")' <<<"$body")" null
api POST "/v1/cases/$WIDEN/approve" "$SRC" '{}'; expect "the submitter cannot approve" "$code" 403
api POST "/v1/cases/$WIDEN/approve" "$JML_TOKEN" '{}'; expect "an admin token that is nobody's cannot decide" "$code" 403
api POST /v1/tokens "$JML_TOKEN" "{\"role\":\"approver\",\"identity\":\"$ALICE\"}"; ALICE_APPROVER=$(jq -r .token <<<"$body")
api POST "/v1/cases/$WIDEN/approve" "$ALICE_APPROVER" '{}'; expect "alice owns the agent, so she cannot approve its access" "$code $(jq -r '.error.message | test("you own")' <<<"$body")" "403 true"
api POST "/v1/cases/$WIDEN/approve" "$APPROVER" '{"comment":"change OPS-42"}'; expect "the approver approves" "$code" 200
wait_case "$WIDEN" completed
api GET "/v1/identities/$AGENT" "$JML_TOKEN"
expect "production tool granted, time-bound" "$(jq -r '.grants[] | select(.entitlement=="tool:prod-db-write") | (.expiresAt != null and .approvedBy != "")' <<<"$body")" true

say "mover: the agent loses a tool - narrowing applies at once"
api POST /v1/events "$SRC" "{\"source\":\"hr\",\"id\":\"$run-5\",\"type\":\"mover\",\"externalId\":\"triage-agent-$run\",\"attributes\":{\"tools\":[\"search-docs\",\"prod-db-write\"]}}"
wait_case "$(jq -r .caseId <<<"$body")" completed
api GET "/v1/identities/$AGENT" "$JML_TOKEN"
expect "read-tickets revoked" "$(jq -r '[.grants[].entitlement] | join(",")' <<<"$body")" "tool:prod-db-write,tool:search-docs"

say "leaver: alice leaves - her credentials die the moment the leaver is accepted"
api POST "/v1/credentials/$ALICE_CRED/reveal" "$ALICE_TOKEN"; ALICE_KEY=$(jq -r .secret <<<"$body")
expect "alice's token is active before" "$(introspect "$ALICE_KEY")" true
api POST /v1/events "$SRC" "{\"source\":\"hr\",\"id\":\"$run-6\",\"type\":\"leaver\",\"externalId\":\"alice-$run\"}"
expect "leaver accepted" "$code" 202
LEAVE=$(jq -r .caseId <<<"$body")
expect "alice's token is inactive at once" "$(introspect "$ALICE_KEY")" false
api GET "/v1/identities/$BOT" "$ALICE_TOKEN"; expect "her member token is refused at once" "$code" 401
api GET "/v1/identities/$BOT" "$ALICE_APPROVER"; expect "so is her approver token" "$code" 401
wait_case "$LEAVE" completed
api GET "/v1/cases/$LEAVE" "$JML_TOKEN"
expect "every leaver step is done" "$(jq -r '[.steps[].status] | unique | join(",")' <<<"$body")" done
expect "credentials were revoked first" "$(jq -r '.steps[0].action' <<<"$body")" revoke_credential
api GET "/v1/findings?kind=owner_not_active&open=true" "$JML_TOKEN"
expect "the pipeline has lost its owner" "$(jq --arg id "$BOT" '[.items[] | select(.identityId==$id)] | length' <<<"$body")" 1
expect "the agent has lost its owner" "$(jq --arg id "$AGENT" '[.items[] | select(.identityId==$id)] | length' <<<"$body")" 1

say "bad input is refused with the field named, and changes nothing"
api POST /v1/events "$SRC" '{"source":"hr","id":"x","type":"joiner","externalId":"orphan","kind":"workload"}'
expect "a workload without owner" "$code $(jq -r .error.field <<<"$body")" "400 owner"
api POST /v1/events "$SRC" "{\"source\":\"hr\",\"id\":\"$run-7\",\"type\":\"resume\",\"externalId\":\"alice-$run\"}"
expect "resume of a departed identity" "$code $(jq -r .error.code <<<"$body")" "409 conflict"

if [ -n "$own_server" ]; then
  say "audit: the hash chain verifies"
  kill "$own_server"; wait "$own_server" 2>/dev/null || true
  "$work/jml" audit verify --db "sqlite:$work/jml.db"
fi
printf '\nquickstart: all expectations held\n'
printf 'quickstart: %d passed, 0 failed\n' "$passed"
