package sqlstore

import (
	"cmp"
	"context"
	"log/slog"
	"time"

	"github.com/riverqueue/river/riverdriver"

	"github.com/riverqueue/river"

	"github.com/jml-dev/jml/internal/store"
)

// RiverConfig is the River client configuration both backends use.
func RiverConfig(logger *slog.Logger, workers *river.Workers, cfg store.JobConfig) *river.Config {
	rc := &river.Config{
		// River reports routine work at info level every few seconds; jml
		// passes on only its warnings and errors.
		Logger:            slog.New(minLevel{logger.Handler(), slog.LevelWarn}),
		Workers:           workers,
		FetchCooldown:     cfg.FetchCooldown,
		FetchPollInterval: cfg.PollInterval,
		MaxAttempts:       cfg.MaxAttempts,
		JobTimeout:        cmp.Or(cfg.Timeout, 30*time.Second),
		// A job still running after this died with its process (a crash,
		// a SIGKILL): River's rescuer, which looks every 30 s, retries it.
		// A restarted jml serve does not wait for it (Engine.Resume); this
		// bounds how long a replica that died and stays down delays its
		// cases on the others.
		RescueStuckJobsAfter: cmp.Or(cfg.RescueAfter, 45*time.Second),
		Queues:               map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.Workers}},
		// Jobs are jml's steps; their history is in cases and the audit
		// log, so River's completed rows need not linger.
		CompletedJobRetentionPeriod: time.Hour,
		PeriodicJobs:                cfg.Periodic,
	}
	return rc
}

// minLevel drops records below its level.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.level && m.Handler.Enabled(ctx, l)
}

func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(a), m.level}
}
func (m minLevel) WithGroup(n string) slog.Handler { return minLevel{m.Handler.WithGroup(n), m.level} }

// Jobs runs River on a backend's driver; both backends use it.
type Jobs[TTx any] struct {
	Driver riverdriver.Driver[TTx]
	Logger *slog.Logger
	// DefaultWorkers applies when JobConfig.Workers is zero.
	DefaultWorkers int
	client         *river.Client[TTx]
}

// Start implements store.Jobs.
func (j *Jobs[TTx]) Start(ctx context.Context, workers *river.Workers, cfg store.JobConfig) error {
	if cfg.Workers == 0 {
		cfg.Workers = j.DefaultWorkers
	}
	client, err := river.NewClient(j.Driver, RiverConfig(j.Logger, workers, cfg))
	if err != nil {
		return err
	}
	if err := client.Start(ctx); err != nil {
		return err
	}
	j.client = client
	return nil
}

// Stop implements store.Jobs.
func (j *Jobs[TTx]) Stop(ctx context.Context) error {
	if j.client == nil {
		return nil
	}
	return j.client.Stop(ctx)
}
