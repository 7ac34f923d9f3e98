package store

// Durable jobs run on the store's database (River).

import (
	"context"
	"time"

	"github.com/riverqueue/river"
)

// JobArgs is a durable job's arguments; Kind names its worker. The same
// shape as River's JobArgs.
type JobArgs interface{ Kind() string }

// Jobs runs durable jobs (River) on the store's database.
type Jobs interface {
	// Start begins working jobs with the workers registered in w. It
	// returns once the workers run.
	Start(ctx context.Context, w *river.Workers, cfg JobConfig) error
	// Stop stops working, letting running jobs finish until ctx ends.
	Stop(ctx context.Context) error
}

// What jml serve runs jobs with unless its config says otherwise: a
// 5 ms fetch cooldown and a 100 ms poll, so that a job that becomes due
// (a retry, a scheduled event) starts within about a tenth of a second,
// where River's own defaults allow a second.
const (
	DefaultFetchCooldown = 5 * time.Millisecond
	DefaultPollInterval  = 100 * time.Millisecond
)

// JobConfig tunes the job workers.
type JobConfig struct {
	Workers       int           // concurrent jobs (default 16 on PostgreSQL, 4 on SQLite)
	FetchCooldown time.Duration // minimum time between fetches (River default 100ms)
	PollInterval  time.Duration // how often to poll for new jobs (River default 1s)
	MaxAttempts   int           // attempts before a job is discarded (default 25)
	// Timeout bounds one run of a job (default 30s).
	Timeout time.Duration
	// RescueAfter is how long a job may stay running before it is retried
	// (its worker died with it); at least Timeout. Default 45s.
	RescueAfter time.Duration
	// Periodic are jobs enqueued on a schedule by one process at a time
	// across every process sharing the database (River's leader).
	Periodic []*river.PeriodicJob
}
