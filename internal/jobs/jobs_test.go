package jobs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
)

type aArgs struct{}

func (aArgs) Kind() string { return "t.a" }

type bArgs struct{}

func (bArgs) Kind() string { return "t.b" }

func TestRegistry(t *testing.T) {
	r := New()
	nop := func(context.Context, *river.Job[bArgs]) error { return nil }
	AddFunc(r, "pkg/b", "does b", nop)
	AddFunc(r, "pkg/a", "does a", func(context.Context, *river.Job[aArgs]) error { return nil })
	r.Every(bArgs{}, time.Minute)
	kinds := r.Kinds()
	if len(kinds) != 2 || kinds[0].Name != "t.a" || kinds[1].Name != "t.b" || kinds[1].Every != time.Minute || kinds[0].Owner != "pkg/a" {
		t.Fatalf("Kinds = %+v", kinds)
	}
	if got, want := r.String(), "t.a (pkg/a), t.b (pkg/b, every 1m0s)"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	if len(r.Periodic()) != 1 {
		t.Fatalf("periodic = %d", len(r.Periodic()))
	}
	for name, f := range map[string]func(){
		"twice":          func() { AddFunc(r, "pkg/other", "again", nop) },
		"with no worker": func() { New().Every(aArgs{}, time.Second) },
	} {
		func() {
			defer func() {
				if p := recover(); p == nil || !strings.Contains(p.(string), "t.") {
					t.Errorf("%s: panic %v, want one naming the kind", name, p)
				}
			}()
			f()
		}()
	}
}
