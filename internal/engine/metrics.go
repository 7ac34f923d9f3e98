package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/plan"
	"github.com/jml-dev/jml/internal/store"
)

// Metrics are the engine's Prometheus metrics. The counters count the work
// of the process that exposes them, as Prometheus counters do: jml serve
// counts the events its API, SCIM server and webhooks accept, and the cases,
// steps and credentials its own runs, jobs and timers settle. Work done by
// another process on the same store (another replica; jml import or jml
// event run against the store, which print their own counts) is in that
// process's counters, not these: reading the store's totals at each scrape
// would cost a scan of every event, and a short-lived command is never
// scraped. The gauges (Collector) are read from the store and cover every
// process.
type Metrics struct {
	eventsAccepted     *prometheus.CounterVec
	eventsDuplicate    prometheus.Counter
	casesCompleted     prometheus.Counter
	casesFailed        prometheus.Counter
	stepsDone          *prometheus.CounterVec
	stepsFailed        *prometheus.CounterVec
	credentialsIssued  prometheus.Counter
	credentialsRevoked prometheus.Counter
	findings           prometheus.Counter
	introspections     *prometheus.CounterVec

	// completed and failed mirror the two case counters for cheap reads;
	// settled is closed, and replaced, whenever either moves.
	completed, failed atomic.Int64
	settledMu         sync.Mutex
	settled           chan struct{}
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests and tools).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		settled:            make(chan struct{}),
		eventsAccepted:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jml_events_accepted_total", Help: "Lifecycle events this process accepted, by type (jml serve: through its API, SCIM and webhooks; jml import and jml event writing to the store count their own)."}, []string{"type"}),
		eventsDuplicate:    prometheus.NewCounter(prometheus.CounterOpts{Name: "jml_events_duplicate_total", Help: "Events this process answered from an earlier submission with the same source and event ID."}),
		casesCompleted:     prometheus.NewCounter(prometheus.CounterOpts{Name: "jml_cases_completed_total", Help: "Cases whose every step is final, counted by the process that settled them."}),
		casesFailed:        prometheus.NewCounter(prometheus.CounterOpts{Name: "jml_cases_failed_total", Help: "Cases that gave up on a step and need attention (alert on its rate), counted by the process that settled them."}),
		stepsDone:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jml_steps_done_total", Help: "Steps this process applied, by system and action."}, []string{"system", "action"}),
		stepsFailed:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jml_step_failures_total", Help: "Step attempts that failed in this process, by system and action."}, []string{"system", "action"}),
		credentialsIssued:  prometheus.NewCounter(prometheus.CounterOpts{Name: "jml_credentials_issued_total", Help: "Credentials this process issued or rotated in."}),
		credentialsRevoked: prometheus.NewCounter(prometheus.CounterOpts{Name: "jml_credentials_revoked_total", Help: "Credentials this process revoked."}),
		findings:           prometheus.NewCounter(prometheus.CounterOpts{Name: "jml_findings_total", Help: "Findings this process recorded."}),
		introspections:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jml_introspections_total", Help: "Introspection requests this process answered, by answer."}, []string{"active"}),
	}
	// Every event type has its series from the start, at 0: a type this
	// process has not accepted yet reads 0, not "no data".
	for _, t := range identity.EventTypes {
		m.eventsAccepted.WithLabelValues(string(t))
	}
	if reg != nil {
		reg.MustRegister(m.eventsAccepted, m.eventsDuplicate, m.casesCompleted, m.casesFailed, m.stepsDone, m.stepsFailed,
			m.credentialsIssued, m.credentialsRevoked, m.findings, m.introspections)
	}
	return m
}

// CasesCompleted is the number of cases completed since start.
func (m *Metrics) CasesCompleted() int64 { return m.completed.Load() }

// CasesFailed is the number of times a case gave up since start.
func (m *Metrics) CasesFailed() int64 { return m.failed.Load() }

// Settled returns a channel that is closed the next time a case completes
// or fails. Take it before reading the counts, so that no change between
// the two is missed.
func (m *Metrics) Settled() <-chan struct{} {
	m.settledMu.Lock()
	defer m.settledMu.Unlock()
	return m.settled
}

// addSettled counts completed and failed cases and wakes Settled's
// waiters.
func (m *Metrics) addSettled(completed, failed int) {
	if completed == 0 && failed == 0 {
		return
	}
	m.casesCompleted.Add(float64(completed))
	m.casesFailed.Add(float64(failed))
	m.completed.Add(int64(completed))
	m.failed.Add(int64(failed))
	m.settledMu.Lock()
	close(m.settled)
	m.settled = make(chan struct{})
	m.settledMu.Unlock()
}

// pendingCollector reports, at each scrape, the steps waiting to run, read
// from the store: what a target that is down holds back.
type pendingCollector struct {
	e           *Engine
	revocations *prometheus.Desc
	steps       *prometheus.Desc
	pastExpiry  *prometheus.Desc
	up          *prometheus.Desc
}

// Collector returns a Prometheus collector of the engine's pending work:
// jml_pending_revocations{system} (revoke, disable and delete steps not yet
// applied: access that should be gone and may not be) and
// jml_pending_steps{system,action}, and jml_grants_past_expiry (grants
// still held after their expiry: 0 but for the moment between a timer and
// its revocation, and for revocations a system that is down holds back).
func (e *Engine) Collector() prometheus.Collector {
	return &pendingCollector{e: e,
		revocations: prometheus.NewDesc("jml_pending_revocations", "Revocation steps (revoke credential, revoke grant, disable or delete account) waiting to run, by system.", []string{"system"}, nil),
		steps:       prometheus.NewDesc("jml_pending_steps", "Steps waiting to run, by system and action.", []string{"system", "action"}, nil),
		pastExpiry:  prometheus.NewDesc("jml_grants_past_expiry", "Grants still held after their expiry (maxDuration); the goal is 0.", nil, nil),
		up:          prometheus.NewDesc("jml_pending_scrape_ok", "1 if the pending-work metrics could be read from the store.", nil, nil),
	}
}

func (c *pendingCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.revocations
	ch <- c.steps
	ch <- c.pastExpiry
	ch <- c.up
}

func (c *pendingCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var counts []store.StepCount
	var pastExpiry int
	err := c.e.store.View(ctx, func(tx store.Tx) error {
		var err error
		if counts, err = tx.CountPendingSteps(ctx); err != nil {
			return err
		}
		pastExpiry, err = tx.CountExpiringGrants(ctx, c.e.Now().UTC())
		return err
	})
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.pastExpiry, prometheus.GaugeValue, float64(pastExpiry))
	revoking := map[string]int{}
	for sys := range c.e.Policy().Systems {
		revoking[sys] = 0 // every system reports, zero included
	}
	for _, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.steps, prometheus.GaugeValue, float64(n.Count), n.System, n.Action)
		if plan.Action(n.Action).Narrowing() {
			revoking[n.System] += n.Count
		}
	}
	for sys, n := range revoking {
		ch <- prometheus.MustNewConstMetric(c.revocations, prometheus.GaugeValue, float64(n), sys)
	}
}
