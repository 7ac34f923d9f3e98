package bench

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"time"

	"github.com/jml-dev/jml/internal/hrfeed"
)

// hrDiffBench reads a 100,000-row HR file and compares it with the
// previous snapshot (5% moved, 1% left, 1% joined), against a plain CSV
// read of the same bytes in the same run. Medians of five.
func hrDiffBench(o Options) error {
	m, err := hrfeed.ParseMapping("bench.yaml", []byte("source: hr\nkey: id\ndisplayName: name\nmanager: manager\nstartDate: start\nattributes: {department: dept, title: title}\n"))
	if err != nil {
		return err
	}
	now := time.Now()
	prev, cur := hrfeed.Snapshot100k(m, now)
	var b bytes.Buffer
	b.WriteString("id,name,manager,start,dept,title\n")
	for _, r := range cur {
		fmt.Fprintf(&b, "%s,%s,%s,%s,%s,%s\n", r.Key, r.DisplayName, r.Manager, r.Start, r.Attributes["department"], r.Attributes["title"])
	}
	data := b.Bytes()
	var full, compare, raw []time.Duration
	var events int
	for run := 0; run < 5; run++ {
		start := time.Now()
		recs, err := m.Read(bytes.NewReader(data), "csv", nil)
		if err != nil {
			return err
		}
		mid := time.Now()
		d := m.Compare(prev, recs, now)
		end := time.Now()
		full, compare, events = append(full, end.Sub(start)), append(compare, end.Sub(mid)), len(d.Events)
		start = time.Now()
		cr := csv.NewReader(bytes.NewReader(data))
		cr.ReuseRecord = true
		for {
			if _, err := cr.Read(); err == io.EOF {
				break
			} else if err != nil {
				return err
			}
		}
		raw = append(raw, time.Since(start))
	}
	sortDurations(full)
	sortDurations(compare)
	sortDurations(raw)
	fmt.Fprintf(o.Out, "\nHR diff (%d rows, %.1f MB CSV, previous snapshot of 100000; %d events derived; median of 5)\n", len(cur), float64(len(data))/(1<<20), events)
	fmt.Fprintf(o.Out, "  jml read + compare: %s  (target <= 1 s)  of which compare %s\n", ms(full[2]), ms(compare[2]))
	fmt.Fprintf(o.Out, "  baseline csv read:  %s  (encoding/csv over the same bytes)\n", ms(raw[2]))
	fmt.Fprintf(o.Out, "  ratio %.2fx\n", float64(full[2])/float64(raw[2]))
	return nil
}
