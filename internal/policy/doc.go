// Package policy loads jml's policy file (systems, entitlements, roles,
// birthright rules and credential rules, in YAML) and evaluates it for one
// identity to give the access that identity should hold.
//
// Rules are CEL expressions over the identity, compiled once at load. It is
// part of the pure core: no database, network or clock; it imports only
// identity, the YAML decoder and cel-go.
package policy
