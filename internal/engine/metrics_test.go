package engine

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/identity"
)

// TestSettledWakesWaiters: the channel Settled returns is closed when a
// case completes or fails, and the counts have moved by then; a channel
// taken afterwards waits for the next.
func TestSettledWakesWaiters(t *testing.T) {
	t.Parallel()
	f, tg := newTargetFixture(t)
	m := f.e.metrics
	ch := m.Settled()
	f.submit(t, ev("1", identity.Joiner, "alice", human))
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("Settled was not closed when the joiner's case completed")
	}
	if m.CasesCompleted() != 1 {
		t.Fatalf("CasesCompleted = %d, want 1", m.CasesCompleted())
	}
	next := m.Settled()
	select {
	case <-next:
		t.Fatal("a channel taken after the completion is already closed")
	default:
	}
	tg.down = errors.New("connection refused")
	res, err := f.e.Submit(context.Background(), source, ev("2", identity.Leaver, "alice", nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.e.RunCase(context.Background(), res.CaseID, true); err != nil { // the last attempt: the case fails
		t.Fatal(err)
	}
	select {
	case <-next:
	case <-time.After(5 * time.Second):
		t.Fatal("Settled was not closed when a case failed")
	}
	if m.CasesFailed() != 1 {
		t.Fatalf("CasesFailed = %d, want 1", m.CasesFailed())
	}
}
