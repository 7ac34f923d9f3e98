// Package clock is time as jml reads it: the current time and the timers,
// tickers and delayed calls that wait on it. Code that waits takes a Clock,
// so a test can move time on with a Fake instead of sleeping; production
// passes Real.
//
// The pure core (identity, policy, plan) does not use this package: time
// reaches it as values.
package clock

import (
	"sync"
	"time"
)

// Clock tells the time and waits on it.
type Clock interface {
	Now() time.Time
	// NewTimer sends the time on its channel once, after d.
	NewTimer(d time.Duration) Timer
	// NewTicker sends the time on its channel every d, dropping ticks a
	// slow reader misses, as time.Ticker does. d must be positive.
	NewTicker(d time.Duration) Ticker
	// AfterFunc calls f once, after d; the Timer's channel is nil.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending wait. Stop reports whether it stopped the timer
// before it fired.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// Ticker is a repeating wait.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// Real is the system clock.
var Real Clock = real{}

type real struct{}

func (real) Now() time.Time                   { return time.Now() }
func (real) NewTimer(d time.Duration) Timer   { return realTimer{time.NewTimer(d)} }
func (real) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }
func (real) AfterFunc(d time.Duration, f func()) Timer {
	return realTimer{time.AfterFunc(d, f)}
}

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }

// Fake is a clock that moves only when told to. Timers, tickers and
// delayed calls fire during Advance, in the order they fall due, each
// seeing Now as its due time; a delayed call runs on Advance's goroutine
// before Advance returns. It is safe for concurrent use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*waiter
}

// NewFake returns a Fake showing start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

type waiter struct {
	f      *Fake
	when   time.Time
	period time.Duration // > 0 for a ticker
	c      chan time.Time
	fn     func()
}

// Now implements Clock.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer implements Clock. A timer of d <= 0 fires at once.
func (f *Fake) NewTimer(d time.Duration) Timer {
	return f.add(&waiter{when: f.Now().Add(d), c: make(chan time.Time, 1)})
}

// NewTicker implements Clock.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	return fakeTicker{f.add(&waiter{when: f.Now().Add(d), period: d, c: make(chan time.Time, 1)})}
}

// AfterFunc implements Clock.
func (f *Fake) AfterFunc(d time.Duration, fn func()) Timer {
	return f.add(&waiter{when: f.Now().Add(d), fn: fn})
}

func (f *Fake) add(w *waiter) *waiter {
	w.f = f
	f.mu.Lock()
	f.waiters = append(f.waiters, w)
	f.mu.Unlock()
	f.Advance(0) // fire what is already due
	return w
}

// Waiting is how many timers, tickers and delayed calls are pending: a test
// waits for it to grow to know the code under test has started to wait.
func (f *Fake) Waiting() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

// Advance moves the clock on by d, firing everything that falls due on the
// way, and returns when all of it has fired.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	end := f.now.Add(d)
	f.mu.Unlock()
	for {
		f.mu.Lock()
		var next *waiter
		for _, w := range f.waiters {
			if !w.when.After(end) && (next == nil || w.when.Before(next.when)) {
				next = w
			}
		}
		if next == nil {
			if end.After(f.now) {
				f.now = end
			}
			f.mu.Unlock()
			return
		}
		if next.when.After(f.now) {
			f.now = next.when
		}
		now := f.now
		if next.period > 0 {
			next.when = next.when.Add(next.period)
		} else {
			f.remove(next)
		}
		f.mu.Unlock()
		if next.fn != nil {
			next.fn()
			continue
		}
		select {
		case next.c <- now:
		default: // a reader that has not taken the last tick misses this one
		}
	}
}

// remove drops w; f.mu is held.
func (f *Fake) remove(w *waiter) bool {
	for i, o := range f.waiters {
		if o == w {
			f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
			return true
		}
	}
	return false
}

func (w *waiter) C() <-chan time.Time { return w.c }

// Stop implements Timer.
func (w *waiter) Stop() bool {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	return w.f.remove(w)
}

type fakeTicker struct{ w *waiter }

func (t fakeTicker) C() <-chan time.Time { return t.w.c }
func (t fakeTicker) Stop()               { t.w.Stop() }
