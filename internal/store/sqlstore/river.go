package sqlstore

import (
	"cmp"
	"context"
	"log/slog"
	"time"

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
		JobTimeout:        cmp.Or(cfg.Timeout, time.Minute),
		// A job still running after this died with its process (a crash,
		// a SIGKILL): River's rescuer retries it.
		RescueStuckJobsAfter: cmp.Or(cfg.RescueAfter, 5*time.Minute),
		Queues:               map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.Workers}},
		// Jobs are jml's steps; their history is in cases and the audit
		// log, so River's completed rows need not linger.
		CompletedJobRetentionPeriod: time.Hour,
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
