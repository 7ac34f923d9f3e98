package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jml-dev/jml/internal/audit"
)

// TestCLIRecordsTheOSUser: what a command writes straight into the store
// is audited as the operating-system user who ran it ("cli:USER"), not as
// an anonymous "cli": an event, a token made and revoked.
func TestCLIRecordsTheOSUser(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pol, _ := filepath.Abs("../../examples/quickstart/policy.yaml")
	cfg := filepath.Join(dir, "jml.yaml")
	if err := os.WriteFile(cfg, []byte("policy: "+pol+"\ndb: sqlite:"+filepath.Join(dir, "jml.db")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	event := filepath.Join(dir, "alice.json")
	os.WriteFile(event, []byte(`{"source": "hr", "id": "1", "type": "joiner", "externalId": "alice", "kind": "human"}`), 0o600)
	jml := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		ev := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, osUser: func() string { return "mallory" },
			getenv: func(k string) string {
				if k == "JML_MASTER_KEY" {
					return strings.Repeat("ab", 32)
				}
				return ""
			}}
		if code := run(context.Background(), ev, append(args, "--config", cfg)); code != 0 {
			t.Fatalf("jml %s: exit %d: %s", strings.Join(args, " "), code, stderr.String())
		}
		return stdout.String()
	}
	jml("event", "-f", event)
	jml("token", "create", "--role", "auditor")
	out := jml("token", "list", "-o", "json")
	var tks []struct{ ID string }
	if err := json.Unmarshal([]byte(out), &tks); err != nil || len(tks) != 1 {
		t.Fatalf("token list printed %q", out)
	}
	jml("token", "revoke", tks[0].ID)

	actions := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(jml("audit", "export")), "\n") {
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if r.Actor != "jml" {
			actions[r.Action] = r.Actor
		}
	}
	for _, action := range []string{"event.accepted", "token.created", "token.revoked"} {
		if actions[action] != "cli:mallory" {
			t.Errorf("%s recorded as %q, want cli:mallory (every record: %v)", action, actions[action], actions)
		}
	}
	for action, actor := range actions {
		if actor != "cli:mallory" {
			t.Errorf("%s recorded as %q, want cli:mallory", action, actor)
		}
	}
}
