package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/scimserver"
	"github.com/jml-dev/jml/internal/store/sqlite"
)

// scimBench POSTs users and then PATCHes each (a mover) through the SCIM
// server over real HTTP with 8 concurrent clients, on SQLite; every
// request is a lifecycle event accepted durably with its resource. The
// baseline is plain one-row INSERT transactions on the same file, 8 at a
// time, in the same run.
func scimBench(ctx context.Context, o Options) error {
	const clients = 8
	n := o.SCIMUsers
	s, err := sqlite.Open(ctx, filepath.Join(o.Dir, "scim.db"), sqlite.Options{Logger: o.Log})
	if err != nil {
		return err
	}
	defer s.Close()
	pol, err := policy.Parse("scim.yaml", []byte(joinerPolicy))
	if err != nil {
		return err
	}
	e, err := engine.New(engine.Config{Store: s, Policy: pol, Sealer: mustSealer(), Logger: o.Log})
	if err != nil {
		return err
	}
	srv, err := scimserver.New(e, scimserver.Parts(s), []scimserver.SourceConfig{{Name: "idp"}}, o.Log)
	if err != nil {
		return err
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	token, _, err := e.IssueToken(ctx, admin, engine.TokenSpec{Role: engine.RoleSource, Source: "idp"})
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	send := func(method, path string, body any, want int) (map[string]any, error) {
		data, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, method, hs.URL+path, bytes.NewReader(data))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/scim+json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, out)
		}
		var m map[string]any
		return m, json.Unmarshal(out, &m)
	}
	ids := make([]string, n)
	run := func(fn func(i int) error) (time.Duration, error) {
		var next atomic.Int64
		var wg sync.WaitGroup
		errc := make(chan error, clients)
		start := time.Now()
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= n {
						return
					}
					if err := fn(i); err != nil {
						errc <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errc)
		return time.Since(start), <-errc
	}
	post, err := run(func(i int) error {
		m, err := send("POST", "/scim/idp/v2/Users", map[string]any{"schemas": []string{scimserver.UserSchema}, "userName": fmt.Sprintf("user%d@example.com", i),
			"displayName": fmt.Sprintf("User %d", i), "title": "Engineer"}, 201)
		if err == nil {
			ids[i], _ = m["id"].(string)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("POST: %w", err)
	}
	patch, err := run(func(i int) error {
		_, err := send("PATCH", "/scim/idp/v2/Users/"+ids[i], map[string]any{"schemas": []string{scimserver.PatchSchema},
			"Operations": []map[string]any{{"op": "replace", "path": "title", "value": "Staff Engineer"}}}, 200)
		return err
	})
	if err != nil {
		return fmt.Errorf("PATCH: %w", err)
	}
	db := s.DB()
	if _, err := db.ExecContext(ctx, "CREATE TABLE bench_inserts (id INTEGER PRIMARY KEY, name TEXT NOT NULL, data TEXT NOT NULL)"); err != nil {
		return err
	}
	raw, err := run(func(i int) error {
		_, err := db.ExecContext(ctx, "INSERT INTO bench_inserts (name, data) VALUES (?, ?)", fmt.Sprintf("user%d", i), `{"userName":"x"}`)
		return err
	})
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
	fmt.Fprintf(o.Out, "\nSCIM over HTTP (SQLite, %d clients, %d users; each request a durable lifecycle event with its resource)\n", clients, n)
	fmt.Fprintf(o.Out, "  POST /Users (joiner):  %6.0f/s  (goal >= 1000/s)\n", rate(post))
	fmt.Fprintf(o.Out, "  PATCH /Users (mover):  %6.0f/s\n", rate(patch))
	fmt.Fprintf(o.Out, "  baseline plain INSERT: %6.0f/s  (one-row transactions, same file, same clients)\n", rate(raw))
	fmt.Fprintf(o.Out, "  ratio POST %.2f  PATCH %.2f\n", rate(post)/rate(raw), rate(patch)/rate(raw))
	return nil
}
