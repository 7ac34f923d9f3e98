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
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/sqlstore"
)

var dialect = sqlstore.Dialect{Name: "sqlite", Blob: "BLOB", ForUpdate: "", Serial: "INTEGER", OneWriter: true}

// Store is the SQLite store.
type Store struct {
	write  *sql.DB
	read   *sql.DB
	logger *slog.Logger
	insert *river.Client[*sql.Tx]
	jobs   *sqlstore.Jobs[*sql.Tx]

	writeStmts, readStmts *stmtCache
	// updates feeds the group committer: concurrent Update calls share one
	// SQLite transaction (and one fsync), each inside its own savepoint.
	updates chan *update
	stop    chan struct{}
	stopped chan struct{}
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
	// Savepoint journals (one per update in a group commit) stay in memory
	// instead of temporary files, and the page cache holds the hot indexes.
	q.Add("_pragma", "temp_store(MEMORY)")
	q.Add("_pragma", "cache_size(-32768)")
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
	s := &Store{write: write, logger: opts.Logger}
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
	s.jobs = &sqlstore.Jobs[*sql.Tx]{Driver: riversqlite.New(write), Logger: opts.Logger, DefaultWorkers: 4}
	s.writeStmts, s.readStmts = newStmtCache(write), newStmtCache(s.read)
	s.updates, s.stop, s.stopped = make(chan *update), make(chan struct{}), make(chan struct{})
	go s.commitLoop()
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	m, err := rivermigrate.New(riversqlite.New(s.write), &rivermigrate.Config{Logger: sqlstore.Quiet(s.logger)})
	if err != nil {
		return err
	}
	res, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return fmt.Errorf("migrate river: %w", err)
	}
	if len(res.Versions) > 0 && s.logger != nil {
		s.logger.Info("applied River's migrations", "versions", len(res.Versions))
	}
	return sqlstore.Migrate(ctx, dialect, func(ctx context.Context, fn func(sqlstore.Conn) error) error {
		return s.inTx(ctx, s.write, false, func(tx *sql.Tx) error { return fn(conn{tx: tx}) })
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

// Update implements store.Store. Calls made at the same time commit
// together (group commit): each fn runs in its own savepoint of a shared
// transaction, so it still commits or rolls back as a whole, and Update
// returns only after the shared commit is durable.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	u := &update{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case s.updates <- u:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return errors.New("sqlite store is closed")
	}
	return <-u.done
}

// maxBatch bounds how many updates share one transaction.
const maxBatch = 64

type update struct {
	ctx  context.Context
	fn   func(store.Tx) error
	done chan error
}

// commitLoop is the single writer. It takes one update, then whatever else
// is already waiting, and commits them in one transaction.
func (s *Store) commitLoop() {
	defer close(s.stopped)
	for {
		var first *update
		select {
		case first = <-s.updates:
		case <-s.stop:
			return
		}
		batch := []*update{first}
	drain:
		for len(batch) < maxBatch {
			select {
			case u := <-s.updates:
				batch = append(batch, u)
			default:
				break drain
			}
		}
		s.commitBatch(batch)
	}
}

func (s *Store) commitBatch(batch []*update) {
	errs := make([]error, len(batch))
	tx, err := s.write.BeginTx(context.Background(), nil)
	if err != nil {
		for _, u := range batch {
			u.done <- err
		}
		return
	}
	fail := func(err error) {
		tx.Rollback()
		for _, u := range batch {
			u.done <- err
		}
	}
	c := &writeConn{conn: conn{tx: tx, stmts: s.writeStmts}}
	for i, u := range batch {
		if err := u.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		if len(batch) == 1 {
			errs[i] = s.runUpdate(u, tx, c)
		} else {
			errs[i] = s.runSavepoint(u, tx, c)
		}
	}
	if len(batch) == 1 && errs[0] != nil {
		tx.Rollback()
		batch[0].done <- errs[0]
		return
	}
	if c.audited {
		// The records the updates wrote are sealed in their transaction:
		// one seal row for the batch.
		if _, err := audit.Seal(context.Background(), sqlstore.AuditSealRows(c, dialect), 0); err != nil {
			fail(fmt.Errorf("seal audit records: %w", err))
			return
		}
	}
	cerr := tx.Commit()
	for i, u := range batch {
		if errs[i] == nil {
			errs[i] = cerr
		}
		u.done <- errs[i]
	}
}

// writeConn is the writer's connection: a conn that notes whether the
// transaction wrote audit records (sqlstore.InlineSealer).
type writeConn struct {
	conn
	audited bool
}

var _ sqlstore.InlineSealer = (*writeConn)(nil)

func (c *writeConn) AuditAppended() { c.audited = true }

// runUpdate runs one update's fn, turning a panic into an error so that
// one bad caller cannot take the writer down.
func (s *Store) runUpdate(u *update, tx *sql.Tx, c *writeConn) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in update: %v", r)
		}
	}()
	return u.fn(sqlstore.NewTx(c, dialect, func(ctx context.Context, args store.JobArgs, runAt time.Time) error {
		_, err := s.insert.InsertTx(ctx, tx, args, &river.InsertOpts{ScheduledAt: runAt})
		return err
	}))
}

// runSavepoint runs one update of a batch inside a savepoint, undoing
// exactly its changes, its audit records included, when it fails.
func (s *Store) runSavepoint(u *update, tx *sql.Tx, c *writeConn) error {
	if _, err := tx.Exec("SAVEPOINT jml_update"); err != nil {
		return err
	}
	err := s.runUpdate(u, tx, c)
	if err != nil {
		if _, rerr := tx.Exec("ROLLBACK TO jml_update"); rerr != nil {
			return errors.Join(err, rerr)
		}
	}
	if _, rerr := tx.Exec("RELEASE jml_update"); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// View implements store.Store.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	return s.inTx(ctx, s.read, true, func(tx *sql.Tx) error {
		return fn(sqlstore.NewTx(conn{tx: tx, stmts: s.readStmts}, dialect, nil))
	})
}

func (s *Store) Jobs() store.Jobs { return s.jobs }

// SealAudit implements store.Store: SQLite seals records in the
// transaction that writes them (it has one writer, so the head lock costs
// nothing).
func (s *Store) SealAudit(context.Context) error { return nil }

func (s *Store) Backend() string                { return "sqlite" }
func (s *Store) Ping(ctx context.Context) error { return s.read.PingContext(ctx) }

// DB returns the write pool, for benchmarks that measure raw SQLite.
func (s *Store) DB() *sql.DB { return s.write }

// Close stops the writer and closes both pools. Stop the jobs first.
func (s *Store) Close() error {
	if s.stop != nil {
		select {
		case <-s.stop:
		default:
			close(s.stop)
			<-s.stopped
		}
	}
	if s.writeStmts != nil {
		s.writeStmts.close()
		s.readStmts.close()
	}
	var errs []error
	if s.read != nil {
		errs = append(errs, s.read.Close())
	}
	errs = append(errs, s.write.Close())
	return errors.Join(errs...)
}

// conn adapts *sql.Tx to sqlstore.Conn, running statements prepared once
// per connection (preparing is a fifth of a write's CPU time otherwise).
type conn struct {
	tx    *sql.Tx
	stmts *stmtCache // nil: prepare every time (migrations)
}

func (c conn) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	var res sql.Result
	var err error
	if st := c.stmts.get(ctx, q); st != nil {
		res, err = c.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	} else {
		res, err = c.tx.ExecContext(ctx, q, args...)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (c conn) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	var rows *sql.Rows
	var err error
	if st := c.stmts.get(ctx, q); st != nil {
		rows, err = c.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	} else {
		rows, err = c.tx.QueryContext(ctx, q, args...)
	}
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

// stmtCache holds one prepared statement per query text. database/sql
// re-uses a statement on every connection it was prepared on, so with the
// single write connection each query is prepared once.
//
// A miss never prepares inline: the only write connection is held by the
// transaction asking, so the statement is prepared in the background once
// a connection is free, and this call runs the query unprepared.
type stmtCache struct {
	db       *sql.DB
	mu       sync.RWMutex
	stmts    map[string]*sql.Stmt
	inflight map[string]bool
	closed   bool
	wg       sync.WaitGroup // background prepares
}

// close stops new background prepares and waits for running ones, so that
// none touches the database after it is closed.
func (c *stmtCache) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.wg.Wait()
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, stmts: map[string]*sql.Stmt{}, inflight: map[string]bool{}}
}

// get returns the prepared statement for q, or nil when it is not prepared
// yet.
func (c *stmtCache) get(_ context.Context, q string) *sql.Stmt {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	st := c.stmts[q]
	c.mu.RUnlock()
	if st != nil {
		return st
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.inflight[q] && !c.closed {
		c.inflight[q] = true
		c.wg.Add(1)
		go c.prepare(q)
	}
	return nil
}

func (c *stmtCache) prepare(q string) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := c.db.PrepareContext(ctx, q)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		return // stays in flight: the query is run unprepared from now on
	}
	c.stmts[q] = st
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }
