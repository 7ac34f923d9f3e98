package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPolicyReloadOnSIGHUP: jml serve picks up an edited policy file on
// SIGHUP, and keeps the running policy when the new file does not compile.
func TestPolicyReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "jml")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	policy := `systems: [{name: vault, type: builtin}]
entitlements: [{name: wiki, system: vault}, {name: lab, system: vault}]
birthright:
  - {name: staff, when: 'identity.kind == "human"', entitlements: [wiki]}
`
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("policy.yaml", policy)
	write("jml.yaml", "policy: policy.yaml\ndb: sqlite:jml.db\n")
	const token = "reload-test-admin-token-0000"
	srv := startServer(t, bin, dir, token)
	defer srv.cmd.Process.Kill()

	grants := func(id string) string {
		r, err := post(srv.url, token, map[string]any{"source": "hr", "id": id, "type": "joiner", "externalId": id, "kind": "human"})
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("GET", srv.url+"/v1/cases/"+r.CaseID, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var c struct {
			Steps []struct {
				Entitlement string `json:"entitlement"`
			} `json:"steps"`
		}
		json.NewDecoder(resp.Body).Decode(&c)
		var out []string
		for _, s := range c.Steps {
			if s.Entitlement != "" {
				out = append(out, s.Entitlement)
			}
		}
		return strings.Join(out, ",")
	}
	waitLog := func(want string) {
		waitFor(t, 10*time.Second, func() (bool, string) {
			log := srv.log.String()
			return strings.Contains(log, want), fmt.Sprintf("no %q in the server log:\n%s", want, log)
		})
	}

	if got := grants("a"); got != "wiki" {
		t.Fatalf("before reload: %q, want wiki", got)
	}
	write("policy.yaml", policy+"  - {name: lab, when: 'identity.kind == \"human\"', entitlements: [lab]}\n")
	srv.cmd.Process.Signal(syscall.SIGHUP)
	waitLog("policy reloaded")
	if got := grants("b"); got != "lab,wiki" {
		t.Fatalf("after reload: %q, want lab,wiki", got)
	}
	write("policy.yaml", "birthright: [{name: x, when: 'nope(', entitlements: [lab]}]\n")
	srv.cmd.Process.Signal(syscall.SIGHUP)
	waitLog("policy reload failed")
	if got := grants("c"); got != "lab,wiki" {
		t.Fatalf("after a bad reload: %q, want the running policy (lab,wiki)", got)
	}
}
