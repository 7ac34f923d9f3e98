package scimserver

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// GroupSchema is the core Group schema.
const GroupSchema = "urn:ietf:params:scim:schemas:core:2.0:Group"

// Groups change access through their members: a User's groups (by
// displayName) are the identity attribute "groups", which policies can
// read (`"admins" in identity.attributes.groups`). Every change of a
// group's members or name is, in the same transaction, a mover for each
// active member it affects, and updates that User's read-only groups.

// normalizeGroup checks a Group document from a client.
func normalizeGroup(in map[string]any) (map[string]any, error) {
	schemas, err := stringList(in["schemas"])
	if err != nil || !slices.ContainsFunc(schemas, func(s string) bool { return strings.EqualFold(s, GroupSchema) }) {
		return nil, errf(400, "invalidSyntax", "schemas: [%q] is required", GroupSchema)
	}
	out := map[string]any{"schemas": []string{GroupSchema}}
	for k, v := range in {
		switch strings.ToLower(k) {
		case "schemas", "id", "meta":
		case "displayname":
			s, ok := v.(string)
			if !ok || strings.TrimSpace(s) == "" {
				return nil, errf(400, "invalidValue", "displayName: a non-empty string is required")
			}
			out["displayName"] = s
		case "externalid":
			s, ok := v.(string)
			if !ok {
				return nil, errf(400, "invalidValue", "externalId: must be a string")
			}
			out["externalId"] = s
		case "members":
			if v == nil {
				continue
			}
			list, ok := v.([]any)
			if !ok {
				return nil, errf(400, "invalidValue", "members: must be a list")
			}
			var members []any
			seen := map[string]bool{}
			for _, m := range list {
				mm, ok := m.(map[string]any)
				id, _ := mm["value"].(string)
				if !ok || id == "" {
					return nil, errf(400, "invalidValue", "members: each needs a value, the member's id")
				}
				if err := checkSubAttrs("members", mm); err != nil {
					return nil, err
				}
				if typ, _ := mm["type"].(string); typ != "" && !strings.EqualFold(typ, "User") {
					return nil, errf(400, "invalidValue", "members: %q is a %s; only Users can be members here", id, typ)
				}
				if !seen[id] {
					seen[id] = true
					member := map[string]any{"value": id}
					if d, ok := mm["display"].(string); ok && d != "" {
						member["display"] = d
					}
					// $ref and type are the server's to give (render).
					members = append(members, member)
				}
			}
			out["members"] = members
		default:
			return nil, errf(400, "invalidSyntax", "%s is not an attribute of %s", k, GroupSchema)
		}
	}
	if _, ok := out["displayName"]; !ok {
		return nil, errf(400, "invalidValue", "displayName is required")
	}
	return out, nil
}

func memberIDs(doc map[string]any) []string {
	var out []string
	if list, ok := doc["members"].([]any); ok {
		for _, m := range list {
			if mm, ok := m.(map[string]any); ok {
				if id, ok := mm["value"].(string); ok {
					out = append(out, id)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// groupsOf returns the names in a User's read-only groups attribute.
func groupsOf(doc map[string]any) []string {
	var out []string
	if list, ok := doc["groups"].([]any); ok {
		for _, g := range list {
			if gm, ok := g.(map[string]any); ok {
				if n, ok := gm["display"].(string); ok {
					out = append(out, n)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// syncMembers reads, in tx, the Users in affected and returns them with
// group gid (named name, "" when deleted) set or cleared in their
// read-only groups per the group's members after the change, and the
// movers that makes for active, provisioned members. A member that is not
// a User of the source is an error.
func (s *Server) syncMembers(r *http.Request, tx Tx, sc SourceConfig, gid, name string, members, affected []string) ([]*store.SCIMResource, []identity.Event, error) {
	var evs []identity.Event
	var updates []*store.SCIMResource
	now := s.e.Now().UTC().Truncate(time.Microsecond)
	for _, uid := range affected {
		u, err := tx.GetSCIM(r.Context(), sc.Name, uid)
		if store.IsNotFound(err) || (err == nil && u.Type != "User") {
			if slices.Contains(members, uid) {
				return nil, nil, errf(400, "invalidValue", "members: %q is not a User of source %s", uid, sc.Name)
			}
			continue // a member that left meanwhile
		}
		if err != nil {
			return nil, nil, err
		}
		var doc map[string]any
		if err := json.Unmarshal(u.Data, &doc); err != nil {
			return nil, nil, err
		}
		before := groupsOf(doc)
		var groups []any
		if list, ok := doc["groups"].([]any); ok {
			for _, g := range list {
				if gm, ok := g.(map[string]any); ok && gm["value"] != gid {
					groups = append(groups, g)
				}
			}
		}
		if name != "" && slices.Contains(members, uid) {
			groups = append(groups, map[string]any{"value": gid, "display": name})
		}
		doc["groups"] = groups
		if slices.Equal(before, groupsOf(doc)) {
			continue
		}
		u.Version, u.UpdatedAt = u.Version+1, now
		if u.Data, err = json.Marshal(doc); err != nil {
			return nil, nil, err
		}
		updates = append(updates, u)
		if !u.Active {
			continue
		}
		if _, err := tx.GetIdentityByExternalID(r.Context(), sc.Name, uid); err != nil {
			continue // not provisioned (created inactive)
		}
		evs = append(evs, event(sc, uid, u.Version, identity.Mover, sc.view(doc)))
	}
	return updates, evs, nil
}

// writeGroup stores a group change and its members' movers in one
// transaction. old is the stored group (nil on create), doc the new one
// (nil on delete).
func (s *Server) writeGroup(r *http.Request, sc SourceConfig, p engine.Principal, res *store.SCIMResource, old, doc map[string]any) error {
	var before, after []string
	var oldName, newName string
	if old != nil {
		before, oldName = memberIDs(old), old["displayName"].(string)
	}
	if doc != nil {
		after, newName = memberIDs(doc), doc["displayName"].(string)
	}
	affected := symmetric(before, after)
	if oldName != newName && oldName != "" && newName != "" {
		affected = union(before, after) // a rename changes every member's groups
	}
	// The Users' new groups and the movers are derived first, then written
	// and accepted with the group in one transaction, which checks that no
	// User changed meanwhile.
	var updates []*store.SCIMResource
	var evs []identity.Event
	err := s.st.View(r.Context(), func(tx Tx) error {
		var err error
		updates, evs, err = s.syncMembers(r, tx, sc, res.ID, newName, after, affected)
		return err
	})
	if err != nil {
		return err
	}
	write := func(tx Tx) error {
		switch {
		case old == nil:
			if _, err := tx.GetSCIMByUserName(r.Context(), sc.Name, "Group", res.UserName); err == nil {
				return errf(409, "uniqueness", "a Group named %q exists", newName)
			}
			if err := tx.InsertSCIM(r.Context(), res); err != nil {
				return err
			}
		case doc == nil:
			if ok, err := tx.DeleteSCIM(r.Context(), sc.Name, res.ID); err != nil || !ok {
				if err == nil {
					err = errf(404, "", "no Group %q", res.ID)
				}
				return err
			}
		default:
			again, err := tx.GetSCIM(r.Context(), sc.Name, res.ID)
			if err != nil {
				return err
			}
			if again.Version != res.Version-1 {
				return errf(412, "", "the Group changed meanwhile (now %s)", etag(again.Version))
			}
			if other, err := tx.GetSCIMByUserName(r.Context(), sc.Name, "Group", res.UserName); err == nil && other.ID != res.ID {
				return errf(409, "uniqueness", "a Group named %q exists", newName)
			}
			if err := tx.UpdateSCIM(r.Context(), res); err != nil {
				return err
			}
		}
		for _, u := range updates {
			again, err := tx.GetSCIM(r.Context(), sc.Name, u.ID)
			if err != nil {
				return err
			}
			if again.Version != u.Version-1 {
				return errf(412, "", "User %s changed meanwhile; send the Group again", u.ID)
			}
			if err := tx.UpdateSCIM(r.Context(), u); err != nil {
				return err
			}
		}
		return nil
	}
	if len(evs) == 0 {
		return s.st.Update(r.Context(), write)
	}
	_, err = s.e.SubmitAllWith(r.Context(), p, evs, func(tx store.Tx, _ []*engine.Result) error { return write(tx) })
	return sc.attributeError(err)
}

func symmetric(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			out = append(out, x)
		}
	}
	return out
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request, sc SourceConfig, p engine.Principal) error {
	in, err := readObject(r)
	if err != nil {
		return err
	}
	doc, err := normalizeGroup(in)
	if err != nil {
		return err
	}
	now := s.e.Now().UTC().Truncate(time.Microsecond)
	res := &store.SCIMResource{ID: s.e.NewID(""), Source: sc.Name, Type: "Group", Version: 1, CreatedAt: now, UpdatedAt: now}
	if err := fillGroup(res, doc); err != nil {
		return err
	}
	if err := s.writeGroup(r, sc, p, res, nil, doc); err != nil {
		return err
	}
	return s.renderOne(w, r, res, http.StatusCreated)
}

func fillGroup(res *store.SCIMResource, doc map[string]any) error {
	name := doc["displayName"].(string)
	ext, _ := doc["externalId"].(string)
	res.UserName, res.DisplayName, res.ExternalID, res.Active = strings.ToLower(name), name, ext, true
	res.Values = multiValues("members", doc["members"])
	data, err := json.Marshal(doc)
	res.Data = data
	return err
}

func (s *Server) updateGroup(w http.ResponseWriter, r *http.Request, sc SourceConfig, p engine.Principal, change func(map[string]any) (map[string]any, error)) error {
	old, err := s.loadType(r, sc, r.PathValue("id"), "Group")
	if err != nil {
		return err
	}
	if im := r.Header.Get("If-Match"); im != "" && im != "*" && im != etag(old.Version) {
		return errf(412, "", "If-Match %s: the resource is at %s", im, etag(old.Version))
	}
	var cur, prev map[string]any
	json.Unmarshal(old.Data, &cur)
	json.Unmarshal(old.Data, &prev)
	doc, err := change(cur)
	if err != nil {
		return err
	}
	if unchangedDoc(old.Data, doc) {
		return s.renderOne(w, r, old, http.StatusOK) // as update does: nothing written
	}
	res := *old
	res.Version, res.UpdatedAt = old.Version+1, s.e.Now().UTC().Truncate(time.Microsecond)
	if err := fillGroup(&res, doc); err != nil {
		return err
	}
	if err := s.writeGroup(r, sc, p, &res, prev, doc); err != nil {
		return err
	}
	return s.renderOne(w, r, &res, http.StatusOK)
}

func (s *Server) replaceGroup(w http.ResponseWriter, r *http.Request, sc SourceConfig, p engine.Principal) error {
	in, err := readObject(r)
	if err != nil {
		return err
	}
	return s.updateGroup(w, r, sc, p, func(map[string]any) (map[string]any, error) { return normalizeGroup(in) })
}

func (s *Server) patchGroup(w http.ResponseWriter, r *http.Request, sc SourceConfig, p engine.Principal) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	return s.updateGroup(w, r, sc, p, func(cur map[string]any) (map[string]any, error) {
		doc, err := applyPatch(cur, body, r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		return normalizeGroup(doc)
	})
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request, sc SourceConfig, p engine.Principal) error {
	old, err := s.loadType(r, sc, r.PathValue("id"), "Group")
	if err != nil {
		return err
	}
	var prev map[string]any
	json.Unmarshal(old.Data, &prev)
	if err := s.writeGroup(r, sc, p, old, prev, nil); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
