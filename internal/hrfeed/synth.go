package hrfeed

import (
	"fmt"
	"time"
)

// Snapshot100k makes a previous snapshot of 100,000 people and a current
// file's records in which 5% moved department, 1% left and 1% joined: the
// shape of a nightly HR feed, for benchmarks.
func Snapshot100k(m *Mapping, now time.Time) (map[string]Record, []Record) {
	const n = 100000
	prev := make(map[string]Record, n)
	cur := make([]Record, 0, n+n/100)
	for i := 0; i < n; i++ {
		r := Record{Key: fmt.Sprintf("E%06d", i), DisplayName: fmt.Sprintf("Person %d", i), Manager: fmt.Sprintf("E%06d", i/10),
			Attributes: map[string]string{"department": fmt.Sprintf("dept-%d", i%50), "title": "Engineer"}, Start: "2020-01-01"}
		prev[r.Key] = r
		switch {
		case i%100 == 0: // left: not in the file
			continue
		case i%20 == 1:
			r.Attributes = map[string]string{"department": fmt.Sprintf("dept-%d", (i+1)%50), "title": "Engineer"}
		}
		cur = append(cur, r)
	}
	for i := 0; i < n/100; i++ {
		cur = append(cur, Record{Key: fmt.Sprintf("N%06d", i), DisplayName: "New", Attributes: map[string]string{"department": "dept-1"}, Start: now.Format("2006-01-02")})
	}
	return prev, cur
}
