package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/jml-dev/jml/internal/identity"
)

// TestSettledWakesWaiters: the channel Settled returns is closed when a
// case completes or fails, and the counts have moved by then; a channel
// taken afterwards waits for the next.
func TestSettledWakesWaiters(t *testing.T) {
	t.Parallel()
	f, tg := newTargetFixture(t)
	m := f.e.metrics
	ch := m.Settled()
	f.submit(t, ev("1", identity.Joiner, "alice", human))
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("Settled was not closed when the joiner's case completed")
	}
	if m.CasesCompleted() != 1 {
		t.Fatalf("CasesCompleted = %d, want 1", m.CasesCompleted())
	}
	next := m.Settled()
	select {
	case <-next:
		t.Fatal("a channel taken after the completion is already closed")
	default:
	}
	tg.down = errors.New("connection refused")
	res, err := f.e.Submit(context.Background(), source, ev("2", identity.Leaver, "alice", nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.e.RunCase(context.Background(), res.CaseID, true); err != nil { // the last attempt: the case fails
		t.Fatal(err)
	}
	select {
	case <-next:
	case <-time.After(5 * time.Second):
		t.Fatal("Settled was not closed when a case failed")
	}
	if m.CasesFailed() != 1 {
		t.Fatalf("CasesFailed = %d, want 1", m.CasesFailed())
	}
}

// TestMetricsCountThisProcess: the event counters are the exposing
// process's (documented in their help), each event type has its series at 0
// from the start, and events another engine on the same store accepted (jml
// import or jml event writing to the store) are counted there, not here.
func TestMetricsCountThisProcess(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	f := newPolicyFixture(t, `
systems: [{name: vault, type: builtin}]
entitlements: [{name: wiki, system: vault}]
birthright: [{name: all, when: 'true', entitlements: [wiki]}]
`, func(c *Config) { c.Metrics = NewMetrics(reg) })
	server := f.e.metrics
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]float64{}
	for _, mf := range families {
		if mf.GetName() != "jml_events_accepted_total" {
			continue
		}
		if !strings.Contains(mf.GetHelp(), "this process accepted") {
			t.Errorf("help %q does not say whose events it counts", mf.GetHelp())
		}
		for _, m := range mf.GetMetric() {
			series[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	for _, typ := range identity.EventTypes {
		if v, ok := series[string(typ)]; !ok || v != 0 {
			t.Errorf("jml_events_accepted_total{type=%q} = %v (present %v) before any event, want 0", typ, v, ok)
		}
	}
	// A second engine on the same store, as jml import runs.
	cli, err := New(Config{Store: f.s, Policy: f.e.Policy(), Sealer: f.e.sealer, Clock: f.clock, Metrics: NewMetrics(nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	for i, who := range []string{"a", "b", "c"} {
		if _, err := cli.Submit(ctx, source, ev(fmt.Sprint(i), identity.Joiner, who, human)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.e.Submit(ctx, source, ev("3", identity.Leaver, "a", nil)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		m    *Metrics
		typ  identity.EventType
		want float64
	}{
		{server, identity.Joiner, 0}, {server, identity.Leaver, 1}, {cli.metrics, identity.Joiner, 3}, {cli.metrics, identity.Leaver, 0},
	} {
		var got dto.Metric
		if err := c.m.eventsAccepted.WithLabelValues(string(c.typ)).Write(&got); err != nil {
			t.Fatal(err)
		}
		if got.GetCounter().GetValue() != c.want {
			t.Errorf("%s counted by its engine = %v, want %v", c.typ, got.GetCounter().GetValue(), c.want)
		}
	}
}
