package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/riverqueue/river"

	"github.com/jml-dev/jml/internal/store"
)

// probeArgs is the suite's own job: its worker reports Name when it runs.
type probeArgs struct {
	Name string `json:"name"`
}

func (probeArgs) Kind() string { return "storetest.probe" }

// ran is one run of a probe job and when its worker started it.
type ran struct {
	name string
	at   time.Time
}

// testQueue checks the durable queue: a job enqueued in a transaction runs
// once that transaction commits, not before its scheduled time, and never
// when the transaction rolls back. The engine's timers (a grant's expiry, a
// future event, an account's deletion) rely on the scheduled time; a queue
// that ignored it would run them at once.
//
// One worker works the jobs in River's order (scheduled time, then ID), so
// the job due in an hour, had it been scheduled at once, would run before
// the one due in 300 ms that was enqueued after it: the test sees that
// without waiting for the hour to pass.
func testQueue(t *testing.T, s store.Store) {
	ctx := context.Background()
	update(t, s, func(tx store.Tx) error { return tx.Enqueue(ctx, probeArgs{Name: "now"}, time.Time{}) })
	// Due after the job above, whenever this transaction runs.
	var soon time.Time
	update(t, s, func(tx store.Tx) error {
		now := time.Now()
		soon = now.Add(300 * time.Millisecond)
		if err := tx.Enqueue(ctx, probeArgs{Name: "later"}, now.Add(time.Hour)); err != nil {
			return err
		}
		return tx.Enqueue(ctx, probeArgs{Name: "soon"}, soon)
	})
	boom := errors.New("boom")
	if err := s.Update(ctx, func(tx store.Tx) error {
		if err := tx.Enqueue(ctx, probeArgs{Name: "rolled back"}, time.Time{}); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}

	runs := make(chan ran, 8)
	workers := river.NewWorkers()
	river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[probeArgs]) error {
		runs <- ran{job.Args.Name, time.Now()}
		return nil
	}))
	if err := s.Jobs().Start(ctx, workers, store.JobConfig{Workers: 1, FetchCooldown: 5 * time.Millisecond, PollInterval: 20 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			if err := s.Jobs().Stop(ctx); err != nil {
				t.Errorf("stopping the jobs: %v", err)
			}
		}
	}
	defer stop()

	deadline := time.After(30 * time.Second)
	for _, want := range []string{"now", "soon"} {
		select {
		case r := <-runs:
			if r.name != want {
				t.Fatalf("job %q ran while %q was awaited (the job due in an hour is \"later\")", r.name, want)
			}
			if want == "soon" && r.at.Before(soon) {
				t.Fatalf("job due at %s ran at %s, %s early", soon.Format(time.RFC3339Nano), r.at.Format(time.RFC3339Nano), soon.Sub(r.at))
			}
		case <-deadline:
			t.Fatalf("job %q did not run within 30 s", want)
		}
	}
	// Stopping lets a job that was fetched finish, so whatever else the
	// worker took is in runs now.
	stop()
	close(runs)
	for r := range runs {
		t.Errorf("job %q ran (only \"now\" and \"soon\" were due; \"rolled back\" was never committed)", r.name)
	}
}
