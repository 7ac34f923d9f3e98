package httpapi

import (
	"testing"
	"time"
)

// TestFindingsOverHTTP: findings list by state; an admin acknowledges one
// with a reason and an end; a bad acknowledgement is refused naming the
// field; the finding resolves when the NHI gets a new owner.
func TestFindingsOverHTTP(t *testing.T) {
	t.Parallel()
	a := principalsAPI(t, apiOptions{})
	a.join("staff", "olga", "human", "", nil)
	a.join("staff", "omar", "human", "", nil)
	bot := a.join("staff", "olgas-agent", "ai_agent", "olga", map[string]any{"tools": []any{"search"}})
	a.leave("staff", "olga")
	var open FindingList
	a.do("GET", "/v1/findings?state=open&identity="+bot.IdentityID, "auditor", nil, 200, &open)
	if len(open.Items) != 1 || open.Items[0].State != "open" {
		t.Fatalf("open findings = %+v", open.Items)
	}
	id := open.Items[0].ID
	a.do("GET", "/v1/findings?state=shut", "auditor", nil, 400, nil)
	until := time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"until": until}, "reason"},
		{map[string]any{"reason": "r", "until": "next week"}, "until"},
		{map[string]any{"reason": "r"}, "until"},
	} {
		e := a.errorOf(a.do("POST", "/v1/findings/"+id+"/acknowledge", "admin", tc.body, 400, nil))
		if e.Error.Field != tc.field {
			t.Fatalf("acknowledge %v: %+v, want field %s", tc.body, e, tc.field)
		}
	}
	a.do("POST", "/v1/findings/"+id+"/acknowledge", "auditor", map[string]any{"reason": "r", "until": until}, 403, nil)
	var fd map[string]any
	a.do("POST", "/v1/findings/"+id+"/acknowledge", "admin", map[string]any{"reason": "handover to omar next sprint", "until": until}, 200, &fd)
	if fd["state"] != "acknowledged" || fd["acknowledgedReason"] != "handover to omar next sprint" {
		t.Fatalf("acknowledged finding = %v", fd)
	}
	a.do("GET", "/v1/findings?state=open&identity="+bot.IdentityID, "auditor", nil, 200, &open)
	if len(open.Items) != 0 {
		t.Fatalf("open while acknowledged: %+v", open.Items)
	}
	a.do("POST", "/v1/events", "admin", map[string]any{"source": "staff", "id": "handover", "type": "mover", "externalId": "olgas-agent", "owner": "omar", "ownerSource": "staff"}, 202, nil)
	var resolved FindingList
	a.do("GET", "/v1/findings?state=resolved&identity="+bot.IdentityID, "auditor", nil, 200, &resolved)
	if len(resolved.Items) != 1 || resolved.Items[0].Resolution == "" || resolved.Items[0].ResolvedAt.IsZero() {
		t.Fatalf("resolved findings = %+v", resolved.Items)
	}
	a.do("POST", "/v1/findings/"+id+"/acknowledge", "admin", map[string]any{"reason": "r", "until": until}, 409, nil)
}
