// Package sqlite is jml's embedded store: SQLite in one file through the
// pure-Go modernc.org/sqlite driver, in WAL mode, with River's SQLite driver
// for durable jobs in the same file.
//
// SQLite admits one writer at a time, so writes (jml's and River's) share a
// single connection and never see SQLITE_BUSY from each other; reads use a
// separate pool of read-only connections, which WAL lets run beside the
// writer.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/sqlstore"
)

var dialect = sqlstore.Dialect{Name: "sqlite", Blob: "BLOB", ForUpdate: ""}

// Store is the SQLite store.
type Store struct {
	path   string
	write  *sql.DB
	read   *sql.DB
	logger *slog.Logger
	insert *river.Client[*sql.Tx]
	jobs   *jobs
}

var _ store.Store = (*Store)(nil)

// Options tune Open.
type Options struct {
	Logger *slog.Logger
	// Synchronous is SQLite's synchronous pragma: "FULL" (the default:
	// every commit is fsynced) or "NORMAL" (WAL commits survive a process
	// crash but may be lost on power failure).
	Synchronous string
}

func dsn(path string, readOnly bool, sync string) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+sync+")")
	q.Add("_pragma", "foreign_keys(1)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_txlock", "immediate")
	}
	return "file:" + path + "?" + q.Encode()
}

// Open opens (creating if needed) the database at path and migrates it.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	sync := opts.Synchronous
	if sync == "" {
		sync = "FULL"
	}
	if sync != "FULL" && sync != "NORMAL" {
		return nil, fmt.Errorf("sqlite synchronous %q: want FULL or NORMAL", sync)
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	write, err := sql.Open("sqlite", dsn(path, false, sync))
	if err != nil {
		return nil, err
	}
	write.SetMaxOpenConns(1)
	write.SetConnMaxIdleTime(0)
	if err := write.PingContext(ctx); err != nil {
		write.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &Store{path: path, write: write, logger: opts.Logger}
	if err := s.migrate(ctx); err != nil {
		write.Close()
		return nil, err
	}
	s.read, err = sql.Open("sqlite", dsn(path, true, sync))
	if err != nil {
		write.Close()
		return nil, err
	}
	s.read.SetMaxOpenConns(4)
	s.insert, err = river.NewClient(riversqlite.New(write), &river.Config{Logger: opts.Logger})
	if err != nil {
		s.Close()
		return nil, err
	}
	s.jobs = &jobs{s: s}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	m, err := rivermigrate.New(riversqlite.New(s.write), &rivermigrate.Config{Logger: s.logger})
	if err != nil {
		return err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrate river: %w", err)
	}
	return sqlstore.Migrate(ctx, dialect, func(ctx context.Context, fn func(sqlstore.Conn) error) error {
		return s.inTx(ctx, s.write, false, func(tx *sql.Tx) error { return fn(conn{tx}) })
	})
}

func (s *Store) inTx(ctx context.Context, db *sql.DB, readOnly bool, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: readOnly})
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	return s.inTx(ctx, s.write, false, func(tx *sql.Tx) error {
		return fn(sqlstore.NewTx(conn{tx}, dialect, func(ctx context.Context, args store.JobArgs, runAt time.Time) error {
			_, err := s.insert.InsertTx(ctx, tx, args, &river.InsertOpts{ScheduledAt: runAt})
			return err
		}))
	})
}

// View implements store.Store.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	return s.inTx(ctx, s.read, true, func(tx *sql.Tx) error {
		return fn(sqlstore.NewTx(conn{tx}, dialect, nil))
	})
}

func (s *Store) Jobs() store.Jobs               { return s.jobs }
func (s *Store) Backend() string                { return "sqlite" }
func (s *Store) Ping(ctx context.Context) error { return s.read.PingContext(ctx) }

// DB returns the write pool, for benchmarks that measure raw SQLite.
func (s *Store) DB() *sql.DB { return s.write }

// Close closes both pools. Stop the jobs first.
func (s *Store) Close() error {
	var errs []error
	if s.read != nil {
		errs = append(errs, s.read.Close())
	}
	errs = append(errs, s.write.Close())
	return errors.Join(errs...)
}

// conn adapts *sql.Tx to sqlstore.Conn.
type conn struct{ tx *sql.Tx }

func (c conn) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := c.tx.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (c conn) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	rows, err := c.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }

// jobs runs River on the write pool.
type jobs struct {
	s      *Store
	client *river.Client[*sql.Tx]
}

func (j *jobs) Start(ctx context.Context, w any, cfg store.JobConfig) error {
	workers, ok := w.(*river.Workers)
	if !ok {
		return fmt.Errorf("jobs: workers must be *river.Workers, got %T", w)
	}
	if cfg.Workers == 0 {
		cfg.Workers = 4
	}
	client, err := river.NewClient(riversqlite.New(j.s.write), sqlstore.RiverConfig(j.s.logger, workers, cfg))
	if err != nil {
		return err
	}
	if err := client.Start(ctx); err != nil {
		return err
	}
	j.client = client
	return nil
}

func (j *jobs) Stop(ctx context.Context) error {
	if j.client == nil {
		return nil
	}
	return j.client.Stop(ctx)
}
