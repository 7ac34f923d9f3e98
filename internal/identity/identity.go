package identity

import (
	"sort"
	"time"
)

// Kind is what an identity is. Every kind but Human is a non-human identity
// (NHI) and must have an owner.
type Kind string

const (
	Human          Kind = "human"
	ServiceAccount Kind = "service_account"
	Workload       Kind = "workload"
	Pipeline       Kind = "pipeline"
	AIAgent        Kind = "ai_agent"
)

// Kinds lists every valid kind, in a stable order for messages.
var Kinds = []Kind{Human, ServiceAccount, Workload, Pipeline, AIAgent}

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool {
	for _, v := range Kinds {
		if k == v {
			return true
		}
	}
	return false
}

// NonHuman reports whether k is a non-human kind, which requires an owner.
func (k Kind) NonHuman() bool { return k.Valid() && k != Human }

// Identity is who or what holds access.
type Identity struct {
	ID          string         `json:"id"`
	Source      string         `json:"source"`
	ExternalID  string         `json:"externalId"`
	Kind        Kind           `json:"kind"`
	State       State          `json:"state"`
	DisplayName string         `json:"displayName,omitempty"`
	OwnerID     string         `json:"ownerId,omitempty"`   // jml ID of the owning identity (required for NHIs)
	ManagerID   string         `json:"managerId,omitempty"` // jml ID of the manager (humans)
	Attributes  map[string]any `json:"attributes"`
	CreatedAt   time.Time      `json:"createdAt"`
	UpdatedAt   time.Time      `json:"updatedAt"`
}

// AttributeKeys returns the attribute names in sorted order.
func (i *Identity) AttributeKeys() []string {
	keys := make([]string, 0, len(i.Attributes))
	for k := range i.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Clone returns a deep enough copy for planning: the attribute map is copied
// so that applying a mover to the copy leaves the original untouched.
func (i Identity) Clone() Identity {
	attrs := make(map[string]any, len(i.Attributes))
	for k, v := range i.Attributes {
		if l, ok := v.([]any); ok {
			v = append([]any(nil), l...)
		}
		attrs[k] = v
	}
	i.Attributes = attrs
	return i
}
