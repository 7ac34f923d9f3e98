package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/postgres"
	"github.com/jml-dev/jml/internal/store/sqlite"
)

// OpenStore opens the store a DSN names: sqlite:PATH or postgres://...
func OpenStore(ctx context.Context, dsn, synchronous string, log *slog.Logger, create bool) (store.Store, error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "//")
		if path == "" {
			return nil, fmt.Errorf("--db %q: give a file, as in sqlite:jml.db", dsn)
		}
		if _, err := os.Stat(path); !create && errors.Is(err, os.ErrNotExist) {
			// Only jml serve makes a store: a command pointed at the wrong
			// place must not quietly start an empty one (and a new key).
			return nil, fmt.Errorf("no store at %s (jml serve creates it on its first start): give --db, or --config with the server's jml.yaml", path)
		}
		return sqlite.Open(ctx, path, sqlite.Options{Logger: log, Synchronous: synchronous})
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return postgres.Open(ctx, dsn, postgres.Options{Logger: log})
	}
	return nil, fmt.Errorf("--db %q: want sqlite:PATH or a postgres:// URL", dsn)
}
