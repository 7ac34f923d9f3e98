// Package postgres is jml's PostgreSQL store, through pgx, with River's
// pgx driver for durable jobs in the same database. Several jml replicas
// can share one database: River spreads jobs across them.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/clock"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/store/sqlstore"
)

// The audit horizon is the oldest transaction still running (its ID, as
// audit_records.xid stores it): every transaction below it has committed
// or rolled back, and its records are visible or gone for good.
var dialect = sqlstore.Dialect{Name: "postgres", Blob: "BYTEA", ForUpdate: " FOR UPDATE", Serial: "BIGSERIAL",
	Horizon: "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"}

// Store is the PostgreSQL store.
type Store struct {
	pool *pgxpool.Pool
	// locks holds the sessions of LockAccess's advisory locks, apart from
	// pool so that a lock waiting or held never takes a connection that a
	// transaction needs.
	locks  *pgxpool.Pool
	logger *slog.Logger
	insert *river.Client[pgx.Tx]
	jobs   *sqlstore.Jobs[pgx.Tx]

	stopSealer context.CancelFunc
	sealerDone chan struct{}
	clock      clock.Clock
}

// sealInterval is how often unsealed audit records are chained: the
// longest a written record stays unchained.
const sealInterval = 10 * time.Millisecond

// sealLimit bounds the records one seal row chains.
const sealLimit = 1000

// sealLock keeps sealers of several replicas from working at once.
const sealLock = 7414968

var _ store.Store = (*Store)(nil)

// Options configure a PostgreSQL store. The zero value is ready to use.
type Options struct {
	// Logger receives the sealer's errors and River's migration log; nil
	// discards them.
	Logger *slog.Logger
	// Clock paces the audit sealer and bounds SealAudit's wait; nil means
	// clock.Real.
	Clock clock.Clock
}

// Open connects to the database at url and migrates it.
func Open(ctx context.Context, url string, o Options) (*Store, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	clk := o.Clock
	if clk == nil {
		clk = clock.Real
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres url: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgx defaults to max(4, CPUs) connections; River's producer and
		// concurrent API requests need more than that on small machines.
		cfg.MaxConns = max(cfg.MaxConns, 16)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect postgres: %w", err)
	}
	lcfg := cfg.Copy()
	// A run holds one for each system it calls; 16 per replica keeps two
	// replicas and their main pools within PostgreSQL's default 100
	// connections. A run that finds none free waits, within its bound.
	lcfg.MaxConns, lcfg.MinConns = 16, 0
	locks, err := pgxpool.NewWithConfig(ctx, lcfg)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool, locks: locks, logger: logger, clock: clk}
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: sqlstore.Quiet(logger)})
	if err != nil {
		pool.Close()
		return nil, err
	}
	res, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("migrate river: %w", err)
	}
	if len(res.Versions) > 0 && logger != nil {
		logger.Info("applied River's migrations", "versions", len(res.Versions))
	}
	if err := sqlstore.Migrate(ctx, dialect, migrator(pool)); err != nil {
		pool.Close()
		return nil, err
	}
	s.insert, err = river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: logger})
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.jobs = &sqlstore.Jobs[pgx.Tx]{Driver: riverpgxv5.New(pool), Logger: logger, DefaultWorkers: 16}
	sctx, cancel := context.WithCancel(context.Background())
	s.stopSealer, s.sealerDone = cancel, make(chan struct{})
	go s.sealLoop(sctx)
	return s, nil
}

// migrator runs each migration in a transaction of its own, one migrator
// at a time across replicas.
func migrator(pool *pgxpool.Pool) func(ctx context.Context, fn func(sqlstore.Conn) error) error {
	return func(ctx context.Context, fn func(sqlstore.Conn) error) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(7414967)"); err != nil {
				return err
			}
			c := &conn{tx: tx}
			if err := fn(c); err != nil {
				return err
			}
			return c.flush(ctx)
		})
	}
}

// sealLoop chains unsealed audit records every sealInterval.
func (s *Store) sealLoop(ctx context.Context) {
	defer close(s.sealerDone)
	t := s.clock.NewTicker(sealInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		if err := s.seal(ctx); err != nil && ctx.Err() == nil {
			s.logger.Error("sealing audit records", "error", err)
		}
	}
}

// seal chains unsealed records until none it may seal is left. Records are written in
// their event's transaction and chained here, in a transaction of their
// own that alone takes the head lock.
func (s *Store) seal(ctx context.Context) error {
	for {
		var n int
		err := s.run(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
			var got bool
			if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1)", sealLock).Scan(&got); err != nil || !got {
				return err
			}
			var err error
			c := &conn{tx: tx}
			n, err = audit.Seal(ctx, sqlstore.AuditSealRows(c, dialect), sealLimit)
			if err != nil {
				return err
			}
			return c.flush(ctx)
		})
		if err != nil || n < sealLimit {
			return err
		}
	}
}

// sealWait bounds how long SealAudit waits for records it cannot seal yet
// because a transaction older than theirs is still running.
const sealWait = time.Second

// SealAudit implements store.Store: it chains every record committed
// before it was called (records written meanwhile are the sealer's, so a
// steady stream of writes does not keep it busy). Records behind a
// transaction that is still running (any write transaction on the server
// that began before theirs committed) wait for it to end; SealAudit waits
// for that up to sealWait, then returns with them unsealed, for the sealer
// to chain when the transaction ends.
func (s *Store) SealAudit(ctx context.Context) error {
	deadline := s.clock.Now().Add(sealWait)
	// Every record committed by now has an id the sequence has handed out.
	var last int64
	if err := s.pool.QueryRow(ctx, "SELECT last_value FROM audit_records_id_seq").Scan(&last); err != nil {
		return err
	}
	for {
		if err := s.seal(ctx); err != nil {
			return err
		}
		var pending bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audit_records
WHERE (xid, id) > (SELECT sealed_xid, sealed_id FROM audit_head WHERE id = 1) AND id <= $1)`, last).Scan(&pending); err != nil || !pending {
			return err
		}
		if s.clock.Now().After(deadline) {
			return nil
		}
		// Another replica holds the seal lock, or an older transaction
		// is still open: go again.
		if err := s.pause(ctx, time.Millisecond); err != nil {
			return err
		}
	}
}

// pause waits d on the store's clock, or until ctx ends.
func (s *Store) pause(ctx context.Context, d time.Duration) error {
	t := s.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retryable reports whether a transaction failed only because of a
// concurrent one: a serialisation failure, a deadlock, or a unique
// violation that re-reading will turn into a clean answer.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01", "23505":
			return true
		}
	}
	return false
}

func (s *Store) run(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		err = pgx.BeginTxFunc(ctx, s.pool, opts, fn)
		if err == nil || !retryable(err) {
			return err
		}
	}
	return err
}

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, fn func(store.Tx) error) error {
	return s.update(ctx, false, fn)
}

var _ store.Batcher = (*Store)(nil)

// UpdateBatch implements store.Batcher: the fns share one transaction and
// their deferred inserts go out merged, table by table, just before
// commit. The transaction is pipelined: BEGIN goes out with the first
// statement and COMMIT with the deferred inserts, so a batch whose only
// reads are its first (the engine's prefetch) costs two round trips.
func (s *Store) UpdateBatch(ctx context.Context, fns []func(store.Tx) error) error {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		err = s.pipelined(ctx, fns)
		if err == nil || !retryable(err) {
			return err
		}
	}
	return err
}

// pipelined runs fns in one transaction on a pooled connection, with BEGIN
// and COMMIT sent along with other statements instead of on their own.
func (s *Store) pipelined(ctx context.Context, fns []func(store.Tx) error) (err error) {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A connection released inside a transaction (the ROLLBACK below
	// failed) is closed by the pool, never reused.
	defer pc.Release()
	pgc := pc.Conn()
	c := &conn{tx: pgc, holdWrites: true, begin: true}
	defer func() {
		if err != nil && !c.begin { // BEGIN went out: end the transaction
			pgc.Exec(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	enqueue := func(ctx context.Context, args store.JobArgs, runAt time.Time) error {
		if err := c.sendBegin(ctx); err != nil {
			return err
		}
		_, err := s.insert.InsertTx(ctx, connTx{pgc}, args, &river.InsertOpts{ScheduledAt: runAt})
		return err
	}
	// One Tx for every fn: what one prefetches, the others find.
	tx := sqlstore.NewTx(c, dialect, enqueue)
	for _, fn := range fns {
		if err = fn(tx); err != nil {
			return err
		}
	}
	return c.commit(ctx)
}

// update runs fns in one read-write transaction; holdWrites keeps deferred
// inserts until the end even when a read comes first.
func (s *Store) update(ctx context.Context, holdWrites bool, fns ...func(store.Tx) error) error {
	return s.run(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		c := &conn{tx: tx, holdWrites: holdWrites}
		enqueue := func(ctx context.Context, args store.JobArgs, runAt time.Time) error {
			_, err := s.insert.InsertTx(ctx, tx, args, &river.InsertOpts{ScheduledAt: runAt})
			return err
		}
		for _, fn := range fns {
			if err := fn(sqlstore.NewTx(c, dialect, enqueue)); err != nil {
				return err
			}
		}
		return c.flush(ctx)
	})
}

// View implements store.Store. The transaction reads one snapshot
// (REPEATABLE READ; read-only, so it never fails to serialise): a reader
// that reads the audit head, then seals and records, must not see a seal
// that committed in between, nor any view mix two moments.
func (s *Store) View(ctx context.Context, fn func(store.Tx) error) error {
	return s.run(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		return fn(sqlstore.NewTx(&conn{tx: tx}, dialect, nil))
	})
}

func (s *Store) Jobs() store.Jobs               { return s.jobs }
func (s *Store) Backend() string                { return "postgres" }
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Close stops the sealer (sealing what is unsealed) and closes the pool.
func (s *Store) Close() error {
	s.stopSealer()
	<-s.sealerDone
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.SealAudit(ctx)
	s.locks.Close()
	s.pool.Close()
	return err
}

// accessLockClass is the first key of LockAccess's advisory locks (the
// two-key space, apart from the one-key locks of the sealer and migrator).
const accessLockClass = 7414969

var _ store.AccessLocker = (*Store)(nil)

// LockAccess implements store.AccessLocker with a session-level advisory
// lock on a connection of its own: a replica that dies releases its locks
// with its sessions. Two keys that hash alike only wait for each other.
func (s *Store) LockAccess(ctx context.Context, key string) (func(), error) {
	c, err := s.locks.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	k := int32(h.Sum32())
	if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1, $2)", accessLockClass, k); err != nil {
		// The wait may have been cut while the lock was granted: end the
		// session rather than return it to the pool holding the lock.
		c.Conn().Close(context.Background())
		c.Release()
		return nil, err
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.Exec(ctx, "SELECT pg_advisory_unlock($1, $2)", accessLockClass, k); err != nil {
			c.Conn().Close(ctx)
		}
		c.Release()
	}, nil
}

// conn adapts pgx.Tx to sqlstore.Conn, rewriting ? placeholders to $n. It
// is a Deferrer: statements whose results are not read wait in a batch
// that goes out, in one round trip, before the next statement or commit.
type conn struct {
	tx      querier
	pending []sqlstore.Statement
	// begin is a BEGIN not sent yet: it goes out with the next statement
	// (UpdateBatch's pipelined transactions).
	begin bool
	// holdWrites keeps deferred statements until flush even when a read
	// comes first (UpdateBatch, whose caller guarantees reads do not need
	// them).
	holdWrites bool
}

var _ sqlstore.Deferrer = (*conn)(nil)

// querier is what conn needs of a pgx transaction or connection.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// sendBegin sends a pending BEGIN (and the deferred statements) now.
func (c *conn) sendBegin(ctx context.Context) error {
	if !c.begin {
		return nil
	}
	return c.send(ctx, false)
}

// commit sends the deferred statements and COMMIT in one round trip.
func (c *conn) commit(ctx context.Context) error {
	return c.send(ctx, true)
}

func (c *conn) ExecLater(q string, args ...any) {
	c.pending = append(c.pending, sqlstore.Statement{Query: q, Args: args})
}

// flush sends the deferred statements, inserts into the same table merged
// into multi-row statements, in one round trip, and reports the first
// error.
func (c *conn) flush(ctx context.Context) error {
	if len(c.pending) == 0 {
		return nil
	}
	return c.send(ctx, false)
}

// send sends, in one round trip, a pending BEGIN, the deferred statements
// merged, and COMMIT when commit is set.
func (c *conn) send(ctx context.Context, commit bool) error {
	b := c.batch()
	if commit {
		b.Queue("COMMIT")
	}
	if b.Len() == 0 {
		return nil
	}
	br := c.tx.SendBatch(ctx, b)
	for i := 0; i < b.Len(); i++ {
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return err
		}
		if commit && i == b.Len()-1 && tag.String() == "ROLLBACK" {
			br.Close()
			return pgx.ErrTxCommitRollback
		}
	}
	return br.Close()
}

// batch takes the pending BEGIN and deferred statements into a batch.
func (c *conn) batch() *pgx.Batch {
	b := &pgx.Batch{}
	if c.begin {
		b.Queue("BEGIN")
		c.begin = false
	}
	for _, st := range sqlstore.MergeInserts(c.pending, 65535) {
		b.Queue(rebind(st.Query), st.Args...)
	}
	c.pending = nil
	return b
}

var rewritten sync.Map // query with ? -> query with $n

// rebind turns ? into $1, $2, ... The shared queries contain no ? inside
// string literals, so a plain scan is exact.
func rebind(q string) string {
	if v, ok := rewritten.Load(q); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	out := b.String()
	rewritten.Store(q, out)
	return out
}

func (c *conn) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	if !c.holdWrites {
		if err := c.flush(ctx); err != nil {
			return 0, err
		}
	}
	if err := c.sendBegin(ctx); err != nil {
		return 0, err
	}
	tag, err := c.tx.Exec(ctx, rebind(q), args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (c *conn) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	if !c.holdWrites {
		if err := c.flush(ctx); err != nil {
			return nil, err
		}
	}
	if c.begin {
		// The pending BEGIN (and any deferred statements) go out in the
		// query's round trip.
		b := c.batch()
		n := b.Len()
		b.Queue(rebind(q), args...)
		br := c.tx.SendBatch(ctx, b)
		for i := 0; i < n; i++ {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return nil, err
			}
		}
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return nil, err
		}
		return &batchRows{Rows: rows, br: br}, nil
	}
	rows, err := c.tx.Query(ctx, rebind(q), args...)
	if err != nil {
		return nil, err
	}
	return rows, nil
}

var _ sqlstore.QueryBatcher = (*conn)(nil)

// QueryEach implements sqlstore.QueryBatcher: a pending BEGIN, the
// deferred statements and stmts go out in one round trip.
func (c *conn) QueryEach(ctx context.Context, stmts []sqlstore.Statement, each func(i int, scan func(...any) error) error) error {
	b := c.batch()
	n := b.Len()
	for _, st := range stmts {
		b.Queue(rebind(st.Query), st.Args...)
	}
	br := c.tx.SendBatch(ctx, b)
	defer br.Close()
	for i := 0; i < n; i++ {
		if _, err := br.Exec(); err != nil {
			return err
		}
	}
	for i := range stmts {
		rows, err := br.Query()
		if err != nil {
			return err
		}
		if err := sqlstore.EachRow(rows, func(scan func(...any) error) error { return each(i, scan) }); err != nil {
			return err
		}
	}
	return br.Close()
}

// batchRows are the rows of a batch's last query; closing them closes the
// batch.
type batchRows struct {
	pgx.Rows
	br  pgx.BatchResults
	err error
}

func (r *batchRows) Close() {
	r.Rows.Close()
	if err := r.br.Close(); err != nil && r.err == nil {
		r.err = err
	}
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

// connTx lets River insert jobs through a connection on which the
// pipelined transaction is open. River's inserts only run statements; the
// transaction's ends are pipelined's.
type connTx struct{ c *pgx.Conn }

var errNested = errors.New("postgres store: no nested transaction in a pipelined one")

func (t connTx) Begin(context.Context) (pgx.Tx, error) { return nil, errNested }
func (t connTx) Commit(context.Context) error          { return errNested }
func (t connTx) Rollback(context.Context) error        { return errNested }
func (t connTx) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	return t.c.CopyFrom(ctx, table, cols, src)
}
func (t connTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return t.c.SendBatch(ctx, b)
}
func (t connTx) LargeObjects() pgx.LargeObjects { return pgx.LargeObjects{} }
func (t connTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	return t.c.Prepare(ctx, name, sql)
}
func (t connTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return t.c.Exec(ctx, sql, args...)
}
func (t connTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return t.c.Query(ctx, sql, args...)
}
func (t connTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return t.c.QueryRow(ctx, sql, args...)
}
func (t connTx) Conn() *pgx.Conn { return t.c }
