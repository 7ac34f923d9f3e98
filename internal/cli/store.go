package cli

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/postgres"
	"github.com/jml-dev/jml/internal/store/sqlite"
)

// OpenStore opens the store a DSN names: sqlite:PATH or postgres://...
func OpenStore(ctx context.Context, dsn, synchronous string, log *slog.Logger) (store.Store, error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "//")
		if path == "" {
			return nil, fmt.Errorf("--db %q: give a file, as in sqlite:jml.db", dsn)
		}
		return sqlite.Open(ctx, path, sqlite.Options{Logger: log, Synchronous: synchronous})
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return postgres.Open(ctx, dsn, log)
	}
	return nil, fmt.Errorf("--db %q: want sqlite:PATH or a postgres:// URL", dsn)
}
