package postgres

import (
	"testing"

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
