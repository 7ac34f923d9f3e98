package sqlstore

import (
	"slices"
	"testing"
)

func TestSplitStatementsDialectLines(t *testing.T) {
	src := "-- a comment; not a statement\nCREATE INDEX a ON t (x);\n--@postgres ALTER TABLE t ADD CONSTRAINT k UNIQUE (y, x);\n--@sqlite CREATE UNIQUE INDEX k ON t (y, x);\nDROP INDEX b;\n"
	for dialect, want := range map[string][]string{
		"postgres": {"CREATE INDEX a ON t (x)", "ALTER TABLE t ADD CONSTRAINT k UNIQUE (y, x)", "DROP INDEX b"},
		"sqlite":   {"CREATE INDEX a ON t (x)", "CREATE UNIQUE INDEX k ON t (y, x)", "DROP INDEX b"},
		"":         {"CREATE INDEX a ON t (x)", "DROP INDEX b"},
	} {
		if got := splitStatements(src, dialect); !slices.Equal(got, want) {
			t.Errorf("splitStatements(%q) = %q, want %q", dialect, got, want)
		}
	}
}
