package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// Tx implements store.Tx over a backend's transaction.
type Tx struct {
	c       Conn
	d       Dialect
	enqueue Enqueuer
	// pre is what Prefetch read, nil before it is called.
	pre *prefetch
}

var _ store.Tx = (*Tx)(nil)

// NewTx wraps a backend transaction. enqueue may be nil for read-only
// transactions.
func NewTx(c Conn, d Dialect, enqueue Enqueuer) *Tx { return &Tx{c: c, d: d, enqueue: enqueue} }

func notFound(what, id string) error {
	return &identity.Error{Code: identity.NotFound, Message: fmt.Sprintf("%s %q not found", what, id), Err: store.ErrNotFound}
}

// write runs a statement whose result nobody reads. Where the connection
// can defer statements (Deferrer), it is queued and sent with the next
// statement that needs an answer, or at commit, saving a round trip.
func (t *Tx) write(ctx context.Context, q string, args ...any) error {
	if d, ok := t.c.(Deferrer); ok {
		d.ExecLater(q, args...)
		return nil
	}
	_, err := t.c.Exec(ctx, q, args...)
	return err
}

func (t *Tx) row(ctx context.Context, dest []any, q string, args ...any) error {
	return QueryRow(ctx, t.c, dest, q, args...)
}

// one runs a query for at most one row and scans it; no row is a NotFound
// error about the kind of thing named what.
func one[T any](ctx context.Context, c Conn, kind, what string, scan func(func(...any) error) (*T, error), q string, args ...any) (*T, error) {
	rows, err := c.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, err
		}
		return nil, notFound(kind, what)
	}
	return scan(rows.Scan)
}

// Enqueue implements store.Tx.
func (t *Tx) Enqueue(ctx context.Context, args store.JobArgs, runAt time.Time) error {
	if t.enqueue == nil {
		return errors.New("enqueue in a read-only transaction")
	}
	return t.enqueue(ctx, args, runAt)
}

// queryAll runs q and scans every row with scan.
func queryAll[T any](ctx context.Context, c Conn, scan func(func(...any) error) (T, error), q string, args ...any) ([]T, error) {
	rows, err := c.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// byValue adapts a scanner of *T, as one takes, to queryAll.
func byValue[T any](scan func(func(...any) error) (*T, error)) func(func(...any) error) (T, error) {
	return func(s func(...any) error) (T, error) {
		v, err := scan(s)
		if err != nil {
			var zero T
			return zero, err
		}
		return *v, nil
	}
}
