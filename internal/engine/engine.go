// Package engine runs jml's lifecycle: it accepts events in one transaction
// (event, identity state, case, steps, jobs, audit records, and revocation
// of jml's own credentials on a leaver), runs the steps as durable River
// jobs through connectors, gates widening behind approval, and answers
// credential introspection.
//
// It wires the pure core (identity, policy, plan) to I/O (store,
// connectors); time and randomness are injected.
package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/clock"
	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/connector/builtin"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/plan"
	"github.com/jml-dev/jml/internal/policy"
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
	// attrScan serialises CheckStoredAttributes runs.
	attrScan sync.Mutex
}

// New returns an engine. Missing Clock, Rand and Logger default to the system clock,
// crypto/rand and a discarding logger.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil || cfg.Policy == nil || cfg.Sealer == nil {
		return nil, fmt.Errorf("engine: store, policy and sealer are required")
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

// SetPolicy replaces the policy for events accepted from now on. Every
// system must have a connector: built-in systems get the vault's, others
// are opened with Config.Open; a system whose type, settings and targets
// are unchanged keeps its open connector. It is safe to call while the
// engine runs (jml serve calls it on SIGHUP); cases already planned keep
// their steps. If any system fails to open, nothing changes.
func (e *Engine) SetPolicy(p *policy.Policy) error {
	e.setPolicy.Lock()
	defer e.setPolicy.Unlock()
	old := *e.conns.Load()
	conns := make(map[string]connector.Connector, len(p.Systems))
	opened := map[string]openedConn{}
	var fresh []connector.Connector
	closeAll := func(cs []connector.Connector) {
		for _, c := range cs {
			if cl, ok := c.(io.Closer); ok {
				cl.Close()
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.Systems)) {
		sys := p.Systems[name]
		switch {
		case e.fixed[name]:
			conns[name] = old[name]
		case sys.Builtin():
			conns[name] = builtin.Conn{}
		case e.noSystems:
			// Never called: nothing is opened, no secret resolved.
		default:
			cfg := connector.ConfigFor(p, name)
			cfg.Getenv, cfg.Logger = e.getenv, e.log.With("system", name)
			if prev, ok := e.opened[name]; ok && prev.sameAs(cfg) {
				conns[name], opened[name] = prev.conn, prev
				continue
			}
			if e.open == nil {
				closeAll(fresh)
				return identity.Errorf(identity.Invalid, "system %q: no connector for type %q (this build has: builtin)", name, sys.Type)
			}
			c, err := e.open(context.Background(), cfg)
			if err != nil {
				closeAll(fresh)
				return identity.Errorf(identity.Invalid, "%v", err)
			}
			fresh = append(fresh, c)
			conns[name], opened[name] = c, openedConn{cfg: cfg, conn: c}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.Systems)) {
		if _, ok := conns[name].(connector.Adopter); p.Systems[name].Adopt && !ok && !e.noSystems {
			closeAll(fresh)
			return identity.Errorf(identity.Invalid, "system %q: adopt: type %s cannot take over existing accounts; remove adopt, or create the accounts through jml", name, p.Systems[name].Type)
		}
	}
	// Connectors the new policy dropped or replaced may still be running a
	// step; they are closed once a step has had time to finish.
	var retired []connector.Connector
	for name, prev := range e.opened {
		if cur, ok := opened[name]; !ok || cur.conn != prev.conn {
			retired = append(retired, prev.conn)
		}
	}
	if len(retired) > 0 {
		e.clock.AfterFunc(retireAfter, func() { closeAll(retired) })
	}
	e.opened = opened
	e.conns.Store(&conns)
	e.policy.Store(p)
	return nil
}

// retireAfter is how long a replaced connector stays open for steps that
// were already calling it.
const retireAfter = 2 * time.Minute

// Close waits for cases started on the fast path, then closes every
// connector the engine opened.
func (e *Engine) Close() error {
	e.fastRuns.Wait()
	e.setPolicy.Lock()
	defer e.setPolicy.Unlock()
	var errs []error
	for _, o := range e.opened {
		if cl, ok := o.conn.(io.Closer); ok {
			errs = append(errs, cl.Close())
		}
	}
	e.opened = map[string]openedConn{}
	return errors.Join(errs...)
}

type openedConn struct {
	cfg  connector.Config
	conn connector.Connector
}

func (o openedConn) sameAs(cfg connector.Config) bool {
	return o.cfg.Type == cfg.Type && reflect.DeepEqual(o.cfg.Settings, cfg.Settings) && reflect.DeepEqual(o.cfg.Targets, cfg.Targets)
}

// conn returns the connector of a system, or nil.
func (e *Engine) conn(system string) connector.Connector { return (*e.conns.Load())[system] }

// callsSystems refuses, in an engine made with Config.NoSystems, the work
// that needs the systems' connectors: planning (which asks them what names
// they hold and how they disable) and running steps.
func (e *Engine) callsSystems() error {
	if e.noSystems {
		return identity.Errorf(identity.Unavailable, "this command opens no system's connector, so it neither plans nor runs cases (jml serve, jml event and jml import do)")
	}
	return nil
}

// Policy returns the current policy.
func (e *Engine) Policy() *policy.Policy { return e.policy.Load() }

// Store returns the engine's store.
func (e *Engine) Store() store.Store { return e.store }

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
	CaseStatus store.CaseStatus  `json:"caseStatus,omitempty"`
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
	var over *overRevocations
	if errors.As(err, &over) {
		// Run again with the source held from its first event on.
		results, counters, err = e.submitAll(ctx, p, evs, fn, map[string]string{over.source: over.why})
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
				var c *store.Case
				if results[i], c, err = e.accept(ctx, tx, p, ev, &counters[i]); err != nil {
					return err
				}
				// Only an event that plans revocations can take its source
				// over the bound (each one before it was checked), so the
				// window is counted only then, not after every joiner.
				if guarded && !results[i].Duplicate && c != nil && c.Revocations() > 0 {
					if err := e.checkRevocations(ctx, tx, ev, g); err != nil {
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
func (e *Engine) accept(ctx context.Context, tx store.Tx, p Principal, ev identity.Event, counters *acceptCounters) (*Result, *store.Case, error) {
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
	c, id, err := e.apply(ctx, tx, p, rec, cur, counters, func(c *store.Case) error { return tx.InsertAccepted(ctx, rec, c) })
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
	c  *store.Case
	id *identity.Identity
}

func (c acceptCounters) observe(m *Metrics) {
	m.credentialsRevoked.Add(float64(c.revoked))
	m.findings.Add(float64(c.findings))
	m.addSettled(c.completed, 0)
}

// schedule records a future-dated event and its timer. A future joiner
// creates the identity in state pending, without access, so it is visible
// and a later event can still cancel it.
func (e *Engine) schedule(ctx context.Context, tx store.Tx, p Principal, rec *store.Event, cur *identity.Identity) (*Result, error) {
	ev := rec.Event
	now := rec.ReceivedAt
	from := identity.None
	if cur != nil {
		from = cur.State
	}
	// A joiner of a pending identity is a new start date (the scheduled
	// one it replaces was superseded); anything else follows the state
	// machine.
	if ev.Type != identity.Joiner || from != identity.Pending {
		if _, err := identity.Transition(from, ev.Type, ev.Type == identity.Joiner); err != nil {
			return nil, err
		}
	}
	if err := e.checkAttributes(ev, cur); err != nil {
		return nil, err
	}
	if ev.Type == identity.Joiner {
		id, err := e.resolve(ctx, tx, ev, cur, rec.IdentityID, now)
		if err != nil {
			return nil, err
		}
		before := identity.State(identity.None)
		if cur != nil {
			before = cur.State
		}
		id.State = identity.Pending
		if cur == nil {
			err = tx.InsertIdentity(ctx, id)
		} else {
			err = tx.UpdateIdentity(ctx, id)
		}
		if err != nil {
			return nil, err
		}
		cur = id
		if err := tx.AppendAudit(ctx, auditBy(now, p, "identity.state_changed", id.ID, "", map[string]any{"from": string(before), "to": string(identity.Pending), "event": rec.ID})); err != nil {
			return nil, err
		}
	}
	if err := tx.Enqueue(ctx, EffectiveEventArgs{EventID: rec.ID}, rec.EffectiveAt); err != nil {
		return nil, err
	}
	if err := tx.AppendAudit(ctx, auditBy(now, p, "event.scheduled", cur.ID, "", map[string]any{
		"event": rec.ID, "source": ev.Source, "sourceEventId": ev.ID, "type": string(ev.Type), "effectiveAt": rec.EffectiveAt})); err != nil {
		return nil, err
	}
	return &Result{EventID: rec.ID, IdentityID: cur.ID, Status: store.EventScheduled}, nil
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
func (e *Engine) apply(ctx context.Context, tx store.Tx, p Principal, rec *store.Event, cur *identity.Identity, counters *acceptCounters, storeCase func(*store.Case) error) (*store.Case, *identity.Identity, error) {
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

// openCase plans a case for an identity that moved from before (nil: new)
// to after, stores it with storeCase, and stores everything that goes with
// it.
func (e *Engine) openCase(ctx context.Context, tx store.Tx, p Principal, caseID, eventID string, typ identity.EventType, before, after *identity.Identity, counters *acceptCounters, storeCase func(*store.Case) error) (*store.Case, error) {
	now := e.Now().UTC()
	pol := e.Policy()
	var grants []identity.Grant
	var creds []identity.Credential
	var accounts []identity.Account
	if before != nil {
		var err error
		if grants, err = tx.ListGrants(ctx, after.ID); err != nil {
			return nil, err
		}
		if creds, err = tx.ListCredentials(ctx, after.ID, true); err != nil {
			return nil, err
		}
		if accounts, err = tx.ListAccounts(ctx, after.ID); err != nil {
			return nil, err
		}
	}
	// A newer event replaces every step earlier cases have not applied
	// (see supersede); what was due to run may have run, and the plan
	// treats what it touched as unsettled (plan.Input.Possible).
	var superseded []string
	var possible []plan.Step
	if before != nil { // a new identity has no earlier cases
		var err error
		if superseded, possible, err = e.supersede(ctx, tx, after.ID, now, counters); err != nil {
			return nil, err
		}
	}
	steps := plan.Make(plan.Input{Event: typ, Before: before, After: after, Policy: pol, Desired: pol.Desired(after),
		Grants: grants, Credentials: creds, Accounts: accounts, Possible: possible, Resets: e.resets(accounts), Now: now})
	if typ == identity.Joiner {
		if err := e.checkNames(after, steps); err != nil {
			return nil, err
		}
	}

	c := &store.Case{ID: caseID, EventID: eventID, IdentityID: after.ID, Type: typ, Status: store.CaseRunning,
		SubmittedBy: p.ID, CreatedAt: now, UpdatedAt: now}
	var recs []audit.Record
	stateData := map[string]any{"event": eventID, "type": string(typ), "case": c.ID}
	if before == nil || before.State != after.State {
		from := ""
		if before != nil {
			from = string(before.State)
		}
		stateData["from"], stateData["to"] = from, string(after.State)
	}
	// The acceptance record (state change and plan) is appended once the
	// plan's inline steps have run, so it carries their results too.
	accepted := len(recs)
	recs = append(recs, audit.Record{})

	if len(superseded) > 0 {
		recs = append(recs, auditBy(now, p, "steps.superseded", after.ID, c.ID, map[string]any{"cases": superseded}))
	}
	if after.State == identity.Departed {
		if err := e.scheduleDeletions(ctx, tx, after, accounts); err != nil {
			return nil, err
		}
	}

	// jml's own credentials die with the leaver's transaction: there is no
	// window in which a departed identity's key still introspects active.
	revokedHere := map[string]bool{}
	if after.State == identity.Departed {
		for name, sys := range pol.Systems {
			if !sys.Builtin() {
				continue
			}
			ids, err := tx.RevokeSystemCredentials(ctx, after.ID, name, now)
			if err != nil {
				return nil, err
			}
			for _, id := range ids {
				revokedHere[id] = true
			}
		}
		if len(revokedHere) > 0 {
			counters.revoked += len(revokedHere)
			recs = append(recs, auditBy(now, p, "credentials.revoked", after.ID, c.ID, map[string]any{"credentials": slices.Sorted(maps.Keys(revokedHere)), "when": "in the leaver's transaction"}))
		}
		// So do the person's tokens for jml's own API (Authenticate
		// already refuses a token whose identity is not active; revoking
		// them means a rehire does not bring them back).
		tokens, err := tx.RevokeIdentityTokens(ctx, after.ID, now)
		if err != nil {
			return nil, err
		}
		if len(tokens) > 0 {
			recs = append(recs, auditBy(now, p, "tokens.revoked", after.ID, c.ID, map[string]any{"tokens": tokens, "reason": "the identity departed (event " + eventID + ")"}))
		}
	}

	for i, s := range steps {
		st := store.Step{Seq: i + 1, Step: s, Status: store.StepPending, UpdatedAt: now}
		switch {
		case s.Action == plan.RevokeCredential && revokedHere[s.CredentialID]:
			st.Status, st.Result, st.Attempts = store.StepDone, "revoked in the transaction that accepted the event", 1
		case s.NeedsApproval:
			st.Status = store.StepAwaitingApproval
		}
		c.Steps = append(c.Steps, st)
	}
	// Steps of the built-in vault are jml's own writes: they are applied
	// here, in the accepting transaction, exactly once. Only steps that
	// call out to other systems wait for a River job.
	if !e.deferBuiltin {
		if _, err := e.applyTransactional(ctx, tx, c, after, now, false, before == nil); err != nil {
			return nil, err
		}
	}
	pending := 0
	for _, s := range c.Steps {
		if s.Status == store.StepPending {
			pending++
		}
	}
	c.Status, c.Reason = caseStatus(c.Steps)
	if c.Status == store.CaseCompleted {
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
	stateData["steps"] = planSummary(c.Steps)
	recs[accepted] = auditBy(now, p, "event.accepted", after.ID, c.ID, stateData)

	if after.State == identity.Departed || after.State == identity.Suspended {
		n, more, err := e.ownerFindings(ctx, tx, after, now)
		if err != nil {
			return nil, err
		}
		counters.findings += n
		recs = append(recs, more...)
	}
	resolved, err := e.resolveFindings(ctx, tx, p, before, after, now)
	if err != nil {
		return nil, err
	}
	recs = append(recs, resolved...)
	if err := tx.AppendAudit(ctx, recs...); err != nil {
		return nil, err
	}
	return c, nil
}

// resets returns the systems of accounts whose connector's disable takes
// access away (connector.DisableResetter), nil when there are none.
func (e *Engine) resets(accounts []identity.Account) map[string]bool {
	var out map[string]bool
	for _, a := range accounts {
		if r, ok := e.conn(a.System).(connector.DisableResetter); ok && r.DisableRemovesAccess() {
			if out == nil {
				out = map[string]bool{}
			}
			out[a.System] = true
		}
	}
	return out
}

// checkNames refuses a joiner whose plan would create an account under a
// name one of its systems cannot hold: the event is invalid for that
// system, and saying so now beats a step that can never succeed. Other
// events are not refused for it (a mover's narrowing must apply); such a
// step fails at once, its error being permanent.
func (e *Engine) checkNames(id *identity.Identity, steps []plan.Step) error {
	for _, s := range steps {
		if s.Action != plan.EnsureAccount {
			continue
		}
		nc, ok := e.conn(s.System).(connector.NameChecker)
		if !ok {
			continue
		}
		if err := nc.CheckName(id.ExternalID); err != nil {
			msg := identity.ErrorMessage(err)
			var ie *identity.Error
			if errors.As(err, &ie) {
				msg = ie.Message
			}
			return identity.FieldError("externalId", "system %s cannot hold account %q: %s", s.System, id.ExternalID, msg)
		}
	}
	return nil
}

// ownerFindings records "owner not active" for every NHI the identity owns.
func (e *Engine) ownerFindings(ctx context.Context, tx store.Tx, owner *identity.Identity, now time.Time) (int, []audit.Record, error) {
	owned, err := tx.ListIdentities(ctx, store.IdentityFilter{Owner: owner.ID})
	if err != nil {
		return 0, nil, err
	}
	n := 0
	var recs []audit.Record
	for _, nhi := range owned {
		if nhi.State == identity.Departed {
			continue
		}
		f := &identity.Finding{ID: e.newID("fnd_"), Kind: identity.FindingOwnerNotActive, IdentityID: nhi.ID, CreatedAt: now,
			Message: fmt.Sprintf("owner %s (%s/%s) is %s; %s %s needs a new owner", owner.ID, owner.Source, owner.ExternalID, owner.State, nhi.Kind, nhi.ExternalID)}
		ok, err := tx.InsertFinding(ctx, f)
		if err != nil {
			return 0, nil, err
		}
		if ok {
			n++
			recs = append(recs, audit.New(now, System.ID, "finding.created", nhi.ID, "", map[string]any{"finding": f.ID, "kind": f.Kind, "owner": owner.ID}))
		}
	}
	return n, recs, nil
}

// supersede retires every step earlier cases of the identity have not
// applied yet (pending or awaiting approval): the new plan is made from
// recorded access and these steps, and replaces them. An approval would
// be for access computed from stale facts, a grant still queued must not
// land after a leaver, and a revoke still queued must not land after a
// mover that keeps the access.
//
// It returns the superseded cases and the superseded steps that were
// pending: their case may be running them right now (the fast path starts
// at commit) or may have called them before a crash, so they are possibly
// applied, and the caller's plan accounts for them (plan.Input.Possible).
// A step awaiting approval was never called. Runs of one identity's steps
// in one system never overlap (runSystem), so the new plan's calls there
// come after any such call has returned.
func (e *Engine) supersede(ctx context.Context, tx store.Tx, identityID string, now time.Time, counters *acceptCounters) ([]string, []plan.Step, error) {
	steps, err := tx.ListOpenSteps(ctx, identityID)
	if err != nil || len(steps) == 0 {
		return nil, nil, err
	}
	cases := map[string]bool{}
	var possible []plan.Step
	for i := range steps {
		s := &steps[i]
		s.Result = "a later event replaced this plan"
		if s.Status == store.StepPending {
			possible = append(possible, s.Step)
			s.Result += "; it may have been applied, and that plan undoes it"
		}
		s.Status, s.UpdatedAt = store.StepSuperseded, now
		if err := tx.UpdateStep(ctx, s); err != nil {
			return nil, nil, err
		}
		cases[s.CaseID] = true
	}
	for id := range cases {
		moved, err := e.settle(ctx, tx, id, now)
		if err != nil {
			return nil, nil, err
		}
		if moved == store.CaseCompleted {
			counters.completed++
		}
	}
	return slices.Sorted(maps.Keys(cases)), possible, nil
}

// settle recomputes a case's status from its steps and stores it. It
// returns the status the case moved to, or "" when its status did not
// change, for the caller to count once the transaction commits.
func (e *Engine) settle(ctx context.Context, tx store.Tx, caseID string, now time.Time) (store.CaseStatus, error) {
	c, err := tx.GetCase(ctx, caseID)
	if err != nil {
		return "", err
	}
	return e.settleCase(ctx, tx, c, now)
}

// settleCase is settle for a case already read in tx, its steps as
// written.
func (e *Engine) settleCase(ctx context.Context, tx store.Tx, c *store.Case, now time.Time) (store.CaseStatus, error) {
	status, reason := caseStatus(c.Steps)
	if status == c.Status && reason == c.Reason {
		return "", nil
	}
	moved := store.CaseStatus("")
	if status != c.Status {
		moved = status
	}
	c.Status, c.Reason, c.UpdatedAt = status, reason, now
	if status == store.CaseCompleted {
		c.CompletedAt = now
	}
	return moved, tx.UpdateCase(ctx, c)
}

// countSettled counts a committed change of a case's status.
func (m *Metrics) countSettled(moved store.CaseStatus) {
	switch moved {
	case store.CaseCompleted:
		m.addSettled(1, 0)
	case store.CaseFailed:
		m.addSettled(0, 1)
	}
}

// caseStatus derives a case's status from its steps: completed only when
// every step is final and none failed.
func caseStatus(steps []store.Step) (store.CaseStatus, string) {
	var pending, awaiting, failed int
	var firstFail, waiting string
	for _, s := range steps {
		switch s.Status {
		case store.StepPending:
			pending++
			if s.LastError != "" && waiting == "" {
				waiting = fmt.Sprintf("waiting on %s: %s (attempt %d)", s.System, s.LastError, s.Attempts)
			}
		case store.StepAwaitingApproval:
			awaiting++
		case store.StepFailed:
			failed++
			if firstFail == "" {
				firstFail = fmt.Sprintf("step %d (%s %s) failed: %s", s.Seq, s.Action, s.System, s.LastError)
			}
		}
	}
	switch {
	case failed > 0:
		return store.CaseFailed, firstFail
	case pending > 0:
		return store.CaseRunning, waiting
	case awaiting > 0:
		return store.CaseAwaitingApproval, fmt.Sprintf("%d step(s) await approval", awaiting)
	}
	return store.CaseCompleted, ""
}

// planSummary is the plan as the audit record keeps it: each step with its
// status and, for steps applied in the accepting transaction, the result.
func planSummary(steps []store.Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = fmt.Sprintf("%d %s [%s]", s.Seq, s.Step.String(), s.Status)
		if s.Result != "" {
			out[i] += " " + s.Result
		}
	}
	return out
}
