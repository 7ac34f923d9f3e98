package identity

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// EventType is what a source of truth says happened.
type EventType string

const (
	Joiner  EventType = "joiner"
	Mover   EventType = "mover"
	Leaver  EventType = "leaver"
	Suspend EventType = "suspend"
	Resume  EventType = "resume"
)

// EventTypes lists every valid event type.
var EventTypes = []EventType{Joiner, Mover, Leaver, Suspend, Resume}

// Event is one lifecycle event as a source hands it in. (Source, ID) is its
// idempotency key: the same pair is processed once.
type Event struct {
	Source      string    `json:"source"`
	ID          string    `json:"id"`
	Type        EventType `json:"type"`
	ExternalID  string    `json:"externalId"`
	Kind        Kind      `json:"kind,omitempty"`
	DisplayName string    `json:"displayName,omitempty"`
	// Owner is the external ID of the owning identity, looked up in
	// OwnerSource (default: this event's source).
	Owner       string `json:"owner,omitempty"`
	OwnerSource string `json:"ownerSource,omitempty"`
	// Manager is the external ID of the manager, in this event's source.
	// On a mover an empty Manager leaves the manager as it is, and
	// RemoveManager takes it away; a joiner sets exactly the manager it
	// names (none when empty).
	Manager       string `json:"manager,omitempty"`
	RemoveManager bool   `json:"removeManager,omitempty"`
	// Attributes is the full attribute set on a joiner and a merge patch on a
	// mover: a key mapped to null is removed.
	Attributes  map[string]any `json:"attributes,omitempty"`
	EffectiveAt *time.Time     `json:"effectiveAt,omitempty"`
}

var (
	namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,254}$`)
	attrPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)
)

// Limits on what one event may carry, so that a source cannot store
// unbounded data through jml.
const (
	MaxAttributes     = 64
	MaxAttributeValue = 1024
	MaxListItems      = 64
)

// Validate checks the event's shape without looking at stored state. It
// returns an Invalid error naming the first field at fault.
func (e *Event) Validate() error {
	if err := checkName("source", e.Source); err != nil {
		return err
	}
	if err := checkName("id", e.ID); err != nil {
		return err
	}
	if err := checkName("externalId", e.ExternalID); err != nil {
		return err
	}
	switch e.Type {
	case Joiner, Mover, Leaver, Suspend, Resume:
	case "":
		return FieldError("type", "is required (one of %v)", EventTypes)
	default:
		return FieldError("type", "unknown event type %q (want one of %v)", e.Type, EventTypes)
	}
	if e.Kind != "" && !e.Kind.Valid() {
		return FieldError("kind", "unknown kind %q (want one of %v)", e.Kind, Kinds)
	}
	if e.Type == Joiner {
		if e.Kind == "" {
			return FieldError("kind", "is required on a joiner (one of %v)", Kinds)
		}
		if e.Kind.NonHuman() && e.Owner == "" {
			return FieldError("owner", "is required for a %s: every non-human identity has an owner", e.Kind)
		}
	}
	if e.Owner != "" {
		if err := checkName("owner", e.Owner); err != nil {
			return err
		}
		if e.Owner == e.ExternalID && (e.OwnerSource == "" || e.OwnerSource == e.Source) {
			return FieldError("owner", "an identity cannot own itself")
		}
	}
	if e.OwnerSource != "" {
		if err := checkName("ownerSource", e.OwnerSource); err != nil {
			return err
		}
	}
	if e.Manager != "" {
		if err := checkName("manager", e.Manager); err != nil {
			return err
		}
	}
	if e.RemoveManager && (e.Manager != "" || e.Type != Mover) {
		return FieldError("removeManager", "is for a mover that names no manager")
	}
	if len(e.DisplayName) > MaxAttributeValue {
		return FieldError("displayName", "is longer than %d bytes", MaxAttributeValue)
	}
	if err := CheckText("displayName", e.DisplayName); err != nil {
		return err
	}
	return ValidateAttributes(e.Attributes, e.Type == Mover)
}

// ValidateAttributes checks names and values: values are strings, numbers,
// booleans or lists of strings; null is allowed only in a patch.
func ValidateAttributes(attrs map[string]any, patch bool) error {
	if len(attrs) > MaxAttributes {
		return FieldError("attributes", "has %d entries, more than the %d allowed", len(attrs), MaxAttributes)
	}
	for k, v := range attrs {
		field := "attributes." + k
		if !attrPattern.MatchString(k) {
			return FieldError("attributes", "invalid attribute name %q (letters, digits and _, starting with a letter or _)", k)
		}
		switch v := v.(type) {
		case nil:
			if !patch {
				return FieldError(field, "null is only allowed on a mover, where it removes the attribute")
			}
		case string:
			if len(v) > MaxAttributeValue {
				return FieldError(field, "is longer than %d bytes", MaxAttributeValue)
			}
			if err := CheckText(field, v); err != nil {
				return err
			}
		case bool, float64, int, int64:
		case []any:
			if len(v) > MaxListItems {
				return FieldError(field, "has more than %d items", MaxListItems)
			}
			for i, item := range v {
				s, ok := item.(string)
				if !ok {
					return FieldError(fmt.Sprintf("%s[%d]", field, i), "list items must be strings")
				}
				if len(s) > MaxAttributeValue {
					return FieldError(fmt.Sprintf("%s[%d]", field, i), "is longer than %d bytes", MaxAttributeValue)
				}
				if err := CheckText(fmt.Sprintf("%s[%d]", field, i), s); err != nil {
					return err
				}
			}
		case []string:
			for i, s := range v {
				if err := CheckText(fmt.Sprintf("%s[%d]", field, i), s); err != nil {
					return err
				}
			}
		default:
			return FieldError(field, "must be a string, number, boolean or list of strings")
		}
	}
	return nil
}

// CheckText refuses text no store keeps alike: a NUL byte (PostgreSQL
// refuses it, SQLite keeps it) and invalid UTF-8 (which JSON decoding
// silently replaces). The same rule holds at every edge: the REST API,
// SCIM, HR files, webhooks and the CLI.
func CheckText(field, s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return FieldError(field, "holds a NUL byte")
	}
	if !utf8.ValidString(s) {
		return FieldError(field, "is not valid UTF-8")
	}
	return nil
}

// ValidName checks a name as events' source and external IDs are checked:
// required, at most 255 characters of [A-Za-z0-9._:@/+-], starting with a
// letter or digit. The error names field.
func ValidName(field, v string) error { return checkName(field, v) }

func checkName(field, v string) error {
	if v == "" {
		return FieldError(field, "is required")
	}
	if !namePattern.MatchString(v) {
		if len(v) > 255 {
			return FieldError(field, "is longer than 255 characters")
		}
		return FieldError(field, "%q has characters outside [A-Za-z0-9._:@/+-] or does not start with a letter or digit", truncate(v))
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// ApplyAttributes returns a copy of base with patch merged in: keys mapped to
// nil are removed, others replaced.
func ApplyAttributes(base, patch map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(patch))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range patch {
		if v == nil {
			delete(out, k)
			continue
		}
		if l, ok := v.([]string); ok {
			items := make([]any, len(l))
			for i, s := range l {
				items[i] = s
			}
			v = items
		}
		out[k] = v
	}
	return out
}
