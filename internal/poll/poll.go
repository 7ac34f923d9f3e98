// Package poll is how jml's tests wait for asynchronous work: they check a
// condition on a ticker until it holds or a deadline passes, never sleep
// for a guessed while. It is test support; nothing else imports it.
package poll

import (
	"context"
	"testing"
	"time"
)

// Until calls cond at once and then every interval until it reports true,
// and fails t with cond's last message if timeout passes first.
func Until(t testing.TB, timeout, interval time.Duration, cond func() (ok bool, msg string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		<-tick.C
	}
}

// Pause waits d, or until ctx ends, and reports whether all of d passed.
// It paces load a test makes on purpose (seeded gaps between events, a
// crash at a chosen moment); waiting for work to finish is Until's.
func Pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
