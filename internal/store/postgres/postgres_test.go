package postgres

import (
	"fmt"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/pgtest"
	"github.com/jml-dev/jml/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(t.Context(), pgtest.NewDatabase(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestUpdateBatchPipelined: a pipelined batch commits what it wrote; one
// whose deferred insert fails at commit writes nothing, and the pool's
// connections stay usable (none is left inside a transaction).
func TestUpdateBatchPipelined(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, pgtest.NewDatabase(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	event := func(id, sourceID string) *store.Event {
		return &store.Event{ID: id, Event: identity.Event{Source: "hr", ID: sourceID, Type: identity.Joiner, ExternalID: "a", Kind: identity.Human},
			Status: store.EventApplied, ReceivedAt: t0, EffectiveAt: t0}
	}
	lookUp := func(tx store.Tx) error {
		_, _, err := tx.GetIdentitiesAndEvents(ctx, []store.ExternalRef{{Source: "hr", ExternalID: "a"}}, []store.EventRef{{Source: "hr", ID: "e1"}})
		return err
	}
	if err := s.UpdateBatch(ctx, []func(store.Tx) error{lookUp, func(tx store.Tx) error { return tx.InsertNewEvent(ctx, event("evt_1", "e1")) }}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ { // more batches than the pool has connections
		err := s.UpdateBatch(ctx, []func(store.Tx) error{lookUp,
			func(tx store.Tx) error {
				return tx.InsertNewEvent(ctx, event(fmt.Sprint("evt_new", i), fmt.Sprint("n", i)))
			},
			func(tx store.Tx) error { return tx.InsertNewEvent(ctx, event(fmt.Sprint("evt_dup", i), "e1")) }})
		if err == nil {
			t.Fatal("a batch inserting an existing (source, event ID) committed")
		}
	}
	err = s.View(ctx, func(tx store.Tx) error {
		if _, err := tx.GetEvent(ctx, "evt_1"); err != nil {
			return err
		}
		if _, err := tx.GetEvent(ctx, "evt_new0"); !store.IsNotFound(err) {
			t.Errorf("a failed batch's other insert was kept: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
