package engine

import (
	"os"
	"regexp"
	"slices"
	"testing"
	"time"
)

// TestJobsAreListed: every job kind the engine registers is in
// ARCHITECTURE.md's table of jobs and timers with its owner, and the table
// lists no kind that is not registered; the expiry sweep is periodic.
func TestJobsAreListed(t *testing.T) {
	f := newFixture(t, openSQLite(t))
	r := f.e.Jobs(30 * time.Second)
	doc, err := os.ReadFile("../../ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile("(?m)^\\| `(jml\\.[a-z_]+)` \\| (.*?) \\|").FindAllStringSubmatch(string(doc), -1)
	documented := map[string]string{}
	for _, m := range rows {
		documented[m[1]] = m[2]
	}
	var names []string
	for _, k := range r.Kinds() {
		names = append(names, k.Name)
		owner, ok := documented[k.Name]
		if !ok {
			t.Errorf("%s (registered by %s) is not in ARCHITECTURE.md's jobs table", k.Name, k.Owner)
		} else if !regexp.MustCompile(regexp.QuoteMeta(k.Owner)).MatchString(owner) {
			t.Errorf("%s: ARCHITECTURE.md says owner %s, the registry %s", k.Name, owner, k.Owner)
		}
		if (k.Name == ExpirySweepArgs{}.Kind()) != (k.Every == 30*time.Second) {
			t.Errorf("%s: every %s", k.Name, k.Every)
		}
	}
	for name := range documented {
		if !slices.Contains(names, name) {
			t.Errorf("ARCHITECTURE.md lists %s, which nothing registers", name)
		}
	}
	if len(r.Periodic()) != 1 {
		t.Errorf("periodic timers: %d, want the expiry sweep", len(r.Periodic()))
	}
}
