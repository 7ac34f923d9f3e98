// Package identity holds jml's domain types: identities of every kind, their
// lifecycle states and the state machine between them, lifecycle events, and
// the error type with codes that every other layer speaks.
//
// It is part of the pure core: it must not import database, network, clock
// or logging packages, and it never calls time.Now. Callers pass time in.
package identity
