package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/cases"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/store"
)

// principalsPolicy gives people a password and agents an API key, both from
// the built-in vault, and makes one agent tool critical.
const principalsPolicy = `
systems: [{name: vault, type: builtin}]
entitlements:
  - {name: tool:search, system: vault, risk: low}
  - {name: tool:prod-write, system: vault, risk: critical, maxDuration: 72h}
birthright:
  - {name: search, when: 'identity.kind == "ai_agent" && "search" in identity.attributes.tools', entitlements: [tool:search]}
  - {name: prod, when: 'identity.kind == "ai_agent" && "prod-write" in identity.attributes.tools', entitlements: [tool:prod-write]}
credentials:
  - {name: login, when: 'identity.kind == "human"', system: vault, type: password}
  - {name: agent-key, when: 'identity.kind == "ai_agent"', system: vault, type: api_key, ttl: 7d}
`

func principalsAPI(t *testing.T, o apiOptions) *api {
	t.Helper()
	pol, err := policy.Parse("principals.yaml", []byte(principalsPolicy))
	if err != nil {
		t.Fatal(err)
	}
	o.policy = pol
	return newAPIWith(t, "sqlite", o)
}

// join submits a joiner as admin and waits for its case; it returns the
// result.
func (a *api) join(src, ext, kind, owner string, attrs map[string]any) engine.Result {
	a.t.Helper()
	ev := map[string]any{"source": src, "id": "join-" + ext, "type": "joiner", "externalId": ext, "kind": kind}
	if owner != "" {
		ev["owner"], ev["ownerSource"] = owner, "staff"
	}
	if attrs != nil {
		ev["attributes"] = attrs
	}
	var res engine.Result
	a.do("POST", "/v1/events", "admin", ev, 202, &res)
	if res.CaseID != "" {
		if kind == "ai_agent" && attrs != nil && strings.Contains(fmt.Sprint(attrs["tools"]), "prod-write") {
			a.waitCase(res.CaseID, cases.AwaitingApproval)
		} else {
			a.waitCase(res.CaseID, cases.Completed)
		}
	}
	return res
}

// token creates a token as admin and keeps it under name.
func (a *api) token(name string, spec map[string]any) string {
	a.t.Helper()
	var tc TokenCreated
	a.do("POST", "/v1/tokens", "admin", spec, 201, &tc)
	a.tokens[name] = tc.Token
	return tc.ID
}

// leave submits a leaver as admin.
func (a *api) leave(src, ext string) {
	a.t.Helper()
	a.do("POST", "/v1/events", "admin", map[string]any{"source": src, "id": "leave-" + ext, "type": "leaver", "externalId": ext}, 202, nil)
}

// snapshot is what a refused request must leave as it was: the case and
// the number of audit records other than the refusals' own.
func (a *api) snapshot(caseID string) string {
	a.t.Helper()
	c := a.do("GET", "/v1/cases/"+caseID, "auditor", nil, 200, nil)
	n := 0
	for _, r := range a.records() {
		if r.Action != "decision.refused" {
			n++
		}
	}
	return fmt.Sprintf("%s\naudit records: %d", c, n)
}

// TestAuthorisationMatrix sends every route of the OpenAPI document with a
// token of every role, unbound, bound to an active person and bound to one
// who has left, and holds each answer to the roles the document lists for
// the route (x-jml-roles): a listed role is served (no 401 or 403), any
// other is refused 403, every token of a departed person 401, and a route
// without security answers the same with any token as with none.
func TestAuthorisationMatrix(t *testing.T) {
	t.Parallel()
	a := principalsAPI(t, apiOptions{})
	a.join("staff", "pat", "human", "", nil)
	agent := a.join("staff", "pats-agent", "ai_agent", "pat", map[string]any{"tools": []any{"search"}})
	a.join("staff", "dee", "human", "", nil)

	type variant struct{ name, binding string }
	variants := []variant{{"unbound", ""}, {"active", "staff/pat"}, {"departed", "staff/dee"}}
	for _, role := range engine.Roles {
		for _, v := range variants {
			spec := map[string]any{"role": string(role)}
			if role == engine.RoleSource {
				spec["source"] = "staff"
			}
			if v.binding != "" {
				spec["identity"] = v.binding
			}
			key := string(role) + "/" + v.name
			if v.binding == "" && (role == engine.RoleMember || role == engine.RoleApprover) {
				// A person's role cannot be nobody's.
				a.do("POST", "/v1/tokens", "admin", spec, 400, nil)
				continue
			}
			a.token(key, spec)
		}
	}
	a.leave("staff", "dee")

	// Concrete requests per route: IDs of what pat may read, or of nothing
	// (a 404 after authorisation is a served request).
	paths := map[string]string{"{id}": "nope", "{name}": "ci"}
	requests := map[string]struct {
		path string
		body any
	}{
		"POST /v1/events":                  {"", map[string]any{"source": "staff", "id": "m-x", "type": "leaver", "externalId": "nobody"}},
		"GET /v1/identities/{id}":          {"/v1/identities/" + agent.IdentityID, nil},
		"GET /v1/cases/{id}":               {"/v1/cases/" + agent.CaseID, nil},
		"POST /v1/credentials/{id}/reveal": {"/v1/credentials/nope/reveal", nil},
		"POST /v1/introspect":              {"", url.Values{"token": {"jml_nothing"}}},
		"POST /v1/tokens":                  {"", map[string]any{"role": "auditor", "name": "matrix"}},
		"POST /v1/cases/{id}/approve":      {"", map[string]any{}},
		"POST /v1/cases/{id}/deny":         {"", map[string]any{}},
		"POST /v1/sources/{name}/webhook":  {"", `{"action":"joiner"}`},
	}

	var doc struct {
		Paths map[string]map[string]struct {
			Security []map[string][]string `json:"security"`
			Roles    map[string]string     `json:"x-jml-roles"`
		} `json:"paths"`
	}
	a.do("GET", "/openapi.json", "", nil, 200, &doc)
	checked := 0
	for path, ops := range doc.Paths {
		for method, op := range ops {
			route := strings.ToUpper(method) + " " + path
			req := requests[route]
			concrete := req.path
			if concrete == "" {
				concrete = path
				for k, v := range paths {
					concrete = strings.ReplaceAll(concrete, k, v)
				}
			}
			anonymous, _ := a.send(strings.ToUpper(method), concrete, "", req.body)
			for _, role := range engine.Roles {
				for _, v := range variants {
					key := string(role) + "/" + v.name
					if a.tokens[key] == "" {
						continue
					}
					code, body := a.send(strings.ToUpper(method), concrete, key, req.body)
					checked++
					reach, listed := op.Roles[string(role)]
					decision := strings.HasSuffix(route, "/approve") || strings.HasSuffix(route, "/deny")
					switch {
					case len(op.Security) == 0:
						if code != anonymous {
							t.Errorf("%s with %s = %d, without a token %d: a route without security must not care", route, key, code, anonymous)
						}
					case v.name == "departed":
						if code != 401 {
							t.Errorf("%s with %s = %d %s, want 401 (the person has left)", route, key, code, body)
						}
					case decision && listed && v.name == "unbound":
						// Decisions are made by people: a token that is
						// nobody's is refused whatever its role.
						if code != 403 || !strings.Contains(string(body), "decisions are made by people") {
							t.Errorf("%s with %s = %d %s, want 403: nobody's token", route, key, code, body)
						}
					case listed && (code == 401 || code == 403):
						t.Errorf("%s with %s = %d %s; the document lists %s (%s)", route, key, code, body, role, reach)
					case !listed && code != 403:
						t.Errorf("%s with %s = %d %s, want 403 (the document does not list %s)", route, key, code, body, role)
					}
				}
			}
		}
	}
	if checked < len(routes)*10 {
		t.Fatalf("checked %d requests for %d routes", checked, len(routes))
	}
}

// TestDepartedPersonsTokensStop: a token bound to a person stops at the
// leaver that departs them (defect: it kept working, revealing the keys of
// NHIs they owned and submitting events). At, not after: the first request
// with each token once the leaver is accepted is refused, and every token
// was revoked at the moment of acceptance, in the record that accepted
// it, so no later run (and no time spent) can be what stopped it.
func TestDepartedPersonsTokensStop(t *testing.T) {
	t.Parallel()
	a := principalsAPI(t, apiOptions{})
	a.join("staff", "alice", "human", "", nil)
	agent := a.join("staff", "alices-agent", "ai_agent", "alice", map[string]any{"tools": []any{"search"}})
	var view IdentityView
	a.do("GET", "/v1/identities/"+agent.IdentityID, "admin", nil, 200, &view)
	cred := view.Credentials[0].ID
	ids := map[string]string{}
	for _, role := range engine.Roles {
		spec := map[string]any{"role": string(role), "identity": "staff/alice"}
		if role == engine.RoleSource {
			spec["source"] = "staff"
		}
		ids[string(role)] = a.token("alice-"+string(role), spec)
	}
	a.do("GET", "/v1/identities/"+agent.IdentityID, "alice-member", nil, 200, nil)
	a.do("GET", "/v1/identities/"+agent.IdentityID, "alice-source", nil, 200, nil)

	var left engine.Result
	a.do("POST", "/v1/events", "admin", map[string]any{"source": "staff", "id": "leave-alice", "type": "leaver", "externalId": "alice"}, 202, &left)
	for _, role := range engine.Roles {
		tok := "alice-" + string(role)
		a.do("GET", "/v1/identities/"+agent.IdentityID, tok, nil, 401, nil)
		a.do("POST", "/v1/credentials/"+cred+"/reveal", tok, nil, 401, nil)
		a.do("POST", "/v1/events", tok, map[string]any{"source": "staff", "id": "after", "type": "joiner", "externalId": "newbie", "kind": "human"}, 401, nil)
	}
	var list IdentityList
	a.do("GET", "/v1/identities?source=staff", "auditor", nil, 200, &list)
	for _, id := range list.Items {
		if id.ExternalID == "newbie" {
			t.Fatal("a departed person's token created an identity")
		}
	}
	var toks TokenList
	a.do("GET", "/v1/tokens", "admin", nil, 200, &toks)
	accepted := a.lastAudit("event.accepted", left.CaseID).At
	if r := a.lastAudit("tokens.revoked", left.CaseID); !r.At.Equal(accepted) {
		t.Errorf("tokens.revoked at %s, want with the leaver's acceptance at %s", r.At, accepted)
	}
	for _, tk := range toks.Items {
		if ids[tk.Role] == tk.ID && !tk.RevokedAt.Equal(accepted) {
			t.Errorf("token %s (%s) of the leaver revoked at %v, want at the leaver's acceptance, %s", tk.ID, tk.Role, tk.RevokedAt, accepted)
		}
	}
	audit := string(a.do("GET", "/v1/audit", "auditor", nil, 200, nil))
	for _, id := range ids {
		if !strings.Contains(audit, id) || !strings.Contains(audit, `"tokens.revoked"`) || !strings.Contains(audit, "the identity departed") {
			t.Fatalf("no tokens.revoked audit record with its reason for %s", id)
		}
	}
	// The owned key itself is still the agent's: an admin reveals it.
	a.do("POST", "/v1/credentials/"+cred+"/reveal", "admin", nil, 200, nil)
}

// TestSuspendedPersonsTokensPause: a suspend stops a person's tokens and a
// resume brings them back.
func TestSuspendedPersonsTokensPause(t *testing.T) {
	t.Parallel()
	a := principalsAPI(t, apiOptions{})
	alice := a.join("staff", "alice", "human", "", nil)
	a.token("alice", map[string]any{"role": "member", "identity": "staff/alice"})
	a.do("GET", "/v1/identities/"+alice.IdentityID, "alice", nil, 200, nil)
	a.do("POST", "/v1/events", "admin", map[string]any{"source": "staff", "id": "s1", "type": "suspend", "externalId": "alice"}, 202, nil)
	e := a.errorOf(a.do("GET", "/v1/identities/"+alice.IdentityID, "alice", nil, 401, nil))
	if !strings.Contains(e.Error.Message, "suspended") {
		t.Fatalf("suspended token error = %+v", e)
	}
	a.do("POST", "/v1/events", "admin", map[string]any{"source": "staff", "id": "r1", "type": "resume", "externalId": "alice"}, 202, nil)
	a.do("GET", "/v1/identities/"+alice.IdentityID, "alice", nil, 200, nil)
}

// TestDecisionsAreMadeByPeople: approve and deny need a token bound to an
// active human who is not the submitter (under any token), the subject or
// its owner; each refusal leaves the case as it was and adds one audit
// record, decision.refused, naming who tried (the person and the token),
// the case and why. The decision that is made names the person and the
// token too.
func TestDecisionsAreMadeByPeople(t *testing.T) {
	t.Parallel()
	a := principalsAPI(t, apiOptions{})
	carol := a.join("staff", "carol", "human", "", nil).IdentityID
	dave := a.join("staff", "dave", "human", "", nil).IdentityID
	erin := a.join("staff", "erin", "human", "", nil).IdentityID
	davebot := a.join("staff", "davebot", "ai_agent", "dave", map[string]any{"tools": []any{"search"}}).IdentityID
	tokens := map[string]string{}
	tokens["carol-source"] = a.token("carol-source", map[string]any{"role": "source", "source": "staff", "identity": "staff/carol"})
	tokens["carol-approver"] = a.token("carol-approver", map[string]any{"role": "approver", "identity": "staff/carol"})
	tokens["dave-approver"] = a.token("dave-approver", map[string]any{"role": "approver", "identity": "staff/dave"})
	tokens["erin-approver"] = a.token("erin-approver", map[string]any{"role": "approver", "identity": "staff/erin"})
	tokens["bot-admin"] = a.token("bot-admin", map[string]any{"role": "admin", "identity": "staff/davebot"})
	tokens["auditor-unbound"] = a.token("auditor-unbound", map[string]any{"role": "auditor"})
	// Carol's source token asks for a critical tool for dave's agent.
	var widen engine.Result
	a.do("POST", "/v1/events", "carol-source", map[string]any{"source": "staff", "id": "w1", "type": "mover", "externalId": "davebot",
		"attributes": map[string]any{"tools": []any{"search", "prod-write"}}}, 202, &widen)
	if widen.Status != store.EventApplied || widen.CaseStatus != cases.AwaitingApproval {
		t.Fatalf("widening mover answered %+v, want its case awaiting_approval", widen)
	}
	a.waitCase(widen.CaseID, cases.AwaitingApproval)
	// The event's own records name carol and her token.
	if r := a.lastAudit("event.accepted", widen.CaseID); r.Actor != carol || auditData(t, r)["actorToken"] != tokens["carol-source"] {
		t.Fatalf("event.accepted by carol's token = %+v, want actor %s with actorToken %s", r, carol, tokens["carol-source"])
	}

	before := a.snapshot(widen.CaseID)
	refusals := a.refusals()
	for _, tc := range []struct{ token, actor, want string }{
		{"carol-approver", carol, "submitted the event"},                       // the submitter, under another token
		{"dave-approver", dave, "you own"},                                     // the agent's owner
		{"admin", "", "decisions are made by people"},                          // nobody's token
		{"bot-admin", davebot, "decisions are made by active people"},          // an NHI's token
		{"auditor-unbound", tokens["auditor-unbound"], "role auditor may not"}, // a role that does not decide
	} {
		for _, verb := range []string{"approve", "deny"} {
			e := a.errorOf(a.do("POST", "/v1/cases/"+widen.CaseID+"/"+verb, tc.token, map[string]any{"comment": "mine"}, 403, nil))
			if !strings.Contains(e.Error.Message, tc.want) {
				t.Errorf("%s by %s = %q, want it to say %q", verb, tc.token, e.Error.Message, tc.want)
			}
			got := a.refusals()
			if len(got) != len(refusals)+1 {
				t.Fatalf("%s by %s left %d decision.refused records, want 1", verb, tc.token, len(got)-len(refusals))
			}
			refusals = got
			r := got[len(got)-1]
			data := auditData(t, r)
			tok := tokens[tc.token]
			if tc.token == "admin" {
				tok, _ = data["actorToken"].(string) // the fixture's admin token, unbound
				tc.actor = tok
			}
			if r.Actor != tc.actor || tok == "" || data["actorToken"] != tok || r.CaseID != widen.CaseID || r.IdentityID != davebot ||
				data["decision"] != verb || data["target"] != widen.CaseID || data["reason"] != e.Error.Message {
				t.Errorf("%s by %s: audit record %+v %v, want actor %s, token %s, the case and the reason %q", verb, tc.token, r, data, tc.actor, tok, e.Error.Message)
			}
		}
	}
	if after := a.snapshot(widen.CaseID); after != before {
		t.Fatalf("refused decisions changed something:\nbefore %s\nafter  %s", before, after)
	}
	// The subject itself: a person whose own access waits.
	a.token("dave-source", map[string]any{"role": "source", "source": "staff"})
	var self engine.Result
	a.do("POST", "/v1/events", "admin", map[string]any{"source": "staff", "id": "bot2", "type": "joiner", "externalId": "erinbot", "kind": "ai_agent", "owner": "erin", "ownerSource": "staff",
		"attributes": map[string]any{"tools": []any{"prod-write"}}}, 202, &self)
	a.waitCase(self.CaseID, cases.AwaitingApproval)
	e := a.errorOf(a.do("POST", "/v1/cases/"+self.CaseID+"/approve", "erin-approver", nil, 403, nil))
	if r := a.refusals(); len(r) != len(refusals)+1 || r[len(r)-1].Actor != erin || r[len(r)-1].CaseID != self.CaseID || auditData(t, r[len(r)-1])["reason"] != e.Error.Message {
		t.Fatalf("erin's refused self-approval: last records %+v", r[len(refusals):])
	}

	// Erin decides carol's request: a person, on someone else's behalf.
	var decided cases.Case
	a.do("POST", "/v1/cases/"+widen.CaseID+"/approve", "erin-approver", map[string]any{"comment": "OPS-9"}, 200, &decided)
	a.waitCase(widen.CaseID, cases.Completed)
	r := a.lastAudit("case.approved", widen.CaseID)
	if r.Actor != erin || auditData(t, r)["actorToken"] != tokens["erin-approver"] {
		t.Fatalf("case.approved = %+v, want actor %s (erin) with actorToken %s", r, erin, tokens["erin-approver"])
	}
	if res := decided.Steps[0].Result; !strings.Contains(res, erin) || !strings.Contains(res, tokens["erin-approver"]) {
		t.Fatalf("the approved step's result %q does not name erin and her token", res)
	}
}

// TestSourcesAreBound: a source token submits its own source's events
// only; SCIM and webhook sources take events only through their own
// endpoints; a member token submits nothing.
func TestSourcesAreBound(t *testing.T) {
	t.Parallel()
	a := principalsAPI(t, apiOptions{scim: []string{"okta"}})
	a.join("staff", "olive", "human", "", nil)
	a.token("rel-hr", map[string]any{"role": "source", "source": "rel-hr"})
	a.token("olive", map[string]any{"role": "member", "identity": "staff/olive"})
	leaver := func(src string) map[string]any {
		return map[string]any{"source": src, "id": "l-" + src, "type": "leaver", "externalId": "olive"}
	}
	before := string(a.do("GET", "/v1/audit", "auditor", nil, 200, nil))
	for _, tc := range []struct {
		token, source, want string
	}{
		{"rel-hr", "staff", `submits the events of source "rel-hr" only`},
		{"rel-hr", "okta", "/scim/okta/v2"},
		{"admin", "okta", "/scim/okta/v2"},
		{"admin", "ci", "/v1/sources/ci/webhook, signed"},
		{"olive", "staff", "role member may not submit"},
	} {
		e := a.errorOf(a.do("POST", "/v1/events", tc.token, leaver(tc.source), 403, nil))
		if !strings.Contains(e.Error.Message, tc.want) {
			t.Errorf("%s posting a %s leaver: %q, want %q", tc.token, tc.source, e.Error.Message, tc.want)
		}
	}
	if after := string(a.do("GET", "/v1/audit", "auditor", nil, 200, nil)); after != before {
		t.Fatal("refused events left audit records")
	}
	var id IdentityList
	a.do("GET", "/v1/identities?state=active&source=staff", "auditor", nil, 200, &id)
	if len(id.Items) != 2 || id.Items[1].ExternalID != "olive" && id.Items[0].ExternalID != "olive" {
		t.Fatalf("active after refused leavers: %+v, want lead and olive", id.Items)
	}
	// Its own source's events are its own to send.
	a.do("POST", "/v1/events", "rel-hr", map[string]any{"source": "rel-hr", "id": "j1", "type": "joiner", "externalId": "rita", "kind": "human"}, 202, nil)
}

// TestAuditDataOnlyForAuditRoles: the identity view's timeline is served
// to admin and auditor, and absent for every other role.
func TestAuditDataOnlyForAuditRoles(t *testing.T) {
	t.Parallel()
	a := principalsAPI(t, apiOptions{})
	p := a.join("staff", "pia", "human", "", nil)
	a.token("pia", map[string]any{"role": "member", "identity": "staff/pia"})
	for _, tok := range []string{"admin", "auditor", "source", "approver", "pia"} {
		var v map[string]any
		a.do("GET", "/v1/identities/"+p.IdentityID, tok, nil, 200, &v)
		_, has := v["timeline"]
		if want := tok == "admin" || tok == "auditor"; has != want {
			t.Errorf("identity view for %s has timeline: %v, want %v", tok, has, want)
		}
	}
}

// TestNoPartOfASecret: after jml issued a password and an API key, no
// character run of either (beyond the public jml_ marker) appears in any
// view, case, audit record, log line, metric or error, for any role; only
// the reveal answer holds the secret.
func TestNoPartOfASecret(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	a := principalsAPI(t, apiOptions{log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	a.join("staff", "sam", "human", "", nil)
	bot := a.join("staff", "sams-agent", "ai_agent", "sam", map[string]any{"tools": []any{"search"}})
	a.token("sam", map[string]any{"role": "member", "identity": "staff/sam"})
	var samView, botView IdentityView
	var list IdentityList
	a.do("GET", "/v1/identities?source=staff", "auditor", nil, 200, &list)
	for _, id := range list.Items {
		if id.ExternalID == "sam" {
			a.do("GET", "/v1/identities/"+id.ID, "admin", nil, 200, &samView)
		}
	}
	a.do("GET", "/v1/identities/"+bot.IdentityID, "admin", nil, 200, &botView)
	var pw, key Revealed
	a.do("POST", "/v1/credentials/"+samView.Credentials[0].ID+"/reveal", "sam", nil, 200, &pw)
	a.do("POST", "/v1/credentials/"+botView.Credentials[0].ID+"/reveal", "sam", nil, 200, &key)
	if !strings.HasPrefix(key.Secret, "jml_") || len(pw.Secret) != 32 {
		t.Fatalf("revealed %q and %q", pw.Secret, key.Secret)
	}
	// Every 6-character run of either secret (the marker excepted).
	var runs []string
	for _, s := range []string{pw.Secret, strings.TrimPrefix(key.Secret, "jml_")} {
		for i := 0; i+6 <= len(s); i++ {
			runs = append(runs, s[i:i+6])
		}
	}
	var seen []string
	for _, tok := range []string{"admin", "auditor", "source", "approver", "sam"} {
		for _, id := range []string{samView.ID, bot.IdentityID} {
			_, body := a.send("GET", "/v1/identities/"+id, tok, nil)
			seen = append(seen, string(body))
		}
		for _, c := range append(samView.Cases, botView.Cases...) {
			_, body := a.send("GET", "/v1/cases/"+c.ID, tok, nil)
			seen = append(seen, string(body))
		}
		_, body := a.send("POST", "/v1/credentials/"+samView.Credentials[0].ID+"/reveal", tok, nil)
		seen = append(seen, string(body))
	}
	seen = append(seen, string(a.do("GET", "/v1/audit", "auditor", nil, 200, nil)))
	_, metrics := a.send("GET", "/metrics", "", nil)
	seen = append(seen, string(metrics), logs.String())
	for _, text := range seen {
		for _, r := range runs {
			if strings.Contains(text, r) {
				i := strings.Index(text, r)
				t.Fatalf("a part of a secret (%q) appears in: …%s…", r, text[max(0, i-80):min(len(text), i+80)])
			}
		}
	}
	if botView.Credentials[0].Marker != "jml_" || samView.Credentials[0].Marker != "" || len(botView.Credentials[0].Fingerprint) != 16 {
		t.Fatalf("credentials = %+v, %+v", botView.Credentials[0], samView.Credentials[0])
	}
}

// TestIntrospectionIsAuthenticated: RFC 7662 §2.1 — only a protected
// resource's token (or an admin's) may ask, and the answer carries what a
// resource server needs unless the configuration adds more.
func TestIntrospectionIsAuthenticated(t *testing.T) {
	t.Parallel()
	for _, claims := range [][]string{nil, {"username", "owner", "credential_id"}} {
		a := principalsAPI(t, apiOptions{claims: claims})
		a.join("staff", "ivy", "human", "", nil)
		bot := a.join("staff", "ivys-agent", "ai_agent", "ivy", map[string]any{"tools": []any{"search"}})
		var v IdentityView
		a.do("GET", "/v1/identities/"+bot.IdentityID, "admin", nil, 200, &v)
		var key Revealed
		a.do("POST", "/v1/credentials/"+v.Credentials[0].ID+"/reveal", "admin", nil, 200, &key)
		form := url.Values{"token": {key.Secret}}
		a.do("POST", "/v1/introspect", "", form, 401, nil)
		for _, tok := range []string{"source", "auditor", "approver"} {
			a.do("POST", "/v1/introspect", tok, form, 403, nil)
		}
		var in map[string]any
		a.do("POST", "/v1/introspect", "resource", form, 200, &in)
		want := []string{"active", "client_id", "exp", "iat", "scope", "sub", "token_type"}
		want = append(want, claims...)
		var got []string
		for k := range in {
			got = append(got, k)
		}
		sort.Strings(got)
		sort.Strings(want)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("introspection with claims %v = %v, want members %v", claims, in, want)
		}
	}
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestTokenCreationRules: a person's roles are bound to a human; a token's
// name is a short printable label; each refusal names the field.
func TestTokenCreationRules(t *testing.T) {
	t.Parallel()
	a := principalsAPI(t, apiOptions{})
	a.join("staff", "tia", "human", "", nil)
	a.join("staff", "tias-agent", "ai_agent", "tia", map[string]any{"tools": []any{"search"}})
	for _, tc := range []struct {
		spec  map[string]any
		field string
	}{
		{map[string]any{"role": "member", "identity": "staff/tias-agent"}, "identity"},
		{map[string]any{"role": "approver", "identity": "staff/tias-agent"}, "identity"},
		{map[string]any{"role": "member"}, "identity"},
		{map[string]any{"role": "auditor", "name": "evil\ntok_FAKE  admin admin"}, "name"},
		{map[string]any{"role": "auditor", "name": strings.Repeat("n", 65)}, "name"},
		{map[string]any{"role": "source"}, "source"},
		{map[string]any{"role": "source", "source": "bad source"}, "source"},
	} {
		e := a.errorOf(a.do("POST", "/v1/tokens", "admin", tc.spec, 400, nil))
		if e.Error.Field != tc.field {
			t.Errorf("token %v refused with %+v, want field %s", tc.spec, e.Error, tc.field)
		}
	}
	var toks TokenList
	a.do("GET", "/v1/tokens", "admin", nil, 200, &toks)
	if len(toks.Items) != 5 { // newAPI's: admin, source, auditor, resource, lead's approver
		t.Fatalf("refused token requests left %d tokens, want newAPI's 5", len(toks.Items))
	}
	e := a.errorOf(a.do("POST", "/v1/tokens", "admin", `[]`, 400, nil))
	if strings.Contains(e.Error.Message, "httpapi.") {
		t.Fatalf("error names a Go type: %q", e.Error.Message)
	}
	// An agent's admin token is allowed (a service acting through jml),
	// and stops with the agent.
	a.token("agent-admin", map[string]any{"role": "admin", "identity": "staff/tias-agent"})
	a.do("GET", "/v1/tokens", "agent-admin", nil, 200, nil)
	a.leave("staff", "tias-agent")
	a.do("GET", "/v1/tokens", "agent-admin", nil, 401, nil)
	// Introspection takes its token once.
	a.do("POST", "/v1/introspect", "resource", url.Values{"token": {"jml_a", "jml_b"}}, 400, nil)
}

// TestMemberReach: a member reads itself and whom it owns or manages;
// what it may not read answers as what does not exist; a manager reads a
// report but does not reveal the report's secrets.
func TestMemberReach(t *testing.T) {
	t.Parallel()
	a := principalsAPI(t, apiOptions{})
	a.join("staff", "bob", "human", "", nil)
	var carol engine.Result
	a.do("POST", "/v1/events", "admin", map[string]any{"source": "staff", "id": "join-carol", "type": "joiner", "externalId": "carol", "kind": "human", "manager": "bob"}, 202, &carol)
	a.waitCase(carol.CaseID, cases.Completed)
	alice := a.join("staff", "alice", "human", "", nil)
	a.token("bob", map[string]any{"role": "member", "identity": "staff/bob"})
	var carolView, aliceView IdentityView
	a.do("GET", "/v1/identities/"+carol.IdentityID, "admin", nil, 200, &carolView)
	a.do("GET", "/v1/identities/"+alice.IdentityID, "admin", nil, 200, &aliceView)

	var list IdentityList
	a.do("GET", "/v1/identities", "bob", nil, 200, &list)
	var seen []string
	for _, id := range list.Items {
		seen = append(seen, id.ExternalID)
	}
	sort.Strings(seen)
	if strings.Join(seen, ",") != "bob,carol" {
		t.Fatalf("bob lists %v, want himself and carol", seen)
	}
	a.do("GET", "/v1/identities/"+carol.IdentityID, "bob", nil, 200, nil)
	a.do("GET", "/v1/cases/"+carol.CaseID, "bob", nil, 200, nil)
	// Not his: the same answer as for nothing at all.
	for _, p := range []struct{ real, none string }{
		{"/v1/identities/" + alice.IdentityID, "/v1/identities/idn_nothing"},
		{"/v1/cases/" + alice.CaseID, "/v1/cases/case_nothing"},
	} {
		real := a.errorOf(a.do("GET", p.real, "bob", nil, 404, nil))
		none := a.errorOf(a.do("GET", p.none, "bob", nil, 404, nil))
		realShape := strings.Replace(real.Error.Message, strings.TrimPrefix(p.real, p.real[:strings.LastIndex(p.real, "/")+1]), "ID", 1)
		noneShape := strings.Replace(none.Error.Message, strings.TrimPrefix(p.none, p.none[:strings.LastIndex(p.none, "/")+1]), "ID", 1)
		if realShape != noneShape {
			t.Errorf("%s answers %q, nothing answers %q", p.real, real.Error.Message, none.Error.Message)
		}
	}
	e := a.errorOf(a.do("POST", "/v1/credentials/"+aliceView.Credentials[0].ID+"/reveal", "bob", nil, 404, nil))
	if strings.Contains(e.Error.Message, alice.IdentityID) {
		t.Fatalf("a refused reveal names the identity: %q", e.Error.Message)
	}
	// A manager does not hold a report's secrets.
	e = a.errorOf(a.do("POST", "/v1/credentials/"+carolView.Credentials[0].ID+"/reveal", "bob", nil, 403, nil))
	if strings.Contains(e.Error.Message, carol.IdentityID) {
		t.Fatalf("a refused reveal names the identity: %q", e.Error.Message)
	}
	// Refused reveals handed nothing out: each secret is still there, once.
	for _, c := range []string{aliceView.Credentials[0].ID, carolView.Credentials[0].ID} {
		var rev Revealed
		a.do("POST", "/v1/credentials/"+c+"/reveal", "admin", nil, 200, &rev)
		if rev.Secret == "" {
			t.Fatalf("credential %s: no secret after refused reveals", c)
		}
	}
}

// records reads the audit trail as an auditor.
func (a *api) records() []audit.Record {
	a.t.Helper()
	var out []audit.Record
	for _, line := range bytes.Split(a.do("GET", "/v1/audit", "auditor", nil, 200, nil), []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var r audit.Record
		if err := json.Unmarshal(line, &r); err != nil {
			a.t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// refusals are the decision.refused records, in order.
func (a *api) refusals() []audit.Record {
	a.t.Helper()
	var out []audit.Record
	for _, r := range a.records() {
		if r.Action == "decision.refused" {
			out = append(out, r)
		}
	}
	return out
}

// lastAudit is the last record of action about the case.
func (a *api) lastAudit(action, caseID string) audit.Record {
	a.t.Helper()
	var found audit.Record
	for _, r := range a.records() {
		if r.Action == action && r.CaseID == caseID {
			found = r
		}
	}
	if found.Action == "" {
		a.t.Fatalf("no %s record for case %s", action, caseID)
	}
	return found
}

func auditData(t *testing.T, r audit.Record) map[string]any {
	t.Helper()
	var m map[string]any
	if len(r.Data) > 0 {
		if err := json.Unmarshal(r.Data, &m); err != nil {
			t.Fatalf("record %d data: %v", r.Seq, err)
		}
	}
	return m
}

// TestRefusedDecisionsAreAudited: every route that decides something
// (decisions) is a route, and a decision its role check refuses is audited
// with who tried, what and why, like one the engine refuses.
func TestRefusedDecisionsAreAudited(t *testing.T) {
	t.Parallel()
	for name := range decisions {
		if !slices.ContainsFunc(routes, func(r route) bool { return r.method+" "+r.path == name }) {
			t.Errorf("decisions names %q, which is not a route", name)
		}
	}
	a := principalsAPI(t, apiOptions{})
	quinnID := a.join("staff", "quinn", "human", "", nil).IdentityID
	quinn := a.token("quinn", map[string]any{"role": "approver", "identity": "staff/quinn"})
	for _, tc := range []struct{ path, decision string }{
		{"/v1/holds/hold_x/release", engine.DecisionRelease},
		{"/v1/holds/hold_x/discard", engine.DecisionDiscard},
		{"/v1/findings/fnd_x/acknowledge", engine.DecisionAcknowledge},
	} {
		e := a.errorOf(a.do("POST", tc.path, "quinn", map[string]any{"reason": "mine", "until": time.Now().Add(time.Hour)}, 403, nil))
		rs := a.refusals()
		r := rs[len(rs)-1]
		data := auditData(t, r)
		if r.Actor != quinnID || data["actorToken"] != quinn || data["decision"] != tc.decision ||
			!strings.HasSuffix(tc.path, "/"+data["target"].(string)+"/"+tc.decision) || data["reason"] != e.Error.Message {
			t.Errorf("POST %s refused: record %+v %v", tc.path, r, data)
		}
	}
}
