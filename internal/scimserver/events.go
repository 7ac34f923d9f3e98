package scimserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// immutable refuses a change a User's identity cannot take: its kind is
// fixed (a new kind is a new identity), and a non-human identity always has
// an owner (it may get another, not none).
func immutable(was, now view) error {
	kind := func(v view) string {
		if v.kind == "" {
			return string(identity.Human)
		}
		return v.kind
	}
	if kind(was) != kind(now) {
		return errf(400, "mutability", "%s:kind is %s and cannot change (a %s is a new User)", NHISchema, kind(was), kind(now))
	}
	if kind(now) != string(identity.Human) && was.owner != "" && now.owner == "" {
		return errf(400, "invalidValue", "%s:owner: a %s always has an owner; replace it with another, do not remove it", NHISchema, kind(now))
	}
	return nil
}

// event builds the lifecycle event of a User change.
func event(sc SourceConfig, id string, version int64, typ identity.EventType, v view) identity.Event {
	ev := identity.Event{Source: sc.Name, ID: fmt.Sprintf("scim-%s-%d-%s", id, version, typ), Type: typ, ExternalID: id}
	switch typ {
	case identity.Joiner, identity.Mover:
		ev.DisplayName, ev.Manager, ev.Owner, ev.Attributes = v.displayName, v.manager, v.owner, v.attributes
		// The User is the whole truth about its manager: none is none.
		ev.RemoveManager = typ == identity.Mover && v.manager == ""
		if typ == identity.Joiner { // nulls remove attributes, which only a mover may
			ev.Attributes = map[string]any{}
			for k, x := range v.attributes {
				if x != nil {
					ev.Attributes[k] = x
				}
			}
			ev.Kind = identity.Kind(v.kind)
			if ev.Kind == "" {
				ev.Kind = identity.Human
			}
		}
	}
	return ev
}

// unchangedDoc reports whether doc, a resource after a PUT or PATCH, is
// the stored one: equal once unassigned attributes are dropped (RFC 7643
// §2.5: null, an empty list and no attribute are one thing).
func unchangedDoc(stored []byte, doc map[string]any) bool {
	var was, now any
	data, err := json.Marshal(doc)
	if err != nil || json.Unmarshal(stored, &was) != nil || json.Unmarshal(data, &now) != nil {
		return false
	}
	return reflect.DeepEqual(assigned(was), assigned(now))
}

// assigned is v without its unassigned attributes, at every depth.
func assigned(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if e = assigned(e); e != nil {
				out[k] = e
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case []any:
		if len(x) == 0 {
			return nil
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = assigned(e)
		}
		return out
	}
	return v
}

// transition is the event a change from was to now makes ("" for none),
// and whether a mover must follow it.
func (s *Server) transition(r *http.Request, sc SourceConfig, id string, was, now view) (identity.EventType, bool, error) {
	changed := was.displayName != now.displayName || was.manager != now.manager || was.owner != now.owner || !sameAttrs(was.attributes, now.attributes)
	switch {
	case was.active && !now.active:
		if sc.Deactivate == "suspend" {
			return identity.Suspend, false, nil
		}
		return identity.Leaver, false, nil
	case !was.active && now.active:
		var cur *identity.Identity
		err := s.st.View(r.Context(), func(tx Tx) error {
			var err error
			cur, err = tx.GetIdentityByExternalID(r.Context(), sc.Name, id)
			return err
		})
		switch {
		case store.IsNotFound(err), err == nil && cur.State == identity.Departed:
			return identity.Joiner, false, nil
		case err != nil:
			return "", false, err
		case cur.State == identity.Suspended:
			return identity.Resume, changed, nil
		}
		return identity.Mover, false, nil
	case now.active && changed:
		return identity.Mover, false, nil
	}
	return "", false, nil
}

func sameAttrs(a, b map[string]any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
