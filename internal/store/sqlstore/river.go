package sqlstore

import (
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/jml-dev/jml/internal/store"
)

// RiverConfig is the River client configuration both backends use.
func RiverConfig(logger *slog.Logger, workers *river.Workers, cfg store.JobConfig) *river.Config {
	rc := &river.Config{
		Logger:            logger,
		Workers:           workers,
		FetchCooldown:     cfg.FetchCooldown,
		FetchPollInterval: cfg.PollInterval,
		MaxAttempts:       cfg.MaxAttempts,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.Workers}},
		// Jobs are jml's steps; their history is in cases and the audit
		// log, so River's completed rows need not linger.
		CompletedJobRetentionPeriod: time.Hour,
	}
	return rc
}
