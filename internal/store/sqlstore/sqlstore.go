// Package sqlstore implements store.Tx once, in SQL that SQLite and
// PostgreSQL both accept, over a small connection interface each backend
// adapts its driver to (database/sql for SQLite, pgx for PostgreSQL). The
// backends own connections, transactions, retries and the job queue.
//
// Queries are written with ? placeholders and every value is a bound
// parameter; the PostgreSQL adapter rewrites ? to $n.
package sqlstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jml-dev/jml/internal/store"
)

// Conn is what a backend's transaction offers to the shared SQL.
type Conn interface {
	// Exec runs a statement and returns the number of rows it affected.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	Query(ctx context.Context, query string, args ...any) (Rows, error)
}

// Deferrer is a Conn that can hold statements whose results are not read
// and send them together with the next statement or before commit. Errors
// of deferred statements surface there, and fail the transaction.
type Deferrer interface {
	ExecLater(query string, args ...any)
}

// QueryBatcher is a Conn that can send several queries in one round trip
// (along with deferred statements, which go first).
type QueryBatcher interface {
	// QueryEach runs stmts and hands each row to each, with the index of
	// its statement, in order.
	QueryEach(ctx context.Context, stmts []Statement, each func(i int, scan func(...any) error) error) error
}

// InlineSealer is a Conn whose backend seals audit records in the
// transaction that writes them (a single writer, which sees every record
// committed before it: SQLite). AppendAudit calls AuditAppended; the
// backend then runs audit.Seal on AuditSealRows in the transaction before
// it commits.
type InlineSealer interface {
	AuditAppended()
}

// Rows is the part of a result set the shared SQL reads.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Dialect is what differs between the backends' SQL.
type Dialect struct {
	// Name is the backend's name ("sqlite", "postgres"); a migration line
	// "--@NAME statement text" is part of the migration only for it.
	Name string
	// Blob is the type of binary columns.
	Blob string
	// ForUpdate is appended to a SELECT that must lock its rows until the
	// transaction ends ("" where the whole database is locked anyway).
	ForUpdate string
	// Serial is the type of an auto-incrementing integer primary key.
	Serial string
	// Horizon is an SQL expression below which every audit record's xid
	// belongs to a transaction that has ended: audit.Seal seals only those,
	// so that no record can later appear before one it sealed. Empty with
	// OneWriter.
	Horizon string
	// OneWriter: the backend has a single writer (SQLite). Its audit
	// records keep xid 0, their id order is their commit order, and a
	// sealing transaction sees every record written before it.
	OneWriter bool
}

// Enqueuer inserts a durable job inside the current transaction.
type Enqueuer func(ctx context.Context, args store.JobArgs, runAt time.Time) error

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies every migration not yet applied, each in its own
// transaction run by begin. It is safe to call on every start.
func Migrate(ctx context.Context, d Dialect, run func(ctx context.Context, fn func(Conn) error) error) error {
	return MigrateUpTo(ctx, d, run, 0)
}

// MigrateUpTo is Migrate stopping after version last (every version when
// last is 0): tests of a migration use it to build the database the
// versions before it left.
func MigrateUpTo(ctx context.Context, d Dialect, run func(ctx context.Context, fn func(Conn) error) error, last int) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	if err := run(ctx, func(c Conn) error {
		_, err := c.Exec(ctx, "CREATE TABLE IF NOT EXISTS jml_schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)")
		return err
	}); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		version, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: name must start with its version", name)
		}
		if last > 0 && version > last {
			break
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		sqlText := strings.NewReplacer("{{blob}}", d.Blob, "{{serial}}", d.Serial).Replace(string(body))
		err = run(ctx, func(c Conn) error {
			var n int
			if err := QueryRow(ctx, c, []any{&n}, "SELECT COUNT(*) FROM jml_schema_migrations WHERE version = ?", version); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if step := dataSteps[version]; step != nil {
				if err := step(ctx, c); err != nil {
					return fmt.Errorf("%s (data step): %w", base, err)
				}
			}
			for _, stmt := range splitStatements(sqlText, d.Name) {
				if _, err := c.Exec(ctx, stmt); err != nil {
					return fmt.Errorf("%s: %w", base, err)
				}
			}
			_, err := c.Exec(ctx, "INSERT INTO jml_schema_migrations (version, applied_at) VALUES (?, ?)", version, time.Now().UnixMicro())
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	return nil
}

// splitStatements splits a migration on semicolons at line ends, dropping
// comment lines. A line "--@NAME text" is the line "text" for the dialect
// named NAME and a comment for the others. Migrations hold no semicolons
// inside strings.
func splitStatements(s, dialect string) []string {
	var out []string
	var cur strings.Builder
	only := "--@" + dialect + " "
	for _, line := range strings.Split(s, "\n") {
		if dialect != "" && strings.HasPrefix(line, only) {
			line = strings.TrimPrefix(line, only)
		}
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteString("\n")
		if strings.HasSuffix(t, ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if strings.TrimSpace(cur.String()) != "" {
		out = append(out, cur.String())
	}
	return out
}

// ErrNoRows is what QueryRow returns for a query without rows.
var ErrNoRows = errors.New("no rows")

// QueryRow scans the first row of a query into dest, or returns ErrNoRows.
func QueryRow(ctx context.Context, c Conn, dest []any, query string, args ...any) error {
	rows, err := c.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return ErrNoRows
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	return rows.Err()
}

// micros and fromMicros convert times for storage: microseconds since the
// epoch, 0 for the zero time.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// nullBytes passes an empty slice as SQL NULL, so unique indexes on binary
// columns ignore rows that have none.
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}
