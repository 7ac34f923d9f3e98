package scimserver

import (
	"bytes"
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/jml-dev/jml/internal/clock"
	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/store/sqlite"
	"github.com/jml-dev/jml/internal/vault"
)

// zeros is a random source that is all zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestIDsAndTimesComeFromTheEngine: a resource's id is drawn from the
// engine's clock and random source, and its times from the engine's clock,
// not the machine's, so that a test fixing both fixes them.
func TestIDsAndTimesComeFromTheEngine(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "jml.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	pol, err := policy.LoadFile("../../examples/quickstart/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sealer, _ := vault.NewSealer(bytes.Repeat([]byte{7}, 32))
	// Years away from the machine's time, so neither can pass for the other.
	at := time.Date(2041, 3, 4, 5, 6, 7, 0, time.UTC)
	clk := clock.NewFake(at)
	e, err := engine.New(engine.Config{Store: s, Policy: pol, Sealer: sealer, Clock: clk, Rand: zeros{}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(e, Parts(s), []SourceConfig{{Name: "entra"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	secret, _, err := e.IssueToken(ctx, engine.Principal{ID: "tok_admin", Role: engine.RoleAdmin}, engine.TokenSpec{Name: "entra", Role: engine.RoleSource, Source: "entra"})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, e: e, s: s, url: hs.URL, tokens: map[string]string{"entra": secret}}
	for _, c := range []struct {
		path string
		body map[string]any
	}{
		// Created inactive: no event, so the server's own transaction
		// stores it.
		{"/scim/entra/v2/Users", map[string]any{"schemas": []string{UserSchema}, "userName": "ada", "active": false}},
		{"/scim/entra/v2/Groups", map[string]any{"schemas": []string{GroupSchema}, "displayName": "ops"}},
	} {
		// A millisecond apart: with no randomness, the time alone tells
		// two IDs apart.
		clk.Advance(time.Millisecond)
		at := clk.Now()
		want := ulid.MustNew(ulid.Timestamp(at), zeros{}).String()
		code, _, body := f.do("POST", c.path, "entra", c.body)
		f.want(201, "", code, body)
		if body["id"] != want {
			t.Errorf("POST %s: id %v, want %s (the engine's clock and random source)", c.path, body["id"], want)
		}
		meta, _ := body["meta"].(map[string]any)
		if meta["created"] != at.Format(time.RFC3339Nano) || meta["lastModified"] != at.Format(time.RFC3339Nano) {
			t.Errorf("POST %s: meta %v, want created and lastModified %s (the engine's clock)", c.path, meta, at.Format(time.RFC3339Nano))
		}
	}
}
