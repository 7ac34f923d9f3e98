package httpapi

import (
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/clock"
)

// TestWebhookSignaturesAreTimedByTheEngine: a webhook's signature is
// judged fresh or stale on the engine's clock, the one its events are
// stamped with, not the machine's.
func TestWebhookSignaturesAreTimedByTheEngine(t *testing.T) {
	// Years from the machine's time, so a signature fresh on one clock is
	// stale on the other.
	at := time.Date(2041, 3, 4, 5, 6, 7, 0, time.UTC)
	a := newAPIWith(t, "sqlite", apiOptions{clock: clock.NewFake(at)})
	// A ping: accepted (200, ignored) once its signature is.
	body := `{"action": "ping"}`
	a.signed("/v1/sources/ci/webhook", body, ciSecret, time.Now(), 401, nil)
	a.signed("/v1/sources/ci/webhook", body, ciSecret, at, 200, nil)
}
