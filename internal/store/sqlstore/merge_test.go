package sqlstore

import (
	"fmt"
	"testing"
)

func TestMergeInserts(t *testing.T) {
	in := []Statement{
		{"INSERT INTO a (x, y) VALUES (?, ?)", []any{1, 2}},
		{"INSERT INTO b (x) VALUES (?), (?) ON CONFLICT (x) DO NOTHING", []any{"p", "q"}},
		{"UPDATE c SET x = ? WHERE id = ?", []any{9, 8}},
		{"INSERT INTO a (x, y) VALUES (?, ?)", []any{3, 4}},
		{"INSERT INTO b (x) VALUES (?) ON CONFLICT (x) DO NOTHING", []any{"r"}},
		{"INSERT INTO a (x, y)\nVALUES (?, ?)\nON CONFLICT (x) DO UPDATE SET y = excluded.y", []any{5, 6}},
		{"INSERT INTO a (x, y) VALUES (?, ?)", []any{7, 8}},
		{"INSERT INTO a (x, y)\nVALUES (?, ?)\nON CONFLICT (x) DO UPDATE SET y = excluded.y", []any{6, 1}},
		{"INSERT INTO a (x, y)\nVALUES (?, ?)\nON CONFLICT (x) DO UPDATE SET y = excluded.y", []any{5, 7}},
		{"DELETE FROM a WHERE x = ?", []any{6}},
		{"INSERT INTO a (x, y)\nVALUES (?, ?)\nON CONFLICT (x) DO UPDATE SET y = excluded.y", []any{6, 2}},
	}
	got := MergeInserts(in, 4)
	// Groups keep the place of their first statement; a group over the
	// argument limit is split into consecutive chunks there.
	want := []Statement{
		{"INSERT INTO a (x, y) VALUES (?, ?), (?, ?)", []any{1, 2, 3, 4}},
		{"INSERT INTO a (x, y) VALUES (?, ?)", []any{7, 8}},
		{"INSERT INTO b (x) VALUES (?), (?), (?) ON CONFLICT (x) DO NOTHING", []any{"p", "q", "r"}},
		{"UPDATE c SET x = ? WHERE id = ?", []any{9, 8}},
		// Upserts merge keeping the last row per conflict key, and a
		// statement that passes through ends their group.
		{"INSERT INTO a (x, y)\nVALUES (?, ?), (?, ?)\nON CONFLICT (x) DO UPDATE SET y = excluded.y", []any{6, 1, 5, 7}},
		{"DELETE FROM a WHERE x = ?", []any{6}},
		{"INSERT INTO a (x, y)\nVALUES (?, ?)\nON CONFLICT (x) DO UPDATE SET y = excluded.y", []any{6, 2}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("MergeInserts =\n%v\nwant\n%v", got, want)
	}
}
