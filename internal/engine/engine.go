// Package engine runs jml's lifecycle: it accepts events in one transaction
// (the event, the identity's state, and the case, which an ordered list of
// participants builds: planning, retention, offboarding, the built-in
// vault's steps, findings; see package accept), runs the steps as durable
// River jobs through connectors, gates widening behind approval, and
// answers credential introspection. Its jobs and timers are registered
// with package jobs by the file that owns each.
//
// It wires the pure core (identity, policy, plan, cases) to I/O (store,
// connectors); time and randomness are injected.
package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/jml-dev/jml/internal/accept"
	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/clock"
	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/findings"
	"github.com/jml-dev/jml/internal/guard"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/offboard"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/retention"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/vault"
)

// System is the principal of the engine's own actions (timers, expiry).
var System = Principal{ID: "jml", Role: RoleAdmin}

// CaseExpiry is the type of cases the engine opens when a grant expires.
const CaseExpiry identity.EventType = "expiry"

// CaseRetention is the type of cases the engine opens when a departed
// identity's account has been kept disabled for its system's deleteAfter.
const CaseRetention identity.EventType = "retention"

// Config is what New needs.
type Config struct {
	Store  store.Store
	Policy *policy.Policy
	Sealer *vault.Sealer
	// Connectors by system name, fixed for the engine's life (tests);
	// systems of type builtin get the built-in vault's connector, and every
	// other system is opened with Open from its policy block.
	Connectors map[string]connector.Connector
	Open       connector.Opener
	// Getenv resolves the env: references of connector settings; nil means
	// os.Getenv.
	Getenv func(string) string
	Logger *slog.Logger
	// Clock is the time the engine reads and waits on; nil means
	// clock.Real.
	Clock   clock.Clock
	Rand    io.Reader
	Metrics *Metrics
	// DeferBuiltin runs built-in vault steps in a River job like every
	// other step, instead of in the accepting transaction, and turns the
	// fast path off. It exists to measure and test the job path;
	// production leaves it false.
	DeferBuiltin bool
	// Guards are the mass-change guards of sources whose events arrive one
	// at a time (SCIM, webhooks, POST /v1/events), by source name.
	Guards map[string]SourceGuard
	// FastPathGrace is how long after an event is accepted its case's job
	// is due. Meanwhile the accepting process runs the case at once; the
	// job takes over if that process dies or a step fails. Zero means
	// 10s; negative turns the fast path off (the job is due at once).
	FastPathGrace time.Duration
	// CallTimeout bounds each call to a system; a call without an answer by
	// then fails its attempt ("no answer from SYSTEM within …", the case's
	// reason) and is retried. Zero means DefaultCallTimeout.
	CallTimeout time.Duration
	// IntrospectionClaims are the members an introspection answer carries
	// beyond what a resource server needs (active, scope, exp, iat, sub,
	// client_id, token_type): any of IntrospectionExtras.
	IntrospectionClaims []string
	// EndpointSources are the sources whose events come only through their
	// own endpoint (SCIM sources, signed webhook sources), by name, with
	// that endpoint for error messages. Submitting one of their events
	// from anywhere else (POST /v1/events, jml event, jml import) is
	// refused, whatever the principal.
	EndpointSources map[string]string
	// NoSystems makes an engine that calls no system: SetPolicy opens no
	// connector, so no connection secret (an env: or file: reference) is
	// resolved, and accepting an event (which plans) and running a case
	// are refused. It is for processes that only read or manage jml's own
	// records (the CLI's token, findings, case, audit and access
	// commands), which must work where the systems' secrets are not set.
	// Such an engine needs no Sealer: it issues no secret, and Reveal
	// refuses without one.
	NoSystems bool
}

// DefaultCallTimeout is how long a connector call may take before its
// attempt fails: long for a database or directory on the same network,
// short enough that a hung system shows in its case within two seconds.
const DefaultCallTimeout = 1500 * time.Millisecond

// Engine is safe for concurrent use.
type Engine struct {
	store     store.Store
	claims    []string          // extra introspection members (Config.IntrospectionClaims)
	endpoints map[string]string // Config.EndpointSources
	policy    atomic.Pointer[policy.Policy]
	sealer    *vault.Sealer
	// conns maps system names to connectors. SetPolicy replaces the map
	// (never mutates it), so readers need no lock.
	conns atomic.Pointer[map[string]connector.Connector]
	// setPolicy serialises SetPolicy calls and guards opened.
	setPolicy sync.Mutex
	fixed     map[string]bool // systems whose connector came in Config
	open      connector.Opener
	getenv    func(string) string
	// opened are the connectors SetPolicy opened, with the configuration
	// each was opened with, so that a reload reopens only what changed.
	opened  map[string]openedConn
	log     *slog.Logger
	clock   clock.Clock
	rand    io.Reader
	metrics *Metrics
	// deferBuiltin: see Config.DeferBuiltin.
	deferBuiltin bool
	// coalescer batches concurrent submissions where the store can.
	coalescer *coalescer
	guards    map[string]SourceGuard
	// fastPathGrace: see Config.FastPathGrace; 0 here means off.
	fastPathGrace time.Duration
	// caseLocks keeps two runs of one case in this process apart (the fast
	// path and the case's job); fastRuns tracks fast-path goroutines.
	caseLocks keyLocks
	// accessLocks keeps runs that call one system for one identity apart
	// (runSystem).
	accessLocks keyLocks
	// callTimeout bounds each connector call: see Config.CallTimeout.
	callTimeout time.Duration
	fastRuns    sync.WaitGroup
	// noSystems: see Config.NoSystems.
	noSystems bool
	// accepting are the participants in accepting an event, in the order
	// openCase calls them (ARCHITECTURE.md lists them).
	accepting []accept.Participant
	// attrScan serialises CheckStoredAttributes runs.
	attrScan sync.Mutex
}

// New returns an engine. Missing Clock, Rand and Logger default to the system clock,
// crypto/rand and a discarding logger.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil || cfg.Policy == nil || (cfg.Sealer == nil && !cfg.NoSystems) {
		return nil, fmt.Errorf("engine: store, policy and sealer are required (the sealer only may be left out with NoSystems)")
	}
	e := &Engine{store: cfg.Store, sealer: cfg.Sealer, log: cfg.Logger, clock: cfg.Clock, rand: cfg.Rand, metrics: cfg.Metrics, deferBuiltin: cfg.DeferBuiltin,
		fixed: map[string]bool{}, open: cfg.Open, getenv: cfg.Getenv, opened: map[string]openedConn{}}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.clock == nil {
		e.clock = clock.Real
	}
	if e.rand == nil {
		e.rand = rand.Reader
	}
	if e.metrics == nil {
		e.metrics = NewMetrics(nil)
	}
	switch {
	case cfg.DeferBuiltin || cfg.FastPathGrace < 0:
	case cfg.FastPathGrace == 0:
		e.fastPathGrace = 10 * time.Second
	default:
		e.fastPathGrace = cfg.FastPathGrace
	}
	for _, c := range cfg.IntrospectionClaims {
		if !slices.Contains(IntrospectionExtras, c) {
			return nil, identity.FieldError("introspection.claims", "unknown claim %q (want some of %v)", c, IntrospectionExtras)
		}
	}
	e.claims, e.endpoints, e.noSystems = cfg.IntrospectionClaims, cfg.EndpointSources, cfg.NoSystems
	// Planning gives the case its steps; retention sets a leaver's
	// deletion timers; offboarding revokes jml's own credentials and tokens
	// and settles their steps, before the built-in vault applies the rest;
	// findings follow what the change started or ended.
	e.accepting = []accept.Participant{planning{e}, retention.Participant{}, offboard.Participant{}, vaultSteps{e}, findings.Participant{}}
	e.callTimeout = cfg.CallTimeout
	if e.callTimeout <= 0 {
		e.callTimeout = DefaultCallTimeout
	}
	e.guards = map[string]SourceGuard{}
	for src, g := range cfg.Guards {
		var err error
		if g.Limits, err = g.Limits.WithDefaults(); err != nil {
			return nil, fmt.Errorf("guard of source %q: %w", src, err)
		}
		if g.Window <= 0 {
			return nil, fmt.Errorf("guard of source %q: window must be positive", src)
		}
		e.guards[src] = g
	}
	conns := make(map[string]connector.Connector, len(cfg.Connectors))
	for name, c := range cfg.Connectors {
		conns[name] = c
		e.fixed[name] = true
	}
	e.conns.Store(&conns)
	if b, ok := cfg.Store.(store.Batcher); ok {
		e.coalescer = &coalescer{store: b}
	}
	if err := e.SetPolicy(cfg.Policy); err != nil {
		return nil, err
	}
	return e, nil
}

// Policy returns the current policy.
func (e *Engine) Policy() *policy.Policy { return e.policy.Load() }

// Now is the engine's time: what its records are stamped with, and what
// SCIM resources kept beside its events are stamped with.
func (e *Engine) Now() time.Time { return e.clock.Now() }

func (e *Engine) newID(prefix string) string {
	return prefix + ulid.MustNew(ulid.Timestamp(e.Now()), e.rand).String()
}

// Result is what accepting an event gives back.
type Result struct {
	EventID    string `json:"eventId"`
	CaseID     string `json:"caseId,omitempty"`
	IdentityID string `json:"identityId"`
	// Status is the event's: applied (its case was opened), scheduled,
	// held. CaseStatus is where its case stood when the event was
	// accepted: completed, running (steps in other systems to run), or
	// awaiting_approval (nothing widened until someone approves).
	Status     store.EventStatus `json:"status"`
	CaseStatus cases.Status      `json:"caseStatus,omitempty"`
	// Duplicate is true when the event was seen before; the IDs are those
	// of the first submission and nothing ran again.
	Duplicate bool `json:"duplicate"`
	// HoldID names the held batch the mass-change guard put the event in
	// (Status "held"); nothing of it is applied until an admin releases it.
	HoldID string `json:"holdId,omitempty"`
}

// Submit accepts one event. Everything it changes commits in one
// transaction or not at all; a bad event changes nothing.
func (e *Engine) Submit(ctx context.Context, p Principal, ev identity.Event) (*Result, error) {
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	if err := e.mayEmit(p, ev.Source); err != nil {
		return nil, err
	}
	if _, ok := e.guards[ev.Source]; ok {
		return e.SubmitWith(ctx, p, ev, nil)
	}
	return e.submitUnguarded(ctx, p, ev)
}

// mayEmit refuses an event of a source with its own endpoint from anywhere
// but that endpoint, and one of a source other than the one p's source
// token is bound to.
func (e *Engine) mayEmit(p Principal, source string) error {
	if ep, ok := e.endpoints[source]; ok && p.Endpoint != source {
		return &identity.Error{Code: identity.Forbidden, Field: "source", Message: fmt.Sprintf("source %q takes events only through its own endpoint (%s)", source, ep)}
	}
	switch ReachOf(p.Role, PermSubmit) {
	case Anywhere:
		return nil
	case Own:
		if p.Source == source {
			return nil
		}
		return &identity.Error{Code: identity.Forbidden, Field: "source", Message: fmt.Sprintf("this token submits the events of source %q only, not %q", p.Source, source)}
	}
	return identity.Errorf(identity.Forbidden, "role %s may not submit events", p.Role)
}

// submitUnguarded accepts an event without asking the mass-change guard
// (a validated event, or one an admin released).
func (e *Engine) submitUnguarded(ctx context.Context, p Principal, ev identity.Event) (*Result, error) {
	if e.coalescer != nil {
		return e.submitCoalesced(ctx, p, ev)
	}
	return e.submitOne(ctx, p, ev)
}

// SubmitWith accepts ev as Submit does and, in the same transaction,
// runs fn (if not nil) with the result: whatever fn writes (a SCIM
// resource, say) commits with the event or not at all. fn is not run for a
// duplicate; it is run for an event the guard holds.
func (e *Engine) SubmitWith(ctx context.Context, p Principal, ev identity.Event, fn func(tx store.Tx, res *Result) error) (*Result, error) {
	var wrapped func(store.Tx, []*Result) error
	if fn != nil {
		wrapped = func(tx store.Tx, rs []*Result) error {
			if rs[0].Duplicate && rs[0].Status != store.EventHeld {
				return nil
			}
			return fn(tx, rs[0])
		}
	}
	rs, err := e.SubmitAllWith(ctx, p, []identity.Event{ev}, wrapped)
	if err != nil {
		return nil, err
	}
	return rs[0], nil
}

// SubmitAllWith accepts evs, in order, in one transaction with fn: all of
// them and what fn writes commit, or nothing does. Each event goes through
// its source's mass-change guard.
func (e *Engine) SubmitAllWith(ctx context.Context, p Principal, evs []identity.Event, fn func(tx store.Tx, res []*Result) error) ([]*Result, error) {
	for i := range evs {
		if err := evs[i].Validate(); err != nil {
			return nil, err
		}
		if err := e.mayEmit(p, evs[i].Source); err != nil {
			return nil, err
		}
	}
	results, counters, err := e.submitAll(ctx, p, evs, fn, nil)
	var over *guard.OverRevocations
	if errors.As(err, &over) {
		// Run again with the source held from its first event on.
		results, counters, err = e.submitAll(ctx, p, evs, fn, map[string]string{over.Source: over.Why})
	}
	if err != nil {
		return nil, err
	}
	for i, res := range results {
		if res.Status != store.EventHeld {
			e.observeAccepted(evs[i], res, counters[i])
		}
	}
	return results, nil
}

// submitAll is SubmitAllWith's transaction; force holds the events of the
// sources it names, for the reason given.
func (e *Engine) submitAll(ctx context.Context, p Principal, evs []identity.Event, fn func(tx store.Tx, res []*Result) error, force map[string]string) ([]*Result, []acceptCounters, error) {
	var results []*Result
	var counters []acceptCounters
	err := e.store.Update(ctx, func(tx store.Tx) error {
		results, counters = make([]*Result, len(evs)), make([]acceptCounters, len(evs))
		for i, ev := range evs {
			held := false
			var err error
			g, guarded := e.guards[ev.Source]
			if guarded {
				if results[i], held, err = e.guard(ctx, tx, p, ev, g, force[ev.Source]); err != nil {
					return err
				}
			}
			if !held {
				var c *cases.Case
				if results[i], c, err = e.accept(ctx, tx, p, ev, &counters[i]); err != nil {
					return err
				}
				// Only an event that plans revocations can take its source
				// over the bound (each one before it was checked), so the
				// window is counted only then, not after every joiner.
				if guarded && !results[i].Duplicate && c != nil && c.Revocations() > 0 {
					if err := guard.CheckRevocations(ctx, tx, ev.Source, g, e.Now().UTC()); err != nil {
						return err
					}
				}
			}
		}
		if fn == nil {
			return nil
		}
		return fn(tx, results)
	})
	return results, counters, err
}

// submitOne accepts one event in a transaction of its own.
func (e *Engine) submitOne(ctx context.Context, p Principal, ev identity.Event) (*Result, error) {
	var res *Result
	var counters acceptCounters
	err := e.store.Update(ctx, func(tx store.Tx) error {
		counters = acceptCounters{}
		var err error
		res, _, err = e.accept(ctx, tx, p, ev, &counters)
		return err
	})
	if err != nil {
		return nil, err
	}
	e.observeAccepted(ev, res, counters)
	return res, nil
}

// observeAccepted counts a committed submission in the metrics.
func (e *Engine) observeAccepted(ev identity.Event, res *Result, counters acceptCounters) {
	if res.Duplicate {
		e.metrics.eventsDuplicate.Inc()
		return
	}
	e.metrics.eventsAccepted.WithLabelValues(string(ev.Type)).Inc()
	counters.observe(e.metrics)
	e.startCases(counters.runNow)
}

// caseIDOf names the case an event opens when it is accepted: the event's
// own ULID under the case prefix, so that either ID leads to the other (and
// the store may keep a case that never changes in its event's row).
func caseIDOf(eventID string) string {
	return "case_" + strings.TrimPrefix(eventID, "evt_")
}

// accept is Submit inside tx.
func (e *Engine) accept(ctx context.Context, tx store.Tx, p Principal, ev identity.Event, counters *acceptCounters) (*Result, *cases.Case, error) {
	if err := e.callsSystems(); err != nil {
		return nil, nil, err
	}
	now := e.Now().UTC()
	rec := &store.Event{ID: e.newID("evt_"), Event: ev, Principal: p.ID, Status: store.EventApplied, ReceivedAt: now, EffectiveAt: now}
	future := ev.EffectiveAt != nil && ev.EffectiveAt.After(now)
	if future {
		rec.EffectiveAt = ev.EffectiveAt.UTC()
		rec.Status = store.EventScheduled
	}
	// The event is stored once, complete: with its identity and, for an
	// immediate event, the case it opened (openCase stores them together).
	cur, err := tx.GetIdentityByExternalID(ctx, ev.Source, ev.ExternalID)
	if err != nil && !store.IsNotFound(err) {
		return nil, nil, err
	}
	if store.IsNotFound(err) {
		cur = nil
		rec.IdentityID = e.newID("idn_")
	} else {
		rec.IdentityID = cur.ID
	}
	if !future {
		rec.CaseID = caseIDOf(rec.ID)
	}
	existing, err := tx.FindEvent(ctx, ev.Source, ev.ID)
	if err == nil {
		return &Result{EventID: existing.ID, CaseID: existing.CaseID, IdentityID: existing.IdentityID, Status: existing.Status, Duplicate: true}, nil, nil
	}
	if !store.IsNotFound(err) {
		return nil, nil, err
	}
	if cur == nil && ev.Type != identity.Joiner {
		return nil, nil, &identity.Error{Code: identity.NotFound, Field: "externalId", Message: fmt.Sprintf("no identity %q in source %q: a %s needs an existing identity", ev.ExternalID, ev.Source, ev.Type)}
	}
	// What this event contradicts in the source's schedule for the
	// identity is superseded with it (schedule.go).
	superseded, err := e.supersedeScheduled(ctx, tx, p, rec, cur)
	if err != nil {
		return nil, nil, err
	}
	if len(superseded) > 0 {
		if err := tx.AppendAudit(ctx, superseded...); err != nil {
			return nil, nil, err
		}
	}
	if future {
		res, err := e.schedule(ctx, tx, p, rec, cur)
		if err != nil {
			return nil, nil, err
		}
		if err := tx.InsertAccepted(ctx, rec, nil); err != nil {
			return nil, nil, err
		}
		return res, nil, nil
	}
	c, id, err := e.apply(ctx, tx, p, rec, cur, counters, func(c *cases.Case) error { return tx.InsertAccepted(ctx, rec, c) })
	if err != nil {
		return nil, nil, err
	}
	return &Result{EventID: rec.ID, CaseID: c.ID, IdentityID: id.ID, Status: rec.Status, CaseStatus: c.Status}, c, nil
}

// acceptCounters are what happens only if the transaction commits: metric
// increments, and cases to start running at once.
type acceptCounters struct {
	revoked   int
	findings  int
	completed int
	runNow    []loaded
}

// loaded is a case as its transaction wrote it, with its identity: the
// fast path starts from it instead of reading it back.
type loaded struct {
	c  *cases.Case
	id *identity.Identity
}

func (c acceptCounters) observe(m *Metrics) {
	m.credentialsRevoked.Add(float64(c.revoked))
	m.findings.Add(float64(c.findings))
	m.addSettled(c.completed, 0)
}

// resolve returns the identity as ev leaves it (without its new state),
// resolving owner and manager references to jml IDs. cur is nil for a new
// identity, which gets newID.
func (e *Engine) resolve(ctx context.Context, tx store.Tx, ev identity.Event, cur *identity.Identity, newID string, now time.Time) (*identity.Identity, error) {
	var id identity.Identity
	if cur == nil {
		id = identity.Identity{ID: newID, Source: ev.Source, ExternalID: ev.ExternalID, Kind: ev.Kind, CreatedAt: now, Attributes: map[string]any{}}
	} else {
		id = cur.Clone()
		if ev.Kind != "" && ev.Kind != cur.Kind {
			if ev.Type != identity.Joiner {
				return nil, identity.FieldError("kind", "cannot change from %s to %s: an identity's kind is fixed; make a new identity", cur.Kind, ev.Kind)
			}
			id.Kind = ev.Kind // a rehire may come back as another kind
		}
	}
	id.UpdatedAt = now
	switch ev.Type {
	case identity.Joiner:
		id.Attributes = identity.ApplyAttributes(nil, ev.Attributes)
		id.DisplayName = ev.DisplayName
	case identity.Mover:
		id.Attributes = identity.ApplyAttributes(id.Attributes, ev.Attributes)
		if ev.DisplayName != "" {
			id.DisplayName = ev.DisplayName
		}
	}
	if ev.Owner != "" {
		src := ev.OwnerSource
		if src == "" {
			src = ev.Source
		}
		owner, err := tx.GetIdentityByExternalID(ctx, src, ev.Owner)
		if store.IsNotFound(err) {
			return nil, identity.FieldError("owner", "no identity %q in source %q", ev.Owner, src)
		}
		if err != nil {
			return nil, err
		}
		if owner.ID == id.ID {
			return nil, identity.FieldError("owner", "an identity cannot own itself")
		}
		if owner.State == identity.Departed {
			return nil, identity.FieldError("owner", "%q has departed and cannot own an identity", ev.Owner)
		}
		id.OwnerID = owner.ID
	}
	if id.Kind.NonHuman() && id.OwnerID == "" {
		return nil, identity.FieldError("owner", "is required for a %s: every non-human identity has an owner", id.Kind)
	}
	if ev.Type == identity.Joiner || ev.RemoveManager {
		id.ManagerID = "" // a joiner names its manager afresh
	}
	if ev.Manager != "" {
		m, err := tx.GetIdentityByExternalID(ctx, ev.Source, ev.Manager)
		if store.IsNotFound(err) {
			return nil, identity.FieldError("manager", "no identity %q in source %q", ev.Manager, ev.Source)
		}
		if err != nil {
			return nil, err
		}
		if m.ID == id.ID {
			return nil, identity.FieldError("manager", "an identity cannot manage itself")
		}
		id.ManagerID = m.ID
	}
	return &id, nil
}

// apply runs an effective event inside tx: state transition, plan, case,
// jobs, in-transaction revocations, findings and audit. The case is stored
// by storeCase, which stores it with its event or beside it.
func (e *Engine) apply(ctx context.Context, tx store.Tx, p Principal, rec *store.Event, cur *identity.Identity, counters *acceptCounters, storeCase func(*cases.Case) error) (*cases.Case, *identity.Identity, error) {
	ev := rec.Event
	now := e.Now().UTC()
	from := identity.None
	if cur != nil {
		from = cur.State
	}
	var to identity.State
	var err error
	if ev.Type == identity.Joiner && from == identity.Pending {
		// A scheduled joiner reaching its start date.
		to, err = identity.Activate(from)
	} else {
		to, err = identity.Transition(from, ev.Type, false)
	}
	if err != nil {
		return nil, nil, err
	}
	if err := e.checkAttributes(ev, cur); err != nil {
		return nil, nil, err
	}
	after, err := e.resolve(ctx, tx, ev, cur, rec.IdentityID, now)
	if err != nil {
		return nil, nil, err
	}
	after.State = to
	if cur == nil {
		err = tx.InsertIdentity(ctx, after)
	} else {
		err = tx.UpdateIdentity(ctx, after)
	}
	if err != nil {
		return nil, nil, err
	}
	c, err := e.openCase(ctx, tx, p, rec.CaseID, rec.ID, ev.Type, cur, after, counters, storeCase)
	return c, after, err
}

// openCase opens the case of an identity that moved from before (nil:
// new) to after: it calls the accepting participants in order (e.accepting:
// planning, retention, offboarding, the built-in vault's steps, findings),
// then stores the case with storeCase, enqueues its job if steps remain,
// and appends the audit records, the event's own first.
func (e *Engine) openCase(ctx context.Context, tx store.Tx, p Principal, caseID, eventID string, typ identity.EventType, before, after *identity.Identity, counters *acceptCounters, storeCase func(*cases.Case) error) (*cases.Case, error) {
	now := e.Now().UTC()
	c := &cases.Case{ID: caseID, EventID: eventID, IdentityID: after.ID, Type: typ, Status: cases.Running,
		SubmittedBy: p.ID, CreatedAt: now, UpdatedAt: now}
	ch := &accept.Change{Tx: tx, Policy: e.Policy(), Now: now, Actor: p.Actor(), EventID: eventID, Type: typ,
		Before: before, After: after, Case: c, NewID: e.newID}
	if p.Token {
		ch.ActorToken = p.ID
	}
	if before != nil { // a new identity holds nothing yet
		var err error
		if ch.Grants, err = tx.ListGrants(ctx, after.ID); err != nil {
			return nil, err
		}
		if ch.Credentials, err = tx.ListCredentials(ctx, after.ID, true); err != nil {
			return nil, err
		}
		if ch.Accounts, err = tx.ListAccounts(ctx, after.ID); err != nil {
			return nil, err
		}
	}
	for _, part := range e.accepting {
		if err := part.Accept(ctx, ch); err != nil {
			return nil, err
		}
	}
	counters.revoked += ch.Revoked
	counters.findings += ch.Findings
	counters.completed += ch.Completed

	pending := 0
	for _, s := range c.Steps {
		if s.Status == cases.StepPending {
			pending++
		}
	}
	c.Status, c.Reason = cases.Derive(c.Steps)
	if c.Status == cases.Completed {
		c.CompletedAt = now
		counters.completed++
	}
	if err := storeCase(c); err != nil {
		return nil, err
	}
	if pending > 0 {
		// The case starts running as soon as this commits (startCases);
		// its job, due a little later, is the durable fallback if this
		// process dies first, and the retry schedule if a step fails.
		runAt := time.Time{}
		if e.fastPathGrace > 0 {
			runAt = now.Add(e.fastPathGrace)
			counters.runNow = append(counters.runNow, loaded{c: c, id: after})
		}
		if err := tx.Enqueue(ctx, ApplyCaseArgs{CaseID: c.ID}, runAt); err != nil {
			return nil, err
		}
	}
	// The event's record (state change and plan) comes first, and carries
	// the results of the steps applied in this transaction.
	stateData := map[string]any{"event": eventID, "type": string(typ), "case": c.ID}
	if before == nil || before.State != after.State {
		from := ""
		if before != nil {
			from = string(before.State)
		}
		stateData["from"], stateData["to"] = from, string(after.State)
	}
	stateData["steps"] = cases.Summary(c.Steps)
	recs := append([]audit.Record{auditBy(now, p, "event.accepted", after.ID, c.ID, stateData)}, ch.Records...)
	return c, tx.AppendAudit(ctx, recs...)
}
