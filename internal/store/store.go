// Package store defines jml's storage: one interface that the SQLite and
// PostgreSQL backends implement with the same semantics, proved by one
// conformance suite (storetest) run against both.
//
// The interface is wide on purpose, like River's driver interface: jml's
// invariants hold only when everything an event changes commits together,
// so every operation is a method of Tx, run inside Update or View.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/identity"
)

// ErrNotFound is wrapped by every method that looks up one thing that does
// not exist; its identity code is NotFound.
var ErrNotFound = &identity.Error{Code: identity.NotFound, Message: "not found"}

// IsNotFound reports whether err says a looked-up thing does not exist.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// Store opens transactions. Implementations are safe for concurrent use.
type Store interface {
	// Update runs fn in a read-write transaction and commits when fn
	// returns nil; any error rolls everything back. Transactions that
	// conflict with a concurrent one are retried by the implementation, so
	// fn may run more than once and must not have effects outside tx. fn
	// must not call Update itself: SQLite runs every fn on its one writer,
	// and a nested call would wait for itself.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read-only transaction that reads one consistent
	// snapshot of the database.
	View(ctx context.Context, fn func(Tx) error) error
	// Jobs is the durable job queue on the same database.
	Jobs() Jobs
	// SealAudit chains every audit record written but not yet chained,
	// before it returns. Backends that chain inside the writing transaction
	// have nothing to do; the others also seal on their own within
	// milliseconds. Verification and export call it first.
	SealAudit(ctx context.Context) error
	// Ping checks the database answers.
	Ping(ctx context.Context) error
	// Backend names the implementation ("sqlite", "postgres").
	Backend() string
	Close() error
}

// Batcher is a Store that can run several independent updates in one
// transaction, to amortise per-transaction and per-statement costs.
// UpdateBatch runs the fns in order in one transaction; if any fn or the
// commit fails, nothing is committed and the error is returned, and the
// caller runs them one by one instead. The caller guarantees that no fn
// reads rows another fn of the batch inserts: inserts may be held back and
// sent together, as multi-row statements, at the end of the batch.
type Batcher interface {
	UpdateBatch(ctx context.Context, fns []func(Tx) error) error
}

// AccessLocker is a Store shared by several processes (PostgreSQL
// replicas) that can serialise, across all of them, the calls jml makes
// for one identity in one system. LockAccess blocks until key is free (or
// ctx ends, with its error) and returns the function that frees it; a
// process that dies frees its keys. A store with one process (SQLite)
// needs none: the engine's own lock covers it.
type AccessLocker interface {
	LockAccess(ctx context.Context, key string) (unlock func(), err error)
}

// Tx is one transaction: every part below. Methods that find one thing
// return an error wrapping ErrNotFound when it does not exist. Methods are
// not safe for concurrent use; a Tx must not be used after its function
// returns. A consumer that needs one part takes that part.
type Tx interface {
	Events
	Identities
	Grants
	Credentials
	Accounts
	Cases
	Holds
	SCIM
	Findings
	Audit
	Meta
	Tokens
	Queue
}

// Events is the part of a transaction for the lifecycle events jml accepted,
// scheduled or held.
type Events interface {
	// FindEvent returns the event a source sent under its event ID: the
	// lookup that makes a resubmission a duplicate.
	FindEvent(ctx context.Context, source, sourceEventID string) (*Event, error)
	// InsertAccepted stores an event that FindEvent did not find in this
	// transaction and, when c is not nil, the case it opened; reads of
	// cases find c like any other, wherever the store keeps it. (A case
	// that shares its event's ULID and was completed on acceptance never
	// changes again, and SQL stores keep it in the event's row.) The write
	// may be sent at commit: an event with the same (source, event ID)
	// committed meanwhile fails the transaction with a conflict that the
	// store's retry turns into a fresh run, where FindEvent finds it.
	InsertAccepted(ctx context.Context, ev *Event, c *cases.Case) error
	// Prefetch reads the identities and events named, in one round trip
	// where the backend can, and keeps them for the rest of the
	// transaction: the lookups by those names that follow
	// (GetIdentityByExternalID, FindEvent) are answered from what it read,
	// kept current by the transaction's own writes of them. It is how a
	// batch of events pays for its reads once.
	Prefetch(ctx context.Context, irefs []ExternalRef, erefs []EventRef) error
	GetEvent(ctx context.Context, id string) (*Event, error)
	UpdateEvent(ctx context.Context, ev *Event) error
	// ListScheduled returns the events waiting for their effective time
	// (EventScheduled), soonest first: an identity's when identityID is
	// not "", every identity's otherwise; at most limit.
	ListScheduled(ctx context.Context, identityID string, limit int) ([]Event, error)
}

// Identities is the part of a transaction for identities and the lookups by
// source and external ID.
type Identities interface {
	InsertIdentity(ctx context.Context, id *identity.Identity) error
	// UpdateIdentity replaces every mutable field of the identity id.ID.
	UpdateIdentity(ctx context.Context, id *identity.Identity) error
	// GetIdentity and the lookups by external ID lock, in a read-write
	// transaction, the identities they return until it ends, so that
	// concurrent changes to one identity (from other replicas too) apply
	// one after the other, each reading what the previous one left.
	GetIdentity(ctx context.Context, id string) (*identity.Identity, error)
	GetIdentityByExternalID(ctx context.Context, source, externalID string) (*identity.Identity, error)
	ListIdentities(ctx context.Context, f IdentityFilter) ([]identity.Identity, error)
}

// Grants is the part of a transaction for the entitlements identities hold.
type Grants interface {
	ListGrants(ctx context.Context, identityID string) ([]identity.Grant, error)
	// PutGrant creates or replaces the grant of (IdentityID, Entitlement).
	PutGrant(ctx context.Context, g *identity.Grant) error
	// InsertGrant creates a grant the identity cannot hold yet (it was
	// created in this transaction); it fails if it does. A plain insert
	// costs PostgreSQL about half an upsert.
	InsertGrant(ctx context.Context, g *identity.Grant) error
	// DeleteGrant removes a grant; it reports whether one existed.
	DeleteGrant(ctx context.Context, identityID, entitlement string) (bool, error)
	// ListExpiringGrants returns the grants that expire at or before until
	// (grants without an expiry never do), soonest first, at most limit:
	// with until = now, the grants past their expiry still held.
	ListExpiringGrants(ctx context.Context, until time.Time, limit int) ([]identity.Grant, error)
	// CountExpiringGrants counts what ListExpiringGrants would return
	// without a limit.
	CountExpiringGrants(ctx context.Context, until time.Time) (int, error)
}

// Credentials is the part of a transaction for the secrets identities hold
// (hashes and sealed secrets, never plain text).
type Credentials interface {
	InsertCredential(ctx context.Context, c *StoredCredential) error
	GetCredential(ctx context.Context, id string) (*StoredCredential, error)
	GetCredentialByHash(ctx context.Context, hash []byte) (*StoredCredential, error)
	// ListCredentials returns an identity's credentials, active ones only
	// when activeOnly, oldest first.
	ListCredentials(ctx context.Context, identityID string, activeOnly bool) ([]identity.Credential, error)
	// RevokeCredential marks one credential revoked and drops any sealed
	// secret; it reports whether it was active.
	RevokeCredential(ctx context.Context, id string, at time.Time) (bool, error)
	// RevokeSystemCredentials revokes every active credential of an
	// identity in system and returns their IDs.
	RevokeSystemCredentials(ctx context.Context, identityID, system string, at time.Time) ([]string, error)
	// TakeSecret returns the sealed secret of an active, unrevealed
	// credential and marks it revealed, at most once: a second call gets an
	// error of code Gone.
	TakeSecret(ctx context.Context, id string) ([]byte, error)
}

// Accounts is the part of a transaction for the accounts identities have in
// systems.
type Accounts interface {
	ListAccounts(ctx context.Context, identityID string) ([]identity.Account, error)
	PutAccount(ctx context.Context, a *identity.Account) error
}

// Cases is the part of a transaction for cases and their steps, and for
// what is waiting to run.
type Cases interface {
	// InsertCase stores c and its Steps: a case no event opened (an
	// expiry, a retention, an undo), or one opened by an event stored before
	// (a scheduled event reaching its time). InsertAccepted stores the rest.
	InsertCase(ctx context.Context, c *cases.Case) error
	// GetCase returns a case with its steps in order.
	GetCase(ctx context.Context, id string) (*cases.Case, error)
	UpdateCase(ctx context.Context, c *cases.Case) error
	UpdateStep(ctx context.Context, s *cases.Step) error
	// ListOpenSteps returns the steps of any case of the identity that are
	// pending or awaiting approval, in case and sequence order.
	ListOpenSteps(ctx context.Context, identityID string) ([]cases.Step, error)

	// ListPendingCases returns, in ID order, up to limit cases that have a
	// step waiting to run (pending, not awaiting approval).
	ListPendingCases(ctx context.Context, limit int) ([]string, error)
	// CountPendingSteps counts the steps waiting to run (pending, not
	// awaiting approval) by system and action.
	CountPendingSteps(ctx context.Context) ([]StepCount, error)
	// ListCases returns an identity's cases, newest first, without steps.
	ListCases(ctx context.Context, identityID string, limit int) ([]cases.Case, error)
	// FindCases returns the cases f selects, wherever the store keeps
	// them (those completed on acceptance included), newest first by ID,
	// without steps; at most f.Limit (1 to 1000, 1000 when out of range).
	FindCases(ctx context.Context, f CaseFilter) ([]cases.Case, error)
}

// Holds is the part of a transaction for HR snapshots, held batches and the
// mass-change guard's counts.
type Holds interface {
	// GetSnapshot returns the last snapshot stored for a source (NotFound
	// if none); PutSnapshot replaces it.
	GetSnapshot(ctx context.Context, source string) ([]byte, error)
	PutSnapshot(ctx context.Context, source string, data []byte, at time.Time) error
	InsertHold(ctx context.Context, h *Hold) error
	GetHold(ctx context.Context, id string) (*Hold, error)
	// ListHolds returns holds of a status ("" for all), newest first.
	ListHolds(ctx context.Context, status HoldStatus) ([]Hold, error)
	// GetOpenHold returns the source's batch still held (NotFound if none).
	GetOpenHold(ctx context.Context, source string) (*Hold, error)
	// SetHoldEvents replaces the events of a batch still held.
	SetHoldEvents(ctx context.Context, id string, events []identity.Event) error
	// CountNarrowingEvents counts a source's leaver and suspend events
	// received since.
	CountNarrowingEvents(ctx context.Context, source string, since time.Time) (int, error)
	// CountRevocations adds up the revoke and disable steps planned by the
	// cases of a source's events created since.
	CountRevocations(ctx context.Context, source string, since time.Time) (int, error)
	// CountIdentities counts a source's identities in the states.
	CountIdentities(ctx context.Context, source string, states []identity.State) (int, error)
	// DecideHold sets a held batch's status, if it is still held; it
	// reports whether it was.
	DecideHold(ctx context.Context, id string, status HoldStatus, by string, at time.Time) (bool, error)
}

// SCIM is the part of a transaction for the SCIM server's resources.
type SCIM interface {
	// SCIM resources of a source. UserName is stored lower-cased and is
	// unique per source and resource type.
	InsertSCIM(ctx context.Context, r *SCIMResource) error
	GetSCIM(ctx context.Context, source, id string) (*SCIMResource, error)
	GetSCIMByUserName(ctx context.Context, source, resourceType, userName string) (*SCIMResource, error)
	UpdateSCIM(ctx context.Context, r *SCIMResource) error
	DeleteSCIM(ctx context.Context, source, id string) (bool, error)
	// ListSCIM returns the total matching q and one page of them.
	ListSCIM(ctx context.Context, q SCIMQuery) (int, []SCIMResource, error)
}

// Findings is the part of a transaction for findings and their lifecycle.
type Findings interface {
	// InsertFinding stores f unless an open finding of the same kind for
	// the same identity exists; it reports whether it stored it.
	InsertFinding(ctx context.Context, f *identity.Finding) (bool, error)
	ListFindings(ctx context.Context, f FindingFilter) ([]identity.Finding, error)
	GetFinding(ctx context.Context, id string) (*identity.Finding, error)
	// ResolveFindings resolves the unresolved findings of the identity of
	// any of kinds (in system, when not ""), at at, for cause, and returns
	// them.
	ResolveFindings(ctx context.Context, identityID string, kinds []string, system string, at time.Time, cause string) ([]identity.Finding, error)
	// AcknowledgeFinding records an acknowledgement of an unresolved
	// finding; ReopenFinding clears it if it is still the one until
	// until. Each reports whether it changed the finding.
	AcknowledgeFinding(ctx context.Context, id, by, reason string, at, until time.Time) (bool, error)
	ReopenFinding(ctx context.Context, id string, until time.Time) (bool, error)
}

// Audit is the part of a transaction for the hash-chained audit trail.
type Audit interface {
	// AppendAudit writes records in this transaction. A seal chains them
	// after the head: on SQLite before this transaction commits, on
	// PostgreSQL after (see Store.SealAudit), so that concurrent
	// transactions do not wait on the head lock until they commit.
	AppendAudit(ctx context.Context, recs ...audit.Record) error
	// Rows are the chain's rows (records, seals, the head) as stored.
	// What they mean is package audit's: audit.Scan reads the records
	// back with their seq and hashes, audit.Verify checks the chain.
	audit.Rows
}

// Meta is the part of a transaction for settings the database must agree on
// with every process.
type Meta interface {
	// GetMeta returns a stored setting, or "" and no error when unset.
	GetMeta(ctx context.Context, name string) (string, error)
	// PutMeta stores a setting, replacing any value.
	PutMeta(ctx context.Context, name, value string) error
}

// Tokens is the part of a transaction for API tokens for jml itself.
type Tokens interface {
	InsertToken(ctx context.Context, t *Token) error
	// GetTokenByHash and GetToken read a token with its bound identity's
	// state, in one query.
	GetTokenByHash(ctx context.Context, hash []byte) (*Token, error)
	GetToken(ctx context.Context, id string) (*Token, error)
	// RevokeIdentityTokens revokes every token bound to the identity that
	// is not revoked yet, at at, and returns their IDs.
	RevokeIdentityTokens(ctx context.Context, identityID string, at time.Time) ([]string, error)
	CountTokens(ctx context.Context) (int, error)
	// ListTokens returns every token, oldest first (hashes included).
	ListTokens(ctx context.Context) ([]Token, error)
	// RevokeToken marks a token revoked at at; it reports whether it was
	// active. An unknown ID is NotFound.
	RevokeToken(ctx context.Context, id string, at time.Time) (bool, error)
}

// Queue is the part of a transaction for durable jobs, enqueued in the
// transaction that needs them.
type Queue interface {
	// Enqueue inserts a durable job in this transaction, to run at or after
	// runAt (zero: now). It is part of the same commit as everything else.
	Enqueue(ctx context.Context, args JobArgs, runAt time.Time) error
}
