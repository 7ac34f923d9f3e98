package httpapi

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/policy"
)

// listsAPI is a server with the principals policy on backend, and its
// people and agents: olga owns agent a1 (search), omar owns a2 (search and
// the critical prod-write, which waits for approval).
func listsAPI(t *testing.T, backend string) (a *api, olga, a1, a2 engine.Result) {
	t.Helper()
	pol, err := policy.Parse("principals.yaml", []byte(principalsPolicy))
	if err != nil {
		t.Fatal(err)
	}
	a = newAPIWith(t, backend, apiOptions{policy: pol})
	olga = a.join("staff", "olga", "human", "", nil)
	a.join("staff", "omar", "human", "", nil)
	a1 = a.join("staff", "a1", "ai_agent", "olga", map[string]any{"tools": []any{"search"}})
	a2 = a.join("staff", "a2", "ai_agent", "omar", map[string]any{"tools": []any{"search", "prod-write"}})
	a.token("olga", map[string]any{"role": "member", "identity": "staff/olga"})
	return a, olga, a1, a2
}

func externalIDs(l IdentityList) []string {
	var out []string
	for _, i := range l.Items {
		out = append(out, i.ExternalID)
	}
	slices.Sort(out)
	return out
}

// TestWhoHasAccess: GET /v1/identities?entitlement= lists who holds an
// entitlement (not who waits for it), ?system= who has access in a system,
// within the caller's reach; a name the policy does not have is a 400
// naming the parameter and the name.
func TestWhoHasAccess(t *testing.T) {
	t.Parallel()
	a, _, _, _ := listsAPI(t, "sqlite")
	for _, c := range []struct {
		query, token string
		want         []string
	}{
		{"entitlement=tool:search", "auditor", []string{"a1", "a2"}},
		{"entitlement=tool:prod-write", "auditor", nil},     // awaits approval: not held
		{"entitlement=tool:search", "olga", []string{"a1"}}, // her own agent only
		// Passwords and keys of the built-in vault: every person and agent.
		{"system=vault", "auditor", []string{"a1", "a2", "lead", "olga", "omar"}},
		{"system=vault&kind=ai_agent", "approver", []string{"a1", "a2"}},
		{"system=vault&entitlement=tool:search&limit=1", "auditor", []string{"a1"}},
	} {
		var l IdentityList
		a.do("GET", "/v1/identities?"+c.query, c.token, nil, 200, &l)
		if got := externalIDs(l); !slices.Equal(got, c.want) {
			t.Errorf("%s as %s = %v, want %v", c.query, c.token, got, c.want)
		}
	}
	for _, c := range []struct{ query, field, names, has string }{
		{"entitlement=tool:nope", "entitlement", "tool:nope", "tool:prod-write, tool:search"},
		{"system=appdb", "system", "appdb", "vault"},
	} {
		e := a.errorOf(a.do("GET", "/v1/identities?"+c.query, "auditor", nil, 400, nil))
		if e.Error.Field != c.field || !strings.Contains(e.Error.Message, c.names) || !strings.Contains(e.Error.Message, c.has) {
			t.Errorf("%s: %+v, want field %s naming %s and listing %s", c.query, e.Error, c.field, c.names, c.has)
		}
	}
}

// TestCaseList: GET /v1/cases filters by status, type, identity and time,
// pages with its cursor, lists the cases completed on acceptance (kept in
// their event's row) with the others, keeps a member to its own, and
// refuses a bad value naming the parameter and the allowed values.
func TestCaseList(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) { testCaseList(t, backend) })
	}
}

func testCaseList(t *testing.T, backend string) {
	a, olga, a1, a2 := listsAPI(t, backend)
	ids := func(l CaseList) []string {
		var out []string
		for _, c := range l.Items {
			out = append(out, c.ID)
		}
		return out
	}
	// What waits for an approver: a2's critical tool, and nothing else.
	var waiting CaseList
	a.do("GET", "/v1/cases?status=awaiting_approval", "approver", nil, 200, &waiting)
	if got := ids(waiting); !slices.Equal(got, []string{a2.CaseID}) || waiting.Items[0].Type != "joiner" || len(waiting.Items[0].Steps) != 0 {
		t.Fatalf("awaiting approval = %+v, want a2's case %s", waiting.Items, a2.CaseID)
	}
	// olga's joiner was completed on acceptance: it is listed all the same.
	var hers CaseList
	a.do("GET", "/v1/cases?identity=staff/olga", "auditor", nil, 200, &hers)
	if got := ids(hers); !slices.Equal(got, []string{olga.CaseID}) || hers.Items[0].Status != cases.Completed {
		t.Fatalf("olga's cases = %+v, want %s completed", hers.Items, olga.CaseID)
	}
	a.do("GET", "/v1/cases?identity="+olga.IdentityID, "auditor", nil, 200, &hers)
	if got := ids(hers); !slices.Equal(got, []string{olga.CaseID}) {
		t.Fatalf("olga's cases by jml ID = %v", got)
	}
	// Every joiner (lead's from the setup, olga, omar, a1, a2), in pages
	// of two, newest first, none twice.
	var all []string
	after := ""
	for page := 0; page < 5; page++ {
		var l CaseList
		a.do("GET", "/v1/cases?type=joiner&limit=2&after="+after, "auditor", nil, 200, &l)
		all = append(all, ids(l)...)
		if l.Next == "" {
			break
		}
		after = l.Next
	}
	if len(all) != 5 {
		t.Fatalf("joiners in pages = %v, want 5", all)
	}
	for i := 1; i < len(all); i++ {
		if all[i-1] <= all[i] {
			t.Fatalf("joiners in pages = %v, want newest first, none twice", all)
		}
	}
	for _, want := range []string{olga.CaseID, a1.CaseID, a2.CaseID} {
		if !slices.Contains(all, want) {
			t.Fatalf("joiners %v lack %s", all, want)
		}
	}
	var none CaseList
	future := url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	a.do("GET", "/v1/cases?since="+future, "auditor", nil, 200, &none)
	if len(none.Items) != 0 {
		t.Fatalf("cases since an hour ahead = %v", ids(none))
	}
	var recent CaseList
	past := url.QueryEscape(time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
	a.do("GET", "/v1/cases?since="+past+"&type=joiner", "auditor", nil, 200, &recent)
	if len(recent.Items) != 5 {
		t.Fatalf("joiners since an hour ago = %v", ids(recent))
	}
	// A member lists the cases of herself and her agent, not omar's.
	var mine CaseList
	a.do("GET", "/v1/cases", "olga", nil, 200, &mine)
	if got := ids(mine); len(got) != 2 || !slices.Contains(got, olga.CaseID) || !slices.Contains(got, a1.CaseID) {
		t.Fatalf("olga lists %v, want %s and %s", got, olga.CaseID, a1.CaseID)
	}
	// Someone else's identity answers as one that does not exist.
	other := a.errorOf(a.do("GET", "/v1/cases?identity=staff/omar", "olga", nil, 400, nil))
	nobody := a.errorOf(a.do("GET", "/v1/cases?identity=staff/nobody", "olga", nil, 400, nil))
	if other.Error.Field != "identity" || strings.ReplaceAll(other.Error.Message, "omar", "X") != strings.ReplaceAll(nobody.Error.Message, "nobody", "X") {
		t.Fatalf("someone else's identity: %+v; nobody: %+v", other.Error, nobody.Error)
	}
	for _, c := range []struct{ query, field, says string }{
		{"status=waiting", "status", "awaiting_approval"},
		{"type=hire", "type", "retention"},
		{"since=yesterday", "since", "RFC 3339"},
		{"identity=staff/nobody", "identity", "no identity"},
		{"after=evt_1", "after", "case ID"},
		{"limit=0", "limit", "1 to 1000"},
		{"state=failed", "state", "status, type, identity, since"},
	} {
		e := a.errorOf(a.do("GET", "/v1/cases?"+c.query, "auditor", nil, 400, nil))
		if e.Error.Field != c.field || !strings.Contains(e.Error.Message, c.says) {
			t.Errorf("%s: %+v, want field %s saying %q", c.query, e.Error, c.field, c.says)
		}
	}
	a.do("GET", "/v1/cases", "resource", nil, 403, nil)
	a.do("GET", "/v1/cases", "", nil, 401, nil)
}

// TestScheduled: GET /v1/scheduled (admin only) lists what is due, and the
// identity view lists an identity's own; a later end date replaces the
// earlier one in both.
func TestScheduled(t *testing.T) {
	t.Parallel()
	a, olga, _, _ := listsAPI(t, "sqlite")
	end := func(id string, at time.Time) {
		a.do("POST", "/v1/events", "admin", map[string]any{"source": "staff", "id": id, "type": "leaver", "externalId": "olga", "effectiveAt": at.Format(time.RFC3339)}, 202, nil)
	}
	first, second := time.Now().Add(48*time.Hour).UTC().Truncate(time.Second), time.Now().Add(96*time.Hour).UTC().Truncate(time.Second)
	end("end-1", first)
	end("end-2", second)
	var l ScheduleList
	a.do("GET", "/v1/scheduled", "admin", nil, 200, &l)
	var events []engine.Due
	for _, d := range l.Items {
		if d.Kind == engine.DueEvent {
			events = append(events, d)
		}
	}
	if len(events) != 1 || events[0].SourceEventID != "end-2" || !events[0].At.Equal(second) || events[0].IdentityID != olga.IdentityID || events[0].Type != "leaver" {
		t.Fatalf("scheduled events = %+v, want olga's second end date only", events)
	}
	a.do("GET", "/v1/scheduled?kind=event&until="+url.QueryEscape(first.Format(time.RFC3339)), "admin", nil, 200, &l)
	if len(l.Items) != 0 {
		t.Fatalf("due by the first end date = %+v, want nothing", l.Items)
	}
	var v engine.IdentityView
	a.do("GET", "/v1/identities/"+olga.IdentityID, "auditor", nil, 200, &v)
	if len(v.Scheduled) != 1 || v.Scheduled[0].SourceEventID != "end-2" {
		t.Fatalf("olga's view lists %+v, want her second end date", v.Scheduled)
	}
	a.do("GET", "/v1/scheduled", "auditor", nil, 403, nil)
	for q, field := range map[string]string{"kind=soon": "kind", "limit=0": "limit", "until=tomorrow": "until"} {
		if e := a.errorOf(a.do("GET", "/v1/scheduled?"+q, "admin", nil, 400, nil)); e.Error.Field != field {
			t.Errorf("%s: %+v, want field %s", q, e.Error, field)
		}
	}
}
