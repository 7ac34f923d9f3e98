package engine

// The engine's durable jobs and timers, registered by the file that owns
// each (package jobs): a case's run (run.go), a future-dated event
// (schedule.go), a grant's expiry and the expiry sweep (expiry.go), the end
// of a rotation overlap (overlap.go), a retention (retention.go) and the
// end of a finding's acknowledgement (findings.go).

import (
	"time"

	"github.com/riverqueue/river"

	"github.com/jml-dev/jml/internal/jobs"
)

// Jobs registers every job kind and timer of the engine, the expiry sweep
// every sweepEvery (DefaultExpirySweep when zero), for jml serve to start.
func (e *Engine) Jobs(sweepEvery time.Duration) *jobs.Registry {
	r := jobs.New()
	e.registerRun(r)
	e.registerSchedule(r)
	e.registerExpiry(r, sweepEvery)
	e.registerOverlap(r)
	e.registerRetention(r)
	e.registerFindings(r)
	return r
}

// Workers returns the River workers of the engine's jobs (Jobs' workers).
func (e *Engine) Workers() *river.Workers { return e.Jobs(0).Workers() }

// PeriodicJobs returns the engine's periodic timers, the expiry sweep every
// sweepEvery (Jobs' timers).
func (e *Engine) PeriodicJobs(sweepEvery time.Duration) []*river.PeriodicJob {
	return e.Jobs(sweepEvery).Periodic()
}
