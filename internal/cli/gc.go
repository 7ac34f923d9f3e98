package cli

import (
	"os"
	"runtime/debug"
)

// serverGCPercent is the garbage collector's target for the long-running
// commands (serve, bench) when GOGC is not set: the heap may grow to five
// times what is live before a collection, instead of Go's default twice.
// jml's live heap is small and its allocation rate high (every event's
// SQL parameters), so collections were a fifth of its CPU under load. On
// this project's 2-core machine, jml bench --only postgres --submitters 100
// went from 9,135-10,358 to 11,861-12,201 joiners/s, with 62 MB peak RSS
// instead of 42 MB (docs/performance.md). GOGC in the environment (the
// runtime's own setting) wins.
const serverGCPercent = 400

// tuneGC applies serverGCPercent unless GOGC is set.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(serverGCPercent)
	}
}
