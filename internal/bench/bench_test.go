package bench

import (
	"fmt"
	"testing"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
)

// BenchmarkPolicy50 evaluates 50 birthright rules for one identity: jml's
// memoised path, its full evaluation, a plain loop over the compiled CEL
// programs, and the same rules as native Go closures (the baseline).
//
//	go test -bench Policy50 ./internal/bench
func BenchmarkPolicy50(b *testing.B) {
	p, err := policy.Parse("rules50.yaml", []byte(rules50()))
	if err != nil {
		b.Fatal(err)
	}
	id := benchIdentity()
	native := nativeRules()
	b.Run("Desired", func(b *testing.B) {
		for b.Loop() {
			p.Desired(id)
		}
	})
	b.Run("Explain", func(b *testing.B) {
		for b.Loop() {
			p.Explain(id)
		}
	})
	b.Run("PlainCELLoop", func(b *testing.B) {
		for b.Loop() {
			plainLoop(p, id)
		}
	})
	b.Run("NativeClosures", func(b *testing.B) {
		for b.Loop() {
			evalNative(native, id)
		}
	})
}

// TestNativeRulesAgree keeps the baseline honest: the closures must decide
// exactly as the CEL rules do, or the comparison means nothing.
func TestNativeRulesAgree(t *testing.T) {
	p, err := policy.Parse("rules50.yaml", []byte(rules50()))
	if err != nil {
		t.Fatal(err)
	}
	native := nativeRules()
	ids := []*identity.Identity{
		benchIdentity(),
		{Kind: identity.Pipeline, State: identity.Active, Attributes: map[string]any{"env": "prod", "team": "team-1", "department": "x", "location": "us", "level": 0, "tools": []any{}}},
		{Kind: identity.AIAgent, State: identity.Active, Attributes: map[string]any{"tools": []any{"tool-2", "tool-12"}, "department": "dept-3", "team": "t", "env": "dev", "location": "eu-1", "level": 9}},
	}
	for _, id := range ids {
		act := policy.Activation(id)
		for i, b := range p.Birthrights {
			if got, want := native[i](id), b.Matches(act); got != want {
				t.Errorf("rule %d (%s) for %s: native %v, CEL %v", i, b.Name, id.Kind, got, want)
			}
		}
	}
}

func TestRiverLevels(t *testing.T) {
	for _, c := range []struct {
		levels []int
		tuned  int
		want   string
	}{
		{[]int{16, 100}, 100, "[100 16]"}, // tuned first, then jml's other concurrency
		{[]int{100}, 100, "[100]"},        // no second baseline when jml matches River
		{[]int{16}, 100, "[100 16]"},      // the jobs part: jml runs at 16 only
		{[]int{8, 8}, 4, "[4 8]"},         // each count once
	} {
		if got := fmt.Sprint(riverLevels(c.levels, c.tuned)); got != c.want {
			t.Errorf("riverLevels(%v, %d) = %s, want %s", c.levels, c.tuned, got, c.want)
		}
	}
}

func TestRatiosAndMedian(t *testing.T) {
	r := ratios([]float64{50, 30, 80}, []float64{100, 100, 100})
	if fmt.Sprint(r) != "[0.5 0.3 0.8]" || median(r) != 0.5 || median([]float64{1, 2, 3, 10}) != 2.5 {
		t.Fatalf("ratios %v, median %v", r, median(r))
	}
}
