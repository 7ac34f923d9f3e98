package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/poll"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/sqlite"
)

// server is a jml serve process under test.
type server struct {
	cmd *exec.Cmd
	url string
	log *syncBuffer
}

// syncBuffer is a bytes.Buffer the server process's output can be written
// to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func startServer(t *testing.T, bin, dir, token string) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &server{url: "http://" + addr, log: &syncBuffer{}}
	s.cmd = exec.Command(bin, "serve", "--config", "jml.yaml", "--addr", addr)
	s.cmd.Dir = dir
	s.cmd.Env = append(os.Environ(), "JML_BOOTSTRAP_TOKEN="+token, "JML_MASTER_KEY="+strings.Repeat("cd", 32))
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() (bool, string) {
		resp, err := http.Get(s.url + "/readyz")
		if err != nil {
			return false, "jml serve not ready: " + err.Error() + "\n" + s.log.String()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, "jml serve not ready: " + resp.Status + "\n" + s.log.String()
	})
	return s
}

// waitFor polls cond every 10 ms until it holds, and fails the test with
// cond's message when it still does not after timeout.
func waitFor(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	poll.Until(t, timeout, 10*time.Millisecond, cond)
}

type submitResult struct {
	CaseID string `json:"caseId"`
}

func post(url, token string, body any) (*submitResult, error) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url+"/v1/events", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 202 && resp.StatusCode != 200 {
		var e map[string]any
		json.NewDecoder(resp.Body).Decode(&e)
		return nil, fmt.Errorf("status %d: %v", resp.StatusCode, e)
	}
	var r submitResult
	return &r, json.NewDecoder(resp.Body).Decode(&r)
}

// TestCrashRecovery SIGKILLs jml serve while it applies 500 events (250
// joiners, then the 250 leavers of the same people), restarts it, lets the
// source resubmit whatever it did not see acknowledged, and checks that
// every case completes, no leaver holds an active credential, and no step
// was applied twice. Built-in steps run as River jobs here
// (jobs.builtinAsJobs), so the crash interrupts real jobs.
func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "jml")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	policy, _ := filepath.Abs("../../examples/quickstart/policy.yaml")
	cfg := fmt.Sprintf("policy: %s\ndb: sqlite:jml.db\njobs:\n  workers: 4\n  fetchCooldown: 2ms\n  pollInterval: 20ms\n  timeout: 1s\n  rescueStuckAfter: 2s\n  builtinAsJobs: true\nlog:\n  level: warn\n", policy)
	if err := os.WriteFile(filepath.Join(dir, "jml.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	const token = "crash-test-admin-token-000"
	const people = 250
	events := make([]map[string]any, 0, 2*people)
	for i := 0; i < people; i++ {
		events = append(events, map[string]any{"source": "hr", "id": fmt.Sprintf("j%d", i), "type": "joiner", "externalId": fmt.Sprintf("p%d", i),
			"kind": "human", "attributes": map[string]any{"department": "Engineering"}})
	}
	for i := 0; i < people; i++ {
		events = append(events, map[string]any{"source": "hr", "id": fmt.Sprintf("l%d", i), "type": "leaver", "externalId": fmt.Sprintf("p%d", i)})
	}

	srv := startServer(t, bin, dir, token)
	var mu sync.Mutex
	acked := map[int]string{} // event index -> case ID
	// reached closes once a good part of the leavers is in: the moment to
	// kill the server, mid-flight.
	reached, reachedOnce := make(chan struct{}), sync.Once{}
	// submit sends events in order (a leaver only after its joiner was
	// acknowledged, as a source would), from 4 goroutines, until the
	// server dies.
	submit := func(url string) {
		var wg sync.WaitGroup
		for _, part := range [][2]int{{0, people}, {people, 2 * people}} {
			next := make(chan int)
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range next {
						mu.Lock()
						_, done := acked[i]
						mu.Unlock()
						if done {
							continue
						}
						r, err := post(url, token, events[i])
						if err != nil {
							continue // the server is gone; resubmit after restart
						}
						mu.Lock()
						acked[i] = r.CaseID
						if len(acked) >= people+people/3 {
							reachedOnce.Do(func() { close(reached) })
						}
						mu.Unlock()
					}
				}()
			}
			for i := part[0]; i < part[1]; i++ {
				next <- i
			}
			close(next)
			wg.Wait()
		}
	}
	killed := make(chan struct{})
	go func() {
		<-reached
		srv.cmd.Process.Signal(syscall.SIGKILL)
		close(killed)
	}()
	submit(srv.url)
	<-killed
	srv.cmd.Wait()
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	if before == 2*people {
		t.Fatalf("all %d events were acknowledged before the kill: the crash came too late to test anything", before)
	}
	t.Logf("killed with %d of %d events acknowledged", before, 2*people)

	// No wait for River's rescuer: jml serve resumes the cases that were
	// running when it died (Engine.Resume).
	srv = startServer(t, bin, dir, token)
	defer srv.cmd.Process.Kill()
	submit(srv.url)
	if len(acked) != 2*people {
		t.Fatalf("after restart only %d of %d events acknowledged\n%s", len(acked), 2*people, srv.log)
	}
	// Resubmitting everything answers duplicates with the same case.
	for i := 0; i < 2*people; i += 50 {
		r, err := post(srv.url, token, events[i])
		if err != nil || r.CaseID != acked[i] {
			t.Fatalf("resubmitted event %d: case %v, %v; first answer %s", i, r, err, acked[i])
		}
	}

	// Every case completes.
	for i := 0; i < 2*people; i++ {
		waitFor(t, 60*time.Second, func() (bool, string) {
			req, _ := http.NewRequest("GET", srv.url+"/v1/cases/"+acked[i], nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false, err.Error()
			}
			var c cases.Case
			json.NewDecoder(resp.Body).Decode(&c)
			resp.Body.Close()
			return c.Status == cases.Completed, fmt.Sprintf("case %s of event %d is %s (%s)\n%s", c.ID, i, c.Status, c.Reason, srv.log)
		})
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	srv.cmd.Wait()

	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(dir, "jml.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	records, steps := checkAuditOnce(t, s)
	err = s.View(ctx, func(tx store.Tx) error {
		ids, err := tx.ListIdentities(ctx, store.IdentityFilter{})
		if err != nil {
			return err
		}
		if len(ids) != people {
			t.Errorf("%d identities, want %d", len(ids), people)
		}
		for _, id := range ids {
			if id.State != identity.Departed {
				t.Errorf("%s is %s after its leaver", id.ExternalID, id.State)
			}
			creds, err := tx.ListCredentials(ctx, id.ID, false)
			if err != nil {
				return err
			}
			// One issued, or none when the leaver overtook the queued
			// joiner; never two.
			if len(creds) > 1 {
				t.Errorf("%s holds %d credentials: issued more than once", id.ExternalID, len(creds))
			}
			for _, c := range creds {
				if c.Status != identity.CredentialRevoked {
					t.Errorf("leaver %s has credential %s %s", id.ExternalID, c.ID, c.Status)
				}
			}
			grants, err := tx.ListGrants(ctx, id.ID)
			if err != nil {
				return err
			}
			if len(grants) != 0 {
				t.Errorf("leaver %s still holds %d grants", id.ExternalID, len(grants))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if steps == 0 {
		t.Fatal("no step.done records: the job path did not run")
	}
	t.Logf("%d audit records verified, %d steps each done once", records, steps)
}
