package engine

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/vault"
)

// keyring is a target that holds several secrets per account and rotates
// with an overlap.
type keyring struct {
	target
	mu      sync.Mutex
	secrets []string
	keep    []string // RetireCredentials' keep arguments
}

func (k *keyring) SetCredential(_ context.Context, _ connector.Op, _ connector.Account, c connector.Credential) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.secrets = []string{c.Secret}
	return nil
}
func (k *keyring) RevokeCredential(context.Context, connector.Op, connector.Account, string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.secrets = nil
	return nil
}
func (k *keyring) RotationOverlap() time.Duration { return 10 * time.Minute }
func (k *keyring) AddCredential(_ context.Context, _ connector.Op, _ connector.Account, c connector.Credential) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.secrets = append(k.secrets, c.Secret)
	return nil
}
func (k *keyring) RetireCredentials(_ context.Context, _ connector.Op, _ connector.Account, keep string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keep = append(k.keep, keep)
	var left []string
	for _, s := range k.secrets {
		if vault.Fingerprint(s) == keep {
			left = append(left, s)
		}
	}
	k.secrets = left
	return nil
}

const overlapPolicy = `
systems: [{name: cache, type: test}]
entitlements: [{name: cache-read, system: cache}]
birthright:
  - {name: all, when: 'identity.kind == "service_account"', entitlements: [cache-read]}
credentials:
  - {name: cache-pw, when: 'identity.kind == "service_account"', system: cache, type: password, rotateOnMove: true}
`

// TestRotationWithOverlap: a mover rotates the password by adding the new
// one; the old one is retired by the job due when the overlap ends, which
// keeps exactly the new one.
func TestRotationWithOverlap(t *testing.T) {
	t.Parallel()
	kr := &keyring{target: target{grants: map[string]bool{}}}
	f := newConnectorFixture(t, overlapPolicy, -1, map[string]connector.Connector{"cache": kr})
	e, s := f.e, f.s
	ctx := context.Background()
	if _, err := e.Submit(ctx, source, ev("o", identity.Joiner, "owner", func(e *identity.Event) { e.Kind = identity.Human })); err != nil {
		t.Fatal(err)
	}
	res, err := e.Submit(ctx, source, ev("1", identity.Joiner, "svc", func(e *identity.Event) { e.Kind = identity.ServiceAccount; e.Owner = "owner" }))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.RunCase(ctx, res.CaseID, false); err != nil {
		t.Fatal(err)
	}
	first := kr.secrets[0]
	res, err = e.Submit(ctx, source, ev("2", identity.Mover, "svc", func(e *identity.Event) { e.Attributes = map[string]any{"team": "b"} }))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.RunCase(ctx, res.CaseID, false); err != nil {
		t.Fatal(err)
	}
	if len(kr.secrets) != 2 || kr.secrets[0] != first {
		t.Fatalf("during the overlap the account holds %d secrets, want the old and the new", len(kr.secrets))
	}
	cs := f.getCase(t, res.CaseID)
	var rotated cases.Step
	for _, st := range cs.Steps {
		if st.Action == "rotate_credential" {
			rotated = st
		}
	}
	if !strings.Contains(rotated.Result, "the previous secret works until 2026-06-01T09:10:00Z") {
		t.Fatalf("rotate step result = %q", rotated.Result)
	}
	if err := e.RetireCredentials(ctx, RetireCredentialsArgs{IdentityID: res.IdentityID, System: "cache", Rule: "cache-pw"}); err != nil {
		t.Fatal(err)
	}
	if len(kr.secrets) != 1 || kr.secrets[0] == first {
		t.Fatalf("after the overlap the account holds %d secrets (old kept: %v)", len(kr.secrets), len(kr.secrets) > 0 && kr.secrets[0] == first)
	}
	var creds []identity.Credential
	s.View(ctx, func(tx store.Tx) error {
		creds, err = tx.ListCredentials(ctx, res.IdentityID, true)
		return err
	})
	if len(creds) != 1 || kr.keep[0] != creds[0].Fingerprint {
		t.Fatalf("retire kept %v, active credential %+v", kr.keep, creds)
	}
}
