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
// A reload under which a stored identity's attributes no longer fit the
// declared values reports it as a finding and leaves its access as it was.
func TestPolicyReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "jml")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	policy := `attributes: [{name: team, type: string, values: [red, blue]}]
systems: [{name: vault, type: builtin}]
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
	if _, err := post(srv.url, token, map[string]any{"source": "hr", "id": "red", "type": "joiner", "externalId": "red", "kind": "human",
		"attributes": map[string]any{"team": "red"}}); err != nil {
		t.Fatal(err)
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

	// red is no longer a team: the identity that is in it is reported,
	// once, and keeps its access; a mover that keeps red is refused.
	write("policy.yaml", strings.Replace(policy, "values: [red, blue]", "values: [blue, green]", 1))
	srv.cmd.Process.Signal(syscall.SIGHUP)
	waitLog("identities hold attribute values the policy does not admit")
	get := func(path string, out any) {
		req, _ := http.NewRequest("GET", srv.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	var findings struct {
		Items []struct {
			IdentityID string `json:"identityId"`
			Message    string `json:"message"`
			State      string `json:"state"`
		} `json:"items"`
	}
	get("/v1/findings?kind=attributes_invalid", &findings)
	if len(findings.Items) != 1 || findings.Items[0].State != "open" ||
		!strings.HasPrefix(findings.Items[0].Message, `attributes.team: the policy declares it string, one of blue, green; "red" is not one of them`) {
		t.Fatalf("findings after the reload: %+v", findings.Items)
	}
	var view struct {
		Grants []struct {
			Entitlement string `json:"entitlement"`
		} `json:"grants"`
	}
	get("/v1/identities/"+findings.Items[0].IdentityID, &view)
	if len(view.Grants) != 1 || view.Grants[0].Entitlement != "wiki" {
		t.Fatalf("the reload changed access: %+v", view.Grants)
	}
	_, err := post(srv.url, token, map[string]any{"source": "hr", "id": "red-2", "type": "mover", "externalId": "red", "displayName": "Red"})
	if err == nil || !strings.Contains(err.Error(), "status 400") || !strings.Contains(err.Error(), "attributes.team") {
		t.Fatalf("a mover keeping the bad value: %v", err)
	}
}
