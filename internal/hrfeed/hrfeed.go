// Package hrfeed turns HR snapshots (CSV or JSON files, one row per
// person) into lifecycle events by comparing each snapshot with the
// previous one of the same source: new rows are joiners (future-dated to
// their start date), changed mapped columns are movers, rows that are gone,
// terminated or past their end date are leavers (future-dated to an end
// date still to come), and a departed person who reappears is a rehire.
// It is pure: no I/O beyond the reader it is given, time passed in.
//
// Event IDs derive from the row's content, so importing the same file
// twice submits nothing new: the engine deduplicates on (source, event ID).
package hrfeed

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jml-dev/jml/internal/guard"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/yamlin"
)

// Mapping says how a source's file maps to identities. It is YAML kept
// in git next to the policy.
type Mapping struct {
	Source string `yaml:"source"` // the events' source
	Format string `yaml:"format"` // csv or json; default: the file's extension
	Key    string `yaml:"key"`    // the column holding the person's ID there
	Kind   string `yaml:"kind"`   // identity kind, default human
	// DisplayName, Manager, StartDate and EndDate name columns (optional).
	DisplayName string `yaml:"displayName"`
	Manager     string `yaml:"manager"`
	StartDate   string `yaml:"startDate"`
	EndDate     string `yaml:"endDate"`
	// Attributes maps identity attribute names to columns.
	Attributes map[string]string `yaml:"attributes"`
	Status     struct {
		Column     string   `yaml:"column"`
		Terminated []string `yaml:"terminated"` // values meaning the person left
	} `yaml:"status"`
	DateFormat string `yaml:"dateFormat"` // Go layout, default 2006-01-02
	// TimeZone is the IANA zone the source's dates are in (default UTC):
	// a start date begins, and an end date ends, at midnight there. A
	// date-time with an offset is taken as given, to the nanosecond.
	TimeZone string `yaml:"timeZone"`
	// EndDate is the last day with access (endsAt: endOfDay, the default:
	// access ends at midnight after it) or the first day without it
	// (startOfDay). A date-time is the instant access ends.
	EndsAt string `yaml:"endsAt"`
	Guard  Guard  `yaml:"guard"`
	// CheckAttributes, when set, checks each row's attributes as the
	// policy declares them (policy.CheckAttributes); a value it refuses is
	// an error placed at its cell (line and column), before any event is
	// derived. Cells are text, so an attribute fed from a file is
	// declared string.
	CheckAttributes func(map[string]any) error `yaml:"-"`
	// loc is TimeZone loaded; dateTime says DateFormat has a time of day.
	loc      *time.Location
	dateTime bool
}

// The values of Mapping.EndsAt.
const (
	EndOfDay   = "endOfDay"
	StartOfDay = "startOfDay"
)

// Guard are the mass-change thresholds of a source: an import whose
// immediate leavers exceed them is held for an administrator instead of
// applied.
type Guard = guard.Limits

// LoadMapping reads and validates a mapping file.
func LoadMapping(path string) (*Mapping, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, identity.Errorf(identity.Invalid, "read mapping: %v", err)
	}
	return ParseMapping(path, data)
}

// ParseMapping decodes a mapping strictly; errors name the file and the
// field.
func ParseMapping(name string, data []byte) (*Mapping, error) {
	var m Mapping
	if err := yamlin.Decode(data, &m); err != nil {
		return nil, identity.Errorf(identity.Invalid, "%s: %v", name, err)
	}
	errf := func(format string, args ...any) error {
		return identity.Errorf(identity.Invalid, "%s: %s", name, fmt.Sprintf(format, args...))
	}
	if err := identity.ValidName("source", m.Source); err != nil {
		return nil, errf("%v", err)
	}
	if m.Key == "" {
		return nil, errf("key: the column holding each person's ID is required")
	}
	if m.Kind == "" {
		m.Kind = string(identity.Human)
	}
	if !identity.Kind(m.Kind).Valid() {
		return nil, errf("kind: %q is not an identity kind", m.Kind)
	}
	if identity.Kind(m.Kind).NonHuman() {
		return nil, errf("kind: %s needs an owner, which HR files do not carry; import people", m.Kind)
	}
	switch m.Format {
	case "", "csv", "json":
	default:
		return nil, errf("format: %q is not csv or json", m.Format)
	}
	if m.DateFormat == "" {
		m.DateFormat = "2006-01-02"
	}
	// A layout with a time of day formats two times of one day apart.
	m.dateTime = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC).Format(m.DateFormat) != time.Date(2001, 2, 3, 0, 0, 0, 0, time.UTC).Format(m.DateFormat)
	var err error
	if m.loc, err = time.LoadLocation(cmp.Or(m.TimeZone, "UTC")); err != nil || m.TimeZone == "Local" {
		return nil, errf("timeZone: %q is not an IANA time zone name (such as Europe/Berlin or UTC)", m.TimeZone)
	}
	switch m.EndsAt {
	case "":
		m.EndsAt = EndOfDay
	case EndOfDay, StartOfDay:
	default:
		return nil, errf("endsAt: %q is not %s or %s", m.EndsAt, EndOfDay, StartOfDay)
	}
	if m.Status.Column != "" && len(m.Status.Terminated) == 0 {
		return nil, errf("status: terminated: the values that mean the person left are required")
	}
	if m.Guard, err = m.Guard.WithDefaults(); err != nil {
		return nil, errf("guard: %v", err)
	}
	return &m, nil
}

// columns returns every column the mapping reads, key first.
func (m *Mapping) columns() []string {
	cols := []string{m.Key}
	for _, c := range []string{m.DisplayName, m.Manager, m.StartDate, m.EndDate, m.Status.Column} {
		if c != "" {
			cols = append(cols, c)
		}
	}
	for _, a := range slices.Sorted(maps.Keys(m.Attributes)) {
		cols = append(cols, m.Attributes[a])
	}
	return slices.Compact(cols)
}

// Record is one person as of one snapshot, in the mapping's terms.
type Record struct {
	Key         string            `json:"key"`
	DisplayName string            `json:"displayName,omitempty"`
	Manager     string            `json:"manager,omitempty"`
	Attributes  map[string]string `json:"attributes,omitempty"`
	// Start and End are dates (YYYY-MM-DD) or, from a mapping whose
	// dateFormat has a time of day, instants (RFC 3339, UTC).
	Start      string `json:"start,omitempty"`
	End        string `json:"end,omitempty"`
	Terminated bool   `json:"terminated,omitempty"`
	// Departed is set in a stored snapshot for people jml has sent (or
	// scheduled) a leaver for.
	Departed bool `json:"departed,omitempty"`
	// Seq counts the events derived for the key (eventIDs), and EndEvent
	// is the ID of the leaver derived for End; both are kept in stored
	// snapshots only.
	Seq      int    `json:"seq,omitempty"`
	EndEvent string `json:"endEvent,omitempty"`
	// pos is the record's place in its file (a CSV line, or a JSON
	// record's number when inJSON), for errors about it; not stored.
	pos    int
	inJSON bool
}

// where names the record's place in its file: "line 7" or "record 7".
func (r Record) where() string {
	if r.inJSON {
		return fmt.Sprintf("record %d", r.pos)
	}
	return fmt.Sprintf("line %d", r.pos)
}

// cellError is a problem with one cell; the reader says where it is.
type cellError struct {
	col, msg string
}

func (e *cellError) Error() string { return e.col + ": " + e.msg }

// trim drops the spaces and tabs around a cell, and nothing else: what
// the API would refuse in a field (an ideographic space, a NUL) stays, to
// be refused here too.
func trim(s string) string { return strings.Trim(s, " \t") }

// record builds a Record from one row (column -> value) of the columns
// cols the mapping reads; a problem with a cell is a *cellError, which the
// reader places ("line 7, column 12 (email)"). Every cell must be text
// every edge of jml accepts (identity.CheckText).
func (m *Mapping) record(row map[string]string, cols []string) (Record, error) {
	for _, c := range cols {
		if err := identity.CheckText("", row[c]); err != nil {
			return Record{}, &cellError{c, identity.ErrorMessage(err)}
		}
	}
	r := Record{Key: trim(row[m.Key]), DisplayName: trim(row[m.DisplayName]), Manager: trim(row[m.Manager])}
	if r.Key == "" {
		return r, &cellError{m.Key, m.Key + " is empty"}
	}
	if len(m.Attributes) > 0 {
		r.Attributes = make(map[string]string, len(m.Attributes))
		for attr, col := range m.Attributes {
			if v := trim(row[col]); v != "" {
				r.Attributes[attr] = v
			}
		}
		if err := m.checkAttributes(r.Attributes); err != nil {
			return r, err
		}
	}
	for _, d := range []struct {
		col string
		dst *string
	}{{m.StartDate, &r.Start}, {m.EndDate, &r.End}} {
		v := trim(row[d.col])
		if d.col == "" || v == "" {
			continue
		}
		t, err := time.ParseInLocation(m.DateFormat, v, m.location())
		if err != nil {
			return r, &cellError{d.col, fmt.Sprintf("%q is not a date in the form %s", v, m.DateFormat)}
		}
		if m.dateTime {
			*d.dst = t.UTC().Format(time.RFC3339Nano)
		} else {
			*d.dst = t.Format("2006-01-02")
		}
	}
	if m.Status.Column != "" {
		r.Terminated = slices.ContainsFunc(m.Status.Terminated, func(s string) bool { return strings.EqualFold(s, trim(row[m.Status.Column])) })
	}
	return r, nil
}

// location is the zone of the source's dates.
func (m *Mapping) location() *time.Location {
	if m.loc == nil {
		return time.UTC
	}
	return m.loc
}

// instant is when a Start or End value takes effect: a date's midnight in
// the source's zone (for an end date under endOfDay, the midnight after
// it), an instant as it is. A value that is neither (a snapshot written
// by hand) takes effect at once.
func (m *Mapping) instant(v string, end bool) time.Time {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t
	}
	d, err := time.ParseInLocation("2006-01-02", v, m.location())
	if err != nil {
		return time.Time{}
	}
	if end && m.EndsAt != StartOfDay {
		d = d.AddDate(0, 0, 1)
	}
	return d
}

// checkAttributes runs CheckAttributes on a row's attributes; a refusal
// of one attribute is a *cellError at the column it comes from.
func (m *Mapping) checkAttributes(attrs map[string]string) error {
	if m.CheckAttributes == nil || len(attrs) == 0 {
		return nil
	}
	in := make(map[string]any, len(attrs))
	for k, v := range attrs {
		in[k] = v
	}
	err := m.CheckAttributes(in)
	var ie *identity.Error
	if errors.As(err, &ie) {
		if attr, ok := strings.CutPrefix(ie.Field, "attributes."); ok && m.Attributes[attr] != "" {
			return &cellError{m.Attributes[attr], identity.ErrorMessage(err)}
		}
	}
	return err
}

// hash is a short content hash of the fields an event carries.
func (r Record) hash() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00", r.Key, r.DisplayName, r.Manager, r.Start, r.End)
	for _, k := range slices.Sorted(maps.Keys(r.Attributes)) {
		fmt.Fprintf(h, "%s=%s\x00", k, r.Attributes[k])
	}
	return hex.EncodeToString(h.Sum(nil)[:6])
}

func (r Record) sameAccess(o Record) bool {
	return r.DisplayName == o.DisplayName && r.Manager == o.Manager && maps.Equal(r.Attributes, o.Attributes)
}

// Diff is what a snapshot changes.
type Diff struct {
	Events []identity.Event
	// Cancel are the source event IDs of scheduled leavers the snapshot
	// no longer gives (an end date removed): the import cancels them.
	Cancel []string
	// NeverJoined are the keys of new rows that had ended (terminated, or
	// past their end) before jml saw them: no event, but not unseen.
	NeverJoined []string
	// Next is the snapshot to store once the events are accepted.
	Next map[string]Record
	// PreviousActive is how many people the previous snapshot held who
	// had not departed: the base of the guard's percentage.
	PreviousActive int
	// Leavers counts the leavers effective now (not future-dated).
	Leavers int
}

// Compare derives the events that take prev to rows, as of now.
func (m *Mapping) Compare(prev map[string]Record, rows []Record, now time.Time) *Diff {
	d := &Diff{Next: make(map[string]Record, len(rows))}
	for _, p := range prev {
		if !p.Departed {
			d.PreviousActive++
		}
	}
	// future is when v (a Start, or an End when end) takes effect, nil
	// when that is now or past.
	future := func(v string, end bool) *time.Time {
		if v == "" {
			return nil
		}
		if t := m.instant(v, end); t.After(now) {
			return &t
		}
		return nil
	}
	add := func(ev identity.Event) {
		ev.Source = m.Source
		if ev.EffectiveAt == nil {
			d.Leavers += boolInt(ev.Type == identity.Leaver)
		}
		d.Events = append(d.Events, ev)
	}
	seen := make(map[string]bool, len(rows))
	for _, r := range rows {
		seen[r.Key] = true
		p, existed := prev[r.Key]
		ids := eventIDs{key: r.Key, seq: p.Seq}
		ended := r.Terminated || (r.End != "" && future(r.End, true) == nil)
		next := r
		next.EndEvent = p.EndEvent
		// endLeaver is the leaver of r's end date, future-dated until it
		// comes; the snapshot remembers its ID, to cancel it.
		endLeaver := func() {
			ev := identity.Event{ID: ids.next("leaver", "end-"+r.End), Type: identity.Leaver, ExternalID: r.Key, EffectiveAt: future(r.End, true)}
			next.EndEvent = ev.ID
			add(ev)
		}
		joiner := func() {
			add(identity.Event{ID: ids.next("joiner", r.hash()), Type: identity.Joiner, ExternalID: r.Key, Kind: identity.Kind(m.Kind),
				DisplayName: r.DisplayName, Manager: r.Manager, Attributes: attributes(r.Attributes, nil), EffectiveAt: future(r.Start, false)})
		}
		switch {
		case !existed || p.Departed:
			if ended {
				next.Departed = true // never joined, or still gone
				if !existed {
					d.NeverJoined = append(d.NeverJoined, r.Key)
				}
				break
			}
			next.EndEvent = ""
			joiner()
			if r.End != "" {
				endLeaver()
			}
		case ended:
			switch {
			case r.Terminated:
				add(identity.Event{ID: ids.next("leaver", "terminated"), Type: identity.Leaver, ExternalID: r.Key})
			case r.End == p.End && p.scheduledEnd() != "":
				// The end date jml scheduled has come: its own leaver,
				// which the engine knows already.
				add(identity.Event{ID: p.scheduledEnd(), Type: identity.Leaver, ExternalID: r.Key})
			default:
				endLeaver()
			}
			next.Departed = true
		default:
			// A hire not started yet whose start date moved: a joiner for
			// the new date, which supersedes the one scheduled.
			if r.Start != p.Start && p.Start != "" && future(p.Start, false) != nil {
				joiner()
			} else if !r.sameAccess(p) {
				add(identity.Event{ID: ids.next("mover", r.hash()), Type: identity.Mover, ExternalID: r.Key,
					DisplayName: r.DisplayName, Manager: r.Manager, Attributes: attributes(r.Attributes, p.Attributes)})
			}
			switch {
			case r.End != "" && r.End != p.End:
				// A new end date: its leaver supersedes the old one's.
				endLeaver()
			case r.End == "" && p.End != "":
				if id := p.scheduledEnd(); id != "" {
					d.Cancel = append(d.Cancel, id)
				}
				next.EndEvent = ""
			}
		}
		next.Seq = ids.seq
		d.Next[r.Key] = next
	}
	for _, key := range slices.Sorted(maps.Keys(prev)) {
		p := prev[key]
		if seen[key] {
			continue
		}
		if !p.Departed {
			ids := eventIDs{key: key, seq: p.Seq}
			add(identity.Event{ID: ids.next("leaver", "gone-"+p.hash()), Type: identity.Leaver, ExternalID: key})
			p.Departed, p.Seq, p.EndEvent = true, ids.seq, ""
		}
		d.Next[key] = p
	}
	return d
}

// eventIDs names the events one person's rows derive: KEY:TYPE:WHAT:SEQ,
// where SEQ counts the events derived for the key before (kept in the
// snapshot). The same file imported twice derives nothing, and a
// re-run of an import whose snapshot was not stored derives the same IDs,
// which the engine deduplicates; but a change that returns to an earlier
// state (an end date restored, a department changed back, a rehire, a
// second termination) is a new event, not a duplicate of the first.
type eventIDs struct {
	key string
	seq int
}

func (n *eventIDs) next(typ, what string) string {
	id := fmt.Sprintf("%s:%s:%s:%d", n.key, typ, what, n.seq)
	n.seq++
	return id
}

// scheduledEnd is the ID of the leaver derived for r's end date: as the
// snapshot remembers it, or as snapshots written before it did named it;
// "" when r has no end date.
func (r Record) scheduledEnd() string {
	switch {
	case r.EndEvent != "":
		return r.EndEvent
	case r.End != "":
		return r.Key + ":leaver:end-" + r.End
	}
	return ""
}

// attributes is the merge patch from old to cur: every current value,
// and null for a value that is gone.
func attributes(cur, old map[string]string) map[string]any {
	if len(cur) == 0 && len(old) == 0 {
		return nil
	}
	out := make(map[string]any, len(cur))
	for k, v := range cur {
		out[k] = v
	}
	for k := range old {
		if _, ok := cur[k]; !ok {
			out[k] = nil
		}
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Held reports whether the guard holds the diff, and why.
func (d *Diff) Held(g Guard) (bool, string) { return g.Exceeded(d.Leavers, d.PreviousActive) }
