package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(context.Background(), filepath.Join(t.TempDir(), "jml.db"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
