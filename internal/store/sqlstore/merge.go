package sqlstore

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Statement is one SQL statement with ? placeholders and its arguments.
type Statement struct {
	Query string
	Args  []any
}

var valuesKeyword = regexp.MustCompile(`\sVALUES\s+`)

// MergeInserts combines INSERT statements that differ only in their rows
// (same table, columns and ON CONFLICT clause) into multi-row statements of
// at most maxArgs arguments, keeping the order in which each kind of
// statement first appears. Statements of other shapes pass through in
// place. Only use it on statements whose relative order does not matter,
// such as deferred inserts of unrelated rows.
//
// Upserts (ON CONFLICT (cols) DO UPDATE) merge too, keeping "last write
// wins": of several rows with the same conflict key only the last is kept
// (one statement may not update a row twice), and a statement that passes
// through ends the group, so no upsert moves before a statement that
// preceded it.
func MergeInserts(stmts []Statement, maxArgs int) []Statement {
	type group struct {
		head, suffix string
		tuples       []string
		args         []any
		upsert       *insertShape
	}
	var order []any // *group or Statement, in first-appearance order
	groups := map[string]*group{}
	for _, st := range stmts {
		sh := parseInsert(st.Query)
		if sh == nil {
			order = append(order, st)
			for k, g := range groups {
				if g.upsert != nil {
					delete(groups, k)
				}
			}
			continue
		}
		key := sh.head + "\x00" + sh.tuples[0] + "\x00" + sh.suffix
		g := groups[key]
		if g == nil {
			g = &group{head: sh.head, suffix: sh.suffix}
			if sh.keyCols != nil {
				g.upsert = sh
			}
			groups[key] = g
			order = append(order, g)
		}
		g.tuples = append(g.tuples, sh.tuples...)
		g.args = append(g.args, st.Args...)
	}
	var out []Statement
	for _, o := range order {
		g, ok := o.(*group)
		if !ok {
			out = append(out, o.(Statement))
			continue
		}
		perTuple := strings.Count(g.tuples[0], "?")
		if g.upsert != nil {
			g.tuples, g.args = lastPerKey(g.tuples, g.args, perTuple, g.upsert.keyCols)
		}
		rows := len(g.tuples)
		if perTuple > 0 {
			rows = max(1, maxArgs/perTuple)
		}
		for start := 0; start < len(g.tuples); start += rows {
			end := min(start+rows, len(g.tuples))
			out = append(out, Statement{
				Query: g.head + strings.Join(g.tuples[start:end], ", ") + g.suffix,
				Args:  g.args[start*perTuple : end*perTuple],
			})
		}
	}
	return out
}

// lastPerKey drops every row whose conflict key (the arguments at keyCols)
// a later row repeats.
func lastPerKey(tuples []string, args []any, perTuple int, keyCols []int) ([]string, []any) {
	keyOf := func(i int) string {
		var b strings.Builder
		for _, c := range keyCols {
			switch v := args[i*perTuple+c].(type) {
			case string: // the usual key column, without fmt's cost
				b.WriteString("s:")
				b.WriteString(v)
			default:
				fmt.Fprintf(&b, "%T:%v", v, v)
			}
			b.WriteByte(0)
		}
		return b.String()
	}
	last := map[string]int{}
	for i := range tuples {
		last[keyOf(i)] = i
	}
	if len(last) == len(tuples) {
		return tuples, args
	}
	var outT []string
	var outA []any
	for i := range tuples {
		if last[keyOf(i)] == i {
			outT = append(outT, tuples[i])
			outA = append(outA, args[i*perTuple:(i+1)*perTuple]...)
		}
	}
	return outT, outA
}

// insertShape is a parsed mergeable INSERT.
type insertShape struct {
	head, suffix string
	tuples       []string
	// keyCols are, for an upsert, the positions in each row of the
	// ON CONFLICT columns; nil for a plain insert.
	keyCols []int
}

// shapes caches parseInsert by query text: the deferred statements come
// from a small set of constant queries.
var shapes sync.Map // string -> *insertShape (nil when not mergeable)

func parseInsert(q string) *insertShape {
	if v, ok := shapes.Load(q); ok {
		return v.(*insertShape)
	}
	var sh *insertShape
	if head, tuples, suffix, ok := splitInsert(q); ok {
		sh = &insertShape{head: head, tuples: tuples, suffix: suffix}
		if strings.Contains(suffix, "DO UPDATE") {
			sh.keyCols = conflictColumns(head, suffix)
			if sh.keyCols == nil || len(tuples) != 1 {
				sh = nil
			}
		}
	}
	shapes.Store(q, sh)
	return sh
}

var (
	insertColumns   = regexp.MustCompile(`^\s*INSERT INTO \w+\s*\(([^)]*)\)`)
	conflictTarget  = regexp.MustCompile(`ON CONFLICT\s*\(([^)]*)\)\s*DO UPDATE`)
	identifierSplit = regexp.MustCompile(`\s*,\s*`)
)

// conflictColumns finds where the ON CONFLICT columns sit in the insert's
// column list; nil when the statement is not of that plain shape.
func conflictColumns(head, suffix string) []int {
	cm, km := insertColumns.FindStringSubmatch(head), conflictTarget.FindStringSubmatch(suffix)
	if cm == nil || km == nil {
		return nil
	}
	cols := identifierSplit.Split(strings.TrimSpace(cm[1]), -1)
	var idx []int
	for _, k := range identifierSplit.Split(strings.TrimSpace(km[1]), -1) {
		i := slices.Index(cols, k)
		if i < 0 {
			return nil
		}
		idx = append(idx, i)
	}
	return idx
}

// splitInsert splits "INSERT ... VALUES (?, ?), (?, ?) ON CONFLICT ..." into
// the part up to VALUES, its row tuples and what follows. Tuples must hold
// only placeholders, and all alike.
func splitInsert(q string) (head string, tuples []string, suffix string, ok bool) {
	if !strings.HasPrefix(strings.TrimSpace(q), "INSERT INTO ") {
		return "", nil, "", false
	}
	loc := valuesKeyword.FindStringIndex(q)
	if loc == nil {
		return "", nil, "", false
	}
	head, rest := q[:loc[1]], q[loc[1]:]
	for strings.HasPrefix(rest, "(") {
		end := strings.IndexByte(rest, ')')
		if end < 0 {
			return "", nil, "", false
		}
		t := rest[:end+1]
		if strings.Trim(t, "(?, )") != "" || (len(tuples) > 0 && t != tuples[0]) {
			return "", nil, "", false
		}
		tuples = append(tuples, t)
		rest = rest[end+1:]
		if !strings.HasPrefix(rest, ", (") {
			break
		}
		rest = rest[2:]
	}
	if len(tuples) == 0 {
		return "", nil, "", false
	}
	return head, tuples, rest, true
}
