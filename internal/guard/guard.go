// Package guard is the mass-change guard's arithmetic: whether a number of
// leavers out of a population is more than a source may cause at once.
// A broken feed looks like half the company leaving; the guard makes jml
// hold such a batch for an administrator instead of applying it.
package guard

import "fmt"

// Limits are a source's thresholds. Zero fields take the defaults.
type Limits struct {
	// MaxLeavers: more leavers than this are held (default 50).
	MaxLeavers int `yaml:"maxLeavers"`
	// MaxLeaverPercent: more than this share of the source's people
	// leaving is held (default 5), once at least MinLeaversForPercent
	// leave (default 10, so that a small company's one leaver is not).
	MaxLeaverPercent     float64 `yaml:"maxLeaverPercent"`
	MinLeaversForPercent int     `yaml:"minLeaversForPercent"`
}

// WithDefaults fills zero fields and rejects negative ones.
func (l Limits) WithDefaults() (Limits, error) {
	if l.MaxLeavers < 0 || l.MaxLeaverPercent < 0 || l.MinLeaversForPercent < 0 {
		return l, fmt.Errorf("guard thresholds must not be negative")
	}
	if l.MaxLeavers == 0 {
		l.MaxLeavers = 50
	}
	if l.MaxLeaverPercent == 0 {
		l.MaxLeaverPercent = 5
	}
	if l.MinLeaversForPercent == 0 {
		l.MinLeaversForPercent = 10
	}
	return l, nil
}

// Exceeded reports whether leavers out of population break the limits,
// and says how.
func (l Limits) Exceeded(leavers, population int) (bool, string) {
	if leavers > l.MaxLeavers {
		return true, fmt.Sprintf("%d leavers, more than the %d the guard allows at once", leavers, l.MaxLeavers)
	}
	if population > 0 && leavers >= l.MinLeaversForPercent {
		pct := 100 * float64(leavers) / float64(population)
		if pct > l.MaxLeaverPercent {
			return true, fmt.Sprintf("%d leavers, %.1f%% of %d people, more than the %g%% the guard allows at once", leavers, pct, population, l.MaxLeaverPercent)
		}
	}
	return false, ""
}
