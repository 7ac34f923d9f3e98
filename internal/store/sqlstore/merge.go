package sqlstore

import (
	"regexp"
	"strings"
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
// place, and so do upserts (ON CONFLICT ... DO UPDATE): one statement may
// not update the same row twice, and separate statements keep "last write
// wins". Only use it on statements whose relative order does not matter,
// such as deferred inserts of unrelated rows.
func MergeInserts(stmts []Statement, maxArgs int) []Statement {
	type group struct {
		head, suffix string
		tuples       []string
		args         []any
	}
	var order []any // *group or Statement, in first-appearance order
	groups := map[string]*group{}
	for _, st := range stmts {
		head, tuples, suffix, ok := splitInsert(st.Query)
		if !ok {
			order = append(order, st)
			continue
		}
		key := head + "\x00" + tuples[0] + "\x00" + suffix
		g := groups[key]
		if g == nil {
			g = &group{head: head, suffix: suffix}
			groups[key] = g
			order = append(order, g)
		}
		g.tuples = append(g.tuples, tuples...)
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

// splitInsert splits "INSERT ... VALUES (?, ?), (?, ?) ON CONFLICT ..." into
// the part up to VALUES, its row tuples and what follows. Tuples must hold
// only placeholders, and all alike.
func splitInsert(q string) (head string, tuples []string, suffix string, ok bool) {
	if !strings.HasPrefix(strings.TrimSpace(q), "INSERT INTO ") || strings.Contains(q, "DO UPDATE") {
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
