package hrfeed

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/identity"
)

const mappingYAML = `
source: workday
key: employee_id
displayName: name
manager: manager_id
startDate: start
endDate: end
attributes: {department: dept, title: title}
status: {column: status, terminated: [terminated]}
`

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func mapping(t testing.TB) *Mapping {
	t.Helper()
	m, err := ParseMapping("m.yaml", []byte(mappingYAML))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func read(t testing.TB, m *Mapping, csv string) []Record {
	t.Helper()
	recs, err := m.Read(strings.NewReader(csv), "csv", nil)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

const header = "employee_id,name,manager_id,start,end,dept,title,status\n"

// summary renders events as "type key [at date] attrs" lines.
func summary(evs []identity.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "%s %s", e.Type, e.ExternalID)
		if e.EffectiveAt != nil {
			fmt.Fprintf(&b, " at %s", e.EffectiveAt.Format("2006-01-02"))
		}
		if e.Attributes != nil {
			fmt.Fprintf(&b, " %v", e.Attributes)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestCompare(t *testing.T) {
	m := mapping(t)
	day1 := read(t, m, header+
		"E1,Ada,,2020-01-01,,Engineering,Engineer,active\n"+
		"E2,Bob,E1,2026-07-01,,Sales,Rep,active\n"+ // starts next month
		"E3,Cy,E1,2019-01-01,2026-05-01,Sales,Rep,active\n") // already gone: never joins
	d := m.Compare(nil, day1, now)
	want := "joiner E1 map[department:Engineering title:Engineer]\n" +
		"joiner E2 at 2026-07-01 map[department:Sales title:Rep]\n"
	if got := summary(d.Events); got != want {
		t.Fatalf("first import:\n%s\nwant\n%s", got, want)
	}
	if !d.Next["E3"].Departed || d.Leavers != 0 || strings.Join(d.NeverJoined, ",") != "E3" {
		t.Fatalf("E3 = %+v, leavers %d", d.Next["E3"], d.Leavers)
	}
	// The same file again: nothing.
	if again := m.Compare(d.Next, day1, now); len(again.Events) != 0 {
		t.Fatalf("same file again:\n%s", summary(again.Events))
	}

	day2 := read(t, m, header+
		"E1,Ada,,2020-01-01,2026-09-30,Engineering,Staff Engineer,active\n"+ // promoted; leaves in September
		"E2,Bob,E1,2026-07-01,,,Rep,terminated\n"+ // terminated before starting
		"E3,Cy,E1,2019-01-01,,Sales,Rep,active\n"+ // rehired: end date cleared
		"E4,Di,E1,2026-01-01,,Support,Agent,active\n") // new
	d2 := m.Compare(d.Next, day2, now)
	want = "mover E1 map[department:Engineering title:Staff Engineer]\n" +
		"leaver E1 at 2026-10-01\n" + // access ends when September 30 does
		"leaver E2\n" +
		"joiner E3 map[department:Sales title:Rep]\n" +
		"joiner E4 map[department:Support title:Agent]\n"
	if got := summary(d2.Events); got != want {
		t.Fatalf("second import:\n%s\nwant\n%s", got, want)
	}
	if d2.Leavers != 1 || d2.PreviousActive != 2 {
		t.Fatalf("leavers %d of %d", d2.Leavers, d2.PreviousActive)
	}

	// Rows gone are leavers; a removed attribute is sent as null.
	day3 := read(t, m, header+"E1,Ada,,2020-01-01,2026-09-30,,Staff Engineer,active\n")
	d3 := m.Compare(d2.Next, day3, now)
	want = "mover E1 map[department:<nil> title:Staff Engineer]\n" +
		"leaver E3\n" +
		"leaver E4\n"
	if got := summary(d3.Events); got != want {
		t.Fatalf("third import:\n%s\nwant\n%s", got, want)
	}
	// Event IDs are stable and distinct.
	ids := map[string]bool{}
	for _, e := range append(append(d.Events, d2.Events...), d3.Events...) {
		if ids[e.ID] {
			t.Fatalf("event ID %s twice", e.ID)
		}
		ids[e.ID] = true
		e.Source = m.Source
		if err := e.Validate(); err != nil {
			t.Fatalf("event %s: %v", e.ID, err)
		}
	}
}

func TestGuard(t *testing.T) {
	m := mapping(t)
	var full, partial strings.Builder
	full.WriteString(header)
	partial.WriteString(header)
	for i := 0; i < 100; i++ {
		row := fmt.Sprintf("E%d,P%d,,2020-01-01,,Eng,Eng,active\n", i, i)
		full.WriteString(row)
		if i%5 >= 2 { // 40% missing
			partial.WriteString(row)
		}
	}
	prev := m.Compare(nil, read(t, m, full.String()), now).Next
	d := m.Compare(prev, read(t, m, partial.String()), now)
	held, why := d.Held(m.Guard)
	if !held || d.Leavers != 40 || !strings.Contains(why, "40 leavers, 40.0% of 100 people") {
		t.Fatalf("40%% missing: held %v (%s), %d leavers", held, why, d.Leavers)
	}
	// Three leavers of a hundred pass.
	var few strings.Builder
	few.WriteString(header)
	for i := 3; i < 100; i++ {
		fmt.Fprintf(&few, "E%d,P%d,,2020-01-01,,Eng,Eng,active\n", i, i)
	}
	if held, why := m.Compare(prev, read(t, m, few.String()), now).Held(m.Guard); held {
		t.Fatalf("3 leavers held: %s", why)
	}
}

func TestBadInput(t *testing.T) {
	m := mapping(t)
	for _, tc := range []struct{ csv, want string }{
		{"employee_id,name\nE1,Ada\n", "missing column(s) manager_id, start, end, status, dept, title"},
		{header + ",Ada,,,,Eng,Eng,active\n", "line 2, column 1 (employee_id): employee_id is empty"},
		{header + "E1,Ada,,01/02/2026,,Eng,Eng,active\n", `line 2, column 9 (start): "01/02/2026" is not a date in the form 2006-01-02`},
		{header + "E1,Ada,,,,Eng,Eng,active\nE1,Ada,,,,Eng,Eng,active\n", `line 3: employee_id "E1" is also on line 2`},
		{header + "E 1,Ada,,,,Eng,Eng,active\n", `line 2: employee_id:`},
		// Text every edge refuses is refused here, naming line and column.
		{header + "E1,Ad\x00a,,,,Eng,Eng,active\n", `line 2, column 4 (name): holds a NUL byte`},
		{header + "E1,Ada,,,,Eng,Caf\xe9,active\n", `line 2, column 15 (title): is not valid UTF-8`},
		// An ideographic space is not trimmed: the key is refused as the API refuses it.
		{header + "\u3000E1,Ada,,,,Eng,Eng,active\n", `line 2: employee_id: "\u3000E1" has characters outside`},
		{header + "E1,\"Ada\n", "extraneous or missing"},
		{"", "the file is empty"},
	} {
		_, err := m.Read(strings.NewReader(tc.csv), "csv", nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Read(%q) = %v, want %q", tc.csv, err, tc.want)
		}
	}
	// JSON rows: numbers are text; objects are not.
	recs, err := m.Read(strings.NewReader(`[{"employee_id": 42, "dept": "Eng"}]`), "json", nil)
	if err != nil || recs[0].Key != "42" || recs[0].Attributes["department"] != "Eng" {
		t.Fatalf("JSON = %+v, %v", recs, err)
	}
	if _, err := m.Read(strings.NewReader(`[{"employee_id": "E1", "dept": {"x": 1}}]`), "json", nil); err == nil || !strings.Contains(err.Error(), "record 1: dept: want a string") {
		t.Fatalf("JSON object value: %v", err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"source: hr\n", "key: the column"},
		{"source: hr\nkey: id\nkind: pipeline\n", "needs an owner"},
		{"source: hr\nkey: id\nbogus: 1\n", `unknown key "bogus" on line 3 (allowed: source, format, key,`},
		{"key: id\n", "source"},
		{"source: hr\nkey: id\nstatus: {column: s}\n", "terminated"},
	} {
		if _, err := ParseMapping("m.yaml", []byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseMapping(%q) = %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// FuzzReadCSV: any input is an error or records with valid, unique keys;
// never a panic.
func FuzzReadCSV(f *testing.F) {
	f.Add(header + "E1,Ada,,2020-01-01,,Eng,Eng,active\n")
	f.Add(header + "E1,\"A,da\",,,,Eng,Eng,terminated\n")
	f.Add("employee_id\n")
	m, err := ParseMapping("m.yaml", []byte(mappingYAML))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in string) {
		recs, err := m.Read(strings.NewReader(in), "csv", nil)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, r := range recs {
			if r.Key == "" || seen[r.Key] || identity.ValidName("k", r.Key) != nil {
				t.Fatalf("bad record %+v", r)
			}
			seen[r.Key] = true
		}
		m.Compare(nil, recs, now)
	})
}

// BenchmarkCompare100k: diffing 100,000 people with 5% changed.
func BenchmarkCompare100k(b *testing.B) {
	m := mapping(b)
	prev, cur := Snapshot100k(m, now)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.Compare(prev, cur, now)
	}
}

// TestEndDates: an end date is the last day with access, to its end in the
// source's time zone (or its start, with endsAt: startOfDay); a date-time
// is taken as given; an end date reached is a leaver now and one already
// reached by a new row is counted; a moved end date makes a new leaver
// and a removed one cancels the old.
func TestEndDates(t *testing.T) {
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	noon := at("2026-12-08T12:00:00Z")
	leaverAt := func(d *Diff, key string) string {
		for _, e := range d.Events {
			if e.Type == identity.Leaver && e.ExternalID == key {
				if e.EffectiveAt == nil {
					return "now"
				}
				return e.EffectiveAt.UTC().Format(time.RFC3339)
			}
		}
		return "none"
	}
	for _, tc := range []struct {
		name, extra, end string
		now              time.Time
		want             string
	}{
		{"today: to the end of the day", "", "2026-12-08", noon, "2026-12-09T00:00:00Z"},
		{"today, start of day: now", "endsAt: startOfDay\n", "2026-12-08", noon, "now"},
		{"yesterday: now", "", "2026-12-07", noon, "now"},
		{"in Berlin", "timeZone: Europe/Berlin\n", "2026-12-08", noon, "2026-12-08T23:00:00Z"},
		{"in Tokyo", "timeZone: Asia/Tokyo\n", "2026-12-08", noon, "2026-12-08T15:00:00Z"},
		{"in Tokyo, the day before: over", "timeZone: Asia/Tokyo\n", "2026-12-07", noon, "now"},
		{"a date-time two minutes ahead", "dateFormat: 2006-01-02T15:04:05Z07:00\n", "2026-12-08T12:02:00Z", noon, "2026-12-08T12:02:00Z"},
		{"a date-time in the source's zone", "dateFormat: 2006-01-02 15:04\ntimeZone: America/New_York\n", "2026-12-08 07:30", noon, "2026-12-08T12:30:00Z"},
		{"a date-time just past", "dateFormat: 2006-01-02T15:04:05Z07:00\n", "2026-12-08T11:59:00Z", noon, "now"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseMapping("m.yaml", []byte(mappingYAML+tc.extra))
			if err != nil {
				t.Fatal(err)
			}
			start := "2020-01-01"
			if m.dateTime {
				start = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Format(m.DateFormat)
			}
			joined := m.Compare(nil, read(t, m, header+"E1,Ada,,"+start+",,Engineering,Engineer,active\n"), tc.now.Add(-72*time.Hour))
			d := m.Compare(joined.Next, read(t, m, header+"E1,Ada,,"+start+","+tc.end+",Engineering,Engineer,active\n"), tc.now)
			if got := leaverAt(d, "E1"); got != tc.want {
				t.Fatalf("leaver at %s, want %s (events:\n%s)", got, tc.want, summary(d.Events))
			}
			if tc.want == "now" && d.Leavers != 1 {
				t.Fatalf("immediate leavers counted = %d, want 1", d.Leavers)
			}
			// A new row with the same end: joins until then, or never.
			fresh := m.Compare(nil, read(t, m, header+"E1,Ada,,"+start+","+tc.end+",Engineering,Engineer,active\n"), tc.now)
			if tc.want == "now" {
				if len(fresh.Events) != 0 || len(fresh.NeverJoined) != 1 {
					t.Fatalf("a new row already ended: events %s, never joined %v", summary(fresh.Events), fresh.NeverJoined)
				}
			} else if got := leaverAt(fresh, "E1"); got != tc.want {
				t.Fatalf("a new row's leaver at %s, want %s", got, tc.want)
			}
		})
	}

	m := mapping(t)
	d1 := m.Compare(nil, read(t, m, header+"E1,Ada,,2020-01-01,2026-12-08,Engineering,Engineer,active\n"), noon.Add(-72*time.Hour))
	d2 := m.Compare(d1.Next, read(t, m, header+"E1,Ada,,2020-01-01,2026-12-10,Engineering,Engineer,active\n"), noon.Add(-48*time.Hour))
	if got := leaverAt(d2, "E1"); got != "2026-12-11T00:00:00Z" || len(d2.Cancel) != 0 {
		t.Fatalf("extended contract: leaver at %s, cancel %v", got, d2.Cancel)
	}
	d3 := m.Compare(d2.Next, read(t, m, header+"E1,Ada,,2020-01-01,,Engineering,Engineer,active\n"), noon.Add(-24*time.Hour))
	if len(d3.Events) != 0 || strings.Join(d3.Cancel, ",") != "E1:leaver:end-2026-12-10:2" {
		t.Fatalf("end date removed: events %s, cancel %v; want the 12-10 leaver cancelled", summary(d3.Events), d3.Cancel)
	}
}

func TestMappingTimeSettings(t *testing.T) {
	for extra, want := range map[string]string{
		"timeZone: Mars/Olympus\n": `timeZone: "Mars/Olympus" is not an IANA time zone name`,
		"timeZone: Local\n":        `timeZone: "Local" is not an IANA time zone name`,
		"endsAt: midnight\n":       `endsAt: "midnight" is not endOfDay or startOfDay`,
	} {
		if _, err := ParseMapping("m.yaml", []byte(mappingYAML+extra)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", extra, err, want)
		}
	}
}

// TestAttributesChecked: with a policy's check set, a row whose attribute
// the policy does not admit is refused at its cell, in CSV (line and
// column) and JSON (record and field), before any event is derived; the
// policy's check (here a stand-in with its error's shape) names the
// attribute, the type and the value.
func TestAttributesChecked(t *testing.T) {
	m := mapping(t)
	m.CheckAttributes = func(attrs map[string]any) error {
		if d, ok := attrs["department"]; ok && d != "Eng" && d != "Sales" {
			return identity.FieldError("attributes.department", "the policy declares it string, one of Eng, Sales; %q is not one of them", d)
		}
		return nil
	}
	_, err := m.Read(strings.NewReader(header+"E1,Ada,,,,Eng,Eng,active\nE2,Bo,,,,Marketing,Eng,active\n"), "csv", nil)
	if want := `line 3, column 10 (dept): attributes.department: the policy declares it string, one of Eng, Sales; "Marketing" is not one of them`; err == nil || err.Error() != want {
		t.Fatalf("Read = %v, want %s", err, want)
	}
	_, err = m.Read(strings.NewReader(`[{"employee_id": "E1", "dept": "Eng"}, {"employee_id": "E2", "dept": "HR"}]`), "json", nil)
	if want := `record 2, field dept: attributes.department: the policy declares it string, one of Eng, Sales; "HR" is not one of them`; err == nil || err.Error() != want {
		t.Fatalf("Read JSON = %v, want %s", err, want)
	}
	// An empty cell sets nothing, so nothing is checked.
	if _, err := m.Read(strings.NewReader(header+"E1,Ada,,,,,Eng,active\n"), "csv", nil); err != nil {
		t.Fatal(err)
	}
}

// TestChangesBack: a change that returns to an earlier state derives a new
// event, never a duplicate of the first one (which the engine would take
// as seen): an end date restored or cut back, a department changed back,
// a start date moved for a hire not started yet.
func TestChangesBack(t *testing.T) {
	m := mapping(t)
	now := time.Date(2026, 12, 8, 12, 0, 0, 0, time.UTC)
	row := func(start, end, dept string) []Record {
		return read(t, m, header+"E1,Ada,,"+start+","+end+","+dept+",Engineer,active\n")
	}
	var prev map[string]Record
	ids := map[string]bool{}
	step := func(rows []Record, want string) *Diff {
		t.Helper()
		d := m.Compare(prev, rows, now)
		if got := summary(d.Events); got != want {
			t.Fatalf("events:\n%s\nwant\n%s", got, want)
		}
		for _, e := range d.Events {
			if ids[e.ID] {
				t.Fatalf("event ID %s derived again", e.ID)
			}
			ids[e.ID] = true
		}
		prev = d.Next
		return d
	}
	step(row("2020-01-01", "2026-12-11", "Sales"), "joiner E1 map[department:Sales title:Engineer]\nleaver E1 at 2026-12-12\n")
	if d := step(row("2020-01-01", "", "Sales"), ""); len(d.Cancel) != 1 {
		t.Fatalf("end date removed: cancel %v", d.Cancel)
	}
	step(row("2020-01-01", "2026-12-11", "Sales"), "leaver E1 at 2026-12-12\n") // restored
	step(row("2020-01-01", "2026-12-15", "Sales"), "leaver E1 at 2026-12-16\n") // extended
	step(row("2020-01-01", "2026-12-11", "Sales"), "leaver E1 at 2026-12-12\n") // cut back
	step(row("2020-01-01", "2026-12-11", "Ops"), "mover E1 map[department:Ops title:Engineer]\n")
	step(row("2020-01-01", "2026-12-11", "Sales"), "mover E1 map[department:Sales title:Engineer]\n") // back
	// The same file again: nothing.
	step(row("2020-01-01", "2026-12-11", "Sales"), "")

	// A hire not started yet: a new start date is a new joiner, later or
	// earlier; once started, a start date changed is not.
	prev = nil
	step(read(t, m, header+"E2,Bo,,2026-12-10,,Sales,Rep,active\n"), "joiner E2 at 2026-12-10 map[department:Sales title:Rep]\n")
	step(read(t, m, header+"E2,Bo,,2026-12-12,,Sales,Rep,active\n"), "joiner E2 at 2026-12-12 map[department:Sales title:Rep]\n")
	step(read(t, m, header+"E2,Bo,,2026-12-09,,Sales,Rep,active\n"), "joiner E2 at 2026-12-09 map[department:Sales title:Rep]\n")
	step(read(t, m, header+"E2,Bo,,2026-12-01,,Sales,Rep,active\n"), "joiner E2 map[department:Sales title:Rep]\n") // brought forward to the past: now
	step(read(t, m, header+"E2,Bo,,2026-11-01,,Sales,Rep,active\n"), "")

	// A second termination after a rehire is a leaver again.
	prev = nil
	step(read(t, m, header+"E3,Cy,,2020-01-01,,Sales,Rep,active\n"), "joiner E3 map[department:Sales title:Rep]\n")
	step(read(t, m, header+"E3,Cy,,2020-01-01,,Sales,Rep,terminated\n"), "leaver E3\n")
	step(read(t, m, header+"E3,Cy,,2020-01-01,,Sales,Rep,active\n"), "joiner E3 map[department:Sales title:Rep]\n")
	step(read(t, m, header+"E3,Cy,,2020-01-01,,Sales,Rep,terminated\n"), "leaver E3\n")
}
