package hrfeed

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/jml-dev/jml/internal/identity"
)

// FormatOf returns the mapping's format, or the file's by its extension.
func (m *Mapping) FormatOf(path string) (string, error) {
	if m.Format != "" {
		return m.Format, nil
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return "csv", nil
	case ".json":
		return "json", nil
	}
	return "", identity.Errorf(identity.Invalid, "%s: cannot tell csv from json by its name; set format in the mapping", path)
}

// Read parses a whole file into records. Every row is checked: a missing
// column, an empty key, a bad date or a key seen twice is an error naming
// the line, and nothing is returned. progress, if not nil, is called with
// the bytes read so far.
func (m *Mapping) Read(r io.Reader, format string, progress func(int64)) ([]Record, error) {
	cr := &countingReader{r: r, progress: progress}
	var recs []Record
	var err error
	switch format {
	case "csv":
		recs, err = m.readCSV(cr)
	case "json":
		recs, err = m.readJSON(cr)
	default:
		return nil, identity.Errorf(identity.Invalid, "format %q is not csv or json", format)
	}
	if err != nil {
		return nil, identity.Errorf(identity.Invalid, "%v", err)
	}
	seen := make(map[string]int, len(recs))
	for i, rec := range recs {
		if err := identity.ValidName(m.Key, rec.Key); err != nil {
			return nil, identity.Errorf(identity.Invalid, "%s: %v", rec.where(), err)
		}
		if j, dup := seen[rec.Key]; dup {
			return nil, identity.Errorf(identity.Invalid, "%s: %s %q is also on %s", rec.where(), m.Key, rec.Key, recs[j].where())
		}
		seen[rec.Key] = i
	}
	return recs, nil
}

type countingReader struct {
	r        io.Reader
	n        int64
	progress func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.progress != nil && n > 0 {
		c.progress(c.n)
	}
	return n, err
}

func (m *Mapping) readCSV(r io.Reader) ([]Record, error) {
	cr := csv.NewReader(bufio.NewReaderSize(r, 1<<16))
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("the file is empty: no header row")
	}
	if err != nil {
		return nil, err
	}
	index := make(map[string]int, len(header))
	for i, h := range header {
		index[trim(strings.TrimPrefix(h, "\ufeff"))] = i
	}
	var missing []string
	for _, c := range m.columns() {
		if _, ok := index[c]; !ok {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("header: missing column(s) %s that the mapping reads", strings.Join(missing, ", "))
	}
	cols := m.columns()
	row := make(map[string]string, len(cols))
	var recs []Record
	for {
		fields, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return recs, nil
		}
		if err != nil {
			return nil, err
		}
		line, _ := cr.FieldPos(0)
		for _, c := range cols {
			row[c] = fields[index[c]]
		}
		rec, err := m.record(row, cols)
		var ce *cellError
		if errors.As(err, &ce) {
			l, column := cr.FieldPos(index[ce.col])
			return nil, fmt.Errorf("line %d, column %d (%s): %s", l, column, ce.col, ce.msg)
		}
		if err != nil {
			return nil, err
		}
		rec.pos = line
		recs = append(recs, rec)
	}
}

func (m *Mapping) readJSON(r io.Reader) ([]Record, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<16))
	dec.UseNumber()
	var rows []map[string]any
	if err := dec.Decode(&rows); err != nil {
		return nil, fmt.Errorf("not a JSON array of objects: %v", err)
	}
	cols := m.columns()
	row := make(map[string]string, len(cols))
	recs := make([]Record, 0, len(rows))
	for i, obj := range rows {
		if _, ok := obj[m.Key]; !ok {
			return nil, fmt.Errorf("record %d: no %s", i+1, m.Key)
		}
		for _, c := range cols {
			switch v := obj[c].(type) {
			case nil:
				row[c] = ""
			case string:
				row[c] = v
			case json.Number, bool:
				row[c] = fmt.Sprint(v)
			default:
				return nil, fmt.Errorf("record %d: %s: want a string, number or boolean, not %T", i+1, c, v)
			}
		}
		rec, err := m.record(row, cols)
		var ce *cellError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("record %d, field %s: %s", i+1, ce.col, ce.msg)
		}
		if err != nil {
			return nil, err
		}
		rec.pos, rec.inJSON = i+1, true
		recs = append(recs, rec)
	}
	return recs, nil
}
