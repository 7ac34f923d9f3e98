package engine

// NewID returns a new ID: prefix followed by a ULID drawn from the
// engine's clock and random source (Config.Clock, Config.Rand), as every
// ID the engine makes is. Records kept beside the engine's at the edge (the
// SCIM server's resources, whose IDs carry no prefix) take theirs from
// here too, so that a test fixing the clock and the random source fixes
// every ID.
func (e *Engine) NewID(prefix string) string { return e.newID(prefix) }
