// Package connector defines how jml changes access in a target system. A
// connector drives one system (a PostgreSQL server, an LDAP directory, a
// Redis, a SCIM app, jml's built-in vault).
//
// Every operation is idempotent, because jml runs steps at least once: a
// retry after a crash or a timeout must converge, never duplicate or fail.
// "Already done" is success: granting a held entitlement, revoking one that
// is not held, disabling a disabled or missing account, deleting a missing
// account. Operations are safe for concurrent use on different accounts.
//
// jml records what it did (grants, accounts, credential hashes) in its own
// store after an operation succeeds; a connector keeps no state of its own.
package connector

import (
	"context"
	"errors"
	"time"

	"github.com/jml-dev/jml/internal/identity"
)

// Account names an identity's account in one system.
type Account struct {
	IdentityID string
	// Name is the account's name in the system, derived from the identity's
	// external ID. Connectors validate and quote it for their system; they
	// never splice it into a command or query unquoted.
	Name       string
	Kind       identity.Kind
	Attributes map[string]any
}

// Op identifies one step's attempt. IdempotencyKey is the same on every
// retry of the same step, so systems that deduplicate requests (webhooks,
// SCIM with ETags) can.
type Op struct {
	IdempotencyKey string
	CaseID         string
}

// Connector is the operations every connector has.
type Connector interface {
	// EnsureAccount creates the account if it is missing and enables it if
	// it is disabled.
	EnsureAccount(ctx context.Context, op Op, a Account) error
	// DisableAccount stops the account from authenticating and ends its
	// live sessions where the system has them. Missing is success.
	DisableAccount(ctx context.Context, op Op, a Account) error
	// DeleteAccount removes the account. Missing is success.
	DeleteAccount(ctx context.Context, op Op, a Account) error
	// Grant gives the account an entitlement (a role, a group, a rule set).
	Grant(ctx context.Context, op Op, a Account, entitlement string) error
	// Revoke takes an entitlement away. Not held is success.
	Revoke(ctx context.Context, op Op, a Account, entitlement string) error
}

// Credential is a secret to install in a system. The secret is made by
// jml's vault; the connector installs it and forgets it.
type Credential struct {
	ID        string
	Type      string
	Secret    string
	ExpiresAt time.Time // zero: no expiry
}

// CredentialSetter is a connector whose system holds secrets jml issues
// (a database password, an LDAP userPassword).
type CredentialSetter interface {
	// SetCredential installs c, replacing the account's previous secret of
	// the same kind: setting the same secret twice is success.
	SetCredential(ctx context.Context, op Op, a Account, c Credential) error
	// RevokeCredential invalidates the account's secret. None is success.
	RevokeCredential(ctx context.Context, op Op, a Account, credentialID string) error
}

// OverlapRotator is a CredentialSetter whose system can hold two secrets
// of an account at once, so that a rotation keeps the previous secret
// working for a while: clients holding it have time to pick up the new one.
type OverlapRotator interface {
	// RotationOverlap is how long a rotated-out secret keeps working; zero
	// means rotations replace at once (SetCredential).
	RotationOverlap() time.Duration
	// AddCredential installs c next to the account's current secrets.
	AddCredential(ctx context.Context, op Op, a Account, c Credential) error
	// RetireCredentials removes every secret of the account except the one
	// whose fingerprint (vault.Fingerprint: the first 8 bytes of its
	// SHA-256, in hex) is keep; keep "" removes them all. Missing account
	// is success.
	RetireCredentials(ctx context.Context, op Op, a Account, keep string) error
}

// RevokeAller is a connector that can take everything away in one call:
// disable the account and cut its sessions, remove its credentials, and
// revoke every entitlement the policy targets in the system. For a case
// that disables an account and revokes in the same system (a leaver), the
// engine makes this one call instead of one per step, and records those
// steps as done by it. Missing account is success.
type RevokeAller interface {
	RevokeAll(ctx context.Context, op Op, a Account) error
}

// AccountState is an account as the system reports it, for reconciliation.
type AccountState struct {
	Name     string
	Disabled bool
	// Entitlements are the policy's entitlements of this system the
	// account holds, sorted.
	Entitlements []string
	// Other is what the account holds in the system that no entitlement
	// targets, in the system's own names, sorted: access granted outside
	// jml.
	Other []string
}

// Lister is a connector that can list what the system holds, including
// accounts jml did not create.
type Lister interface {
	ListAccounts(ctx context.Context) ([]AccountState, error)
}

// Transactional is a connector whose system is jml's own store; the engine
// applies its steps inside the transaction that records them.
type Transactional interface {
	InTransaction() bool
}

// NameChecker is a connector that can tell, without calling its system,
// whether it can hold an account of a given name. The engine asks it when
// it accepts an event that would create or enable an account there, so
// that a name the system cannot hold is refused with a 4xx naming the
// system and its rule, instead of becoming a step that can never succeed.
type NameChecker interface {
	// CheckName returns nil when name can be an account here, or an
	// *identity.Error saying which rule it breaks.
	CheckName(name string) error
}

// Permanent reports whether err from a connector operation says the call
// can never succeed as asked: the system cannot hold the name, the account
// is protected, the entitlement has no target. Retrying such a step only
// delays the alert; everything else (a timeout, a refused connection, a
// server error) may pass, and is retried.
func Permanent(err error) bool {
	var ie *identity.Error
	if !errors.As(err, &ie) {
		return false
	}
	switch ie.Code {
	case identity.Invalid, identity.Forbidden:
		return true
	}
	return false
}

// DisableResetter is a connector whose DisableAccount also takes the
// account's entitlements and secrets away (LDAP's leaves every group and
// drops the password), so that enabling it again must restore them: the
// plan that enables such an account grants what jml records again and
// re-issues its credentials there.
type DisableResetter interface {
	DisableRemovesAccess() bool
}

// Prober is a connector that can tell whether an account exists. Before
// jml first creates an identity's account in a system, it asks: an account
// that exists and that jml did not create is someone else's, and is never
// taken over silently.
type Prober interface {
	// AccountExists reports whether the system has an account of a's name.
	AccountExists(ctx context.Context, a Account) (bool, error)
}

// Adopter is a connector that can take over an existing account for a
// system whose policy says adopt: true. Adopt resets it to what jml would
// have created: no password (or one nobody knows), no live sessions, and
// none of the privileges, roles or groups it held; the plan's steps then
// give it what policy grants. Missing is success.
type Adopter interface {
	Adopt(ctx context.Context, op Op, a Account) error
}
