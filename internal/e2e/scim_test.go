package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/scimserver"
	"github.com/jml-dev/jml/internal/store"
)

// TestSCIMDeactivationRevokesEverywhere: an identity provider creates a
// user over SCIM, and later deactivates it as Entra ID does; the user's
// accounts in PostgreSQL, LDAP, Redis and MariaDB are locked out.
func TestSCIMDeactivationRevokesEverywhere(t *testing.T) {
	t.Parallel()
	f := setup(t, "")
	srv, err := scimserver.New(f.e, scimserver.Parts(f.s), []scimserver.SourceConfig{{Name: "idp"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	token, _, err := f.e.IssueToken(context.Background(), admin, engine.TokenSpec{Role: engine.RoleSource, Source: "idp"})
	if err != nil {
		t.Fatal(err)
	}
	send := func(method, path, body string, want int) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, hs.URL+path, bytes.NewReader([]byte(body)))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/scim+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s = %d %s", method, path, resp.StatusCode, data)
		}
		var out map[string]any
		json.Unmarshal(data, &out)
		return out
	}
	user := send("POST", "/scim/v2/Users", `{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
	  "userName": "dana@example.com", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Engineering"}}`, 201)
	account := user["id"].(string) // the identity's external ID, and so its account name
	f.account = account
	t.Cleanup(f.cleanupAccounts)

	var id *identity.Identity
	f.s.View(context.Background(), func(tx store.Tx) error {
		id, err = tx.GetIdentityByExternalID(context.Background(), "idp", account)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	latest := func() *cases.Case {
		var cs []cases.Case
		f.s.View(context.Background(), func(tx store.Tx) error {
			cs, err = tx.ListCases(context.Background(), id.ID, 1)
			return err
		})
		if err != nil || len(cs) == 0 {
			t.Fatalf("cases of %s: %v", id.ID, err)
		}
		return &cs[0]
	}
	done := func(c *cases.Case) bool { return c.Status == cases.Completed || c.Status == cases.Failed }
	if c := f.waitCase(t, latest().ID, time.Minute, done); c.Status != cases.Completed {
		t.Fatalf("joiner: %s %s\n%s", c.Status, c.Reason, steps(c))
	}
	secrets := f.secrets(t, id.ID)
	live := login(t, account, secrets)

	send("PATCH", "/scim/v2/Users/"+account, `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
	  "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}`, 200)
	c := f.waitCase(t, latest().ID, time.Minute, done)
	if c.Type != identity.Leaver || c.Status != cases.Completed {
		t.Fatalf("after deactivation: %s case %s %s\n%s", c.Type, c.Status, c.Reason, steps(c))
	}
	if !strings.Contains(steps(c), "with disable_account") {
		t.Fatalf("the leaver did not revoke with one call per system:\n%s", steps(c))
	}
	assertLockedOut(t, account, secrets, live)
}
