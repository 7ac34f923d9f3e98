package clock

import (
	"testing"
	"time"
)

var start = time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)

func fired(c <-chan time.Time) (time.Time, bool) {
	select {
	case t := <-c:
		return t, true
	default:
		return time.Time{}, false
	}
}

func TestFakeTimerFiresOnlyWhenDue(t *testing.T) {
	f := NewFake(start)
	tm := f.NewTimer(time.Minute)
	if f.Waiting() != 1 {
		t.Fatalf("Waiting = %d, want 1", f.Waiting())
	}
	f.Advance(time.Minute - time.Nanosecond)
	if _, ok := fired(tm.C()); ok {
		t.Fatal("timer fired before it was due")
	}
	f.Advance(time.Nanosecond)
	got, ok := fired(tm.C())
	if !ok || !got.Equal(start.Add(time.Minute)) {
		t.Fatalf("timer sent %v (%v), want %v", got, ok, start.Add(time.Minute))
	}
	if tm.Stop() {
		t.Fatal("Stop of a fired timer reported that it stopped it")
	}
	if f.Waiting() != 0 {
		t.Fatalf("Waiting after firing = %d", f.Waiting())
	}
}

func TestFakeStoppedTimerNeverFires(t *testing.T) {
	f := NewFake(start)
	tm := f.NewTimer(time.Second)
	called := false
	fn := f.AfterFunc(time.Second, func() { called = true })
	if !tm.Stop() || !fn.Stop() {
		t.Fatal("Stop of a pending timer reported it had already fired")
	}
	f.Advance(time.Hour)
	if _, ok := fired(tm.C()); ok || called {
		t.Fatalf("stopped timer fired (channel %v, func %v)", ok, called)
	}
}

func TestFakeFiresInDueOrderWithNowAtEach(t *testing.T) {
	f := NewFake(start)
	var order []time.Duration
	for _, d := range []time.Duration{3 * time.Second, time.Second, 2 * time.Second} {
		f.AfterFunc(d, func() {
			if got := f.Now().Sub(start); got != d {
				t.Errorf("call due at %v saw Now %v", d, got)
			}
			order = append(order, d)
		})
	}
	f.Advance(10 * time.Second)
	if len(order) != 3 || order[0] != time.Second || order[1] != 2*time.Second || order[2] != 3*time.Second {
		t.Fatalf("calls ran in order %v", order)
	}
	if got := f.Now(); !got.Equal(start.Add(10 * time.Second)) {
		t.Fatalf("Now after Advance = %v", got)
	}
}

func TestFakeTickerDropsMissedTicks(t *testing.T) {
	f := NewFake(start)
	tk := f.NewTicker(time.Second)
	defer tk.Stop()
	f.Advance(5 * time.Second)
	got, ok := fired(tk.C())
	if !ok || !got.Equal(start.Add(time.Second)) {
		t.Fatalf("first tick %v (%v), want the one at 1s kept", got, ok)
	}
	if _, ok := fired(tk.C()); ok {
		t.Fatal("a reader that missed ticks got more than one")
	}
	f.Advance(time.Second)
	if got, ok := fired(tk.C()); !ok || !got.Equal(start.Add(6*time.Second)) {
		t.Fatalf("tick after catching up %v (%v), want 6s", got, ok)
	}
	tk.Stop()
	f.Advance(time.Minute)
	if _, ok := fired(tk.C()); ok {
		t.Fatal("stopped ticker ticked")
	}
}

func TestFakeZeroTimerFiresAtOnce(t *testing.T) {
	f := NewFake(start)
	if _, ok := fired(f.NewTimer(0).C()); !ok {
		t.Fatal("a timer of 0 did not fire at once")
	}
}

func TestRealClockWaits(t *testing.T) {
	before := time.Now()
	<-Real.NewTimer(5 * time.Millisecond).C()
	if time.Since(before) < 5*time.Millisecond {
		t.Fatal("the real timer fired early")
	}
	if Real.Now().Before(before) {
		t.Fatal("the real clock went back")
	}
}
