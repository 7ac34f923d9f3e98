package scimserver

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

func (s *Server) create(w http.ResponseWriter, r *http.Request, sc SourceConfig, p engine.Principal) error {
	in, err := readObject(r)
	if err != nil {
		return err
	}
	doc, err := normalize(in)
	if err != nil {
		return err
	}
	now := s.e.Now().UTC().Truncate(time.Microsecond)
	res := &store.SCIMResource{ID: s.e.NewID(""), Source: sc.Name, Type: "User", Version: 1, CreatedAt: now, UpdatedAt: now}
	if err := fill(res, doc); err != nil {
		return err
	}
	write := func(tx Tx) error {
		if _, err := tx.GetSCIMByUserName(r.Context(), sc.Name, "User", res.UserName); err == nil {
			return errf(409, "uniqueness", "userName %q is taken", doc["userName"])
		} else if !store.IsNotFound(err) {
			return err
		}
		return tx.InsertSCIM(r.Context(), res)
	}
	v := sc.view(doc)
	if v.active {
		ev := event(sc, res.ID, 1, identity.Joiner, v)
		if _, err := s.e.SubmitWith(r.Context(), p, ev, func(tx store.Tx, _ *engine.Result) error { return write(tx) }); err != nil {
			return sc.attributeError(err)
		}
	} else if err := s.st.Update(r.Context(), write); err != nil {
		return err // created inactive: provisioned on activation
	}
	return s.renderOne(w, r, res, http.StatusCreated)
}

// multiValues turns a multi-valued attribute into rows for value filters.
func multiValues(attr string, v any) []store.SCIMValue {
	list, _ := v.([]any)
	var out []store.SCIMValue
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		str := func(k string) string { s, _ := lookup(m, k).(string); return strings.ToLower(s) }
		p, _ := lookup(m, "primary").(bool)
		out = append(out, store.SCIMValue{Attr: attr, Type: str("type"), Value: str("value"), Display: str("display"), Primary: p})
	}
	return out
}

// fill sets a resource's indexed columns and data from a normalized doc.
func fill(res *store.SCIMResource, doc map[string]any) error {
	v := viewOf(doc)
	res.UserName, res.ExternalID, res.DisplayName, res.Active = strings.ToLower(v.userName), v.externalID, v.displayName, v.active
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return strings.ToLower(s) }
	res.Title, res.UserType = str(doc, "title"), str(doc, "userType")
	if n, ok := doc["name"].(map[string]any); ok {
		res.FamilyName, res.GivenName = str(n, "familyName"), str(n, "givenName")
	}
	res.Emails = ""
	if emails, ok := doc["emails"].([]any); ok && len(emails) > 0 {
		var b strings.Builder
		b.WriteByte('\x1f')
		for _, e := range emails {
			if m, ok := e.(map[string]any); ok {
				b.WriteString(strings.ReplaceAll(str(m, "value"), "\x1f", ""))
				b.WriteByte('\x1f')
			}
		}
		res.Emails = b.String()
	}
	res.Values = nil
	for _, attr := range []string{"emails", "phoneNumbers", "ims", "photos", "entitlements", "roles", "x509Certificates"} {
		res.Values = append(res.Values, multiValues(strings.ToLower(attr), doc[attr])...)
	}
	data, err := json.Marshal(doc)
	res.Data = data
	return err
}

func (s *Server) replace(w http.ResponseWriter, r *http.Request, sc SourceConfig, p engine.Principal) error {
	in, err := readObject(r)
	if err != nil {
		return err
	}
	return s.update(w, r, sc, p, func(map[string]any) (map[string]any, error) { return normalize(in) })
}

func (s *Server) patch(w http.ResponseWriter, r *http.Request, sc SourceConfig, p engine.Principal) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	return s.update(w, r, sc, p, func(cur map[string]any) (map[string]any, error) {
		doc, err := applyPatch(cur, body, r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		return normalize(doc)
	})
}

// update runs a PUT or PATCH: the new document from change, then the
// event the difference makes, with the resource, in one transaction.
func (s *Server) update(w http.ResponseWriter, r *http.Request, sc SourceConfig, p engine.Principal, change func(map[string]any) (map[string]any, error)) error {
	id := r.PathValue("id")
	old, err := s.load(r, sc, id)
	if err != nil {
		return err
	}
	if im := r.Header.Get("If-Match"); im != "" && im != "*" && im != etag(old.Version) {
		return errf(412, "", "If-Match %s: the resource is at %s", im, etag(old.Version))
	}
	var cur map[string]any
	if err := json.Unmarshal(old.Data, &cur); err != nil {
		return err
	}
	groups := cur["groups"] // server-managed: kept across PUT and PATCH
	doc, err := change(cur)
	if err != nil {
		return err
	}
	if groups != nil {
		doc["groups"] = groups
	}
	if unchangedDoc(old.Data, doc) {
		// Nothing changes (RFC 7644 §3.5.2.1: adding a value already there
		// "SHALL NOT change the modify timestamp"): no write, no event, and
		// the version a client holds stays current for its next If-Match.
		return s.renderOne(w, r, old, http.StatusOK)
	}
	res := *old
	// Microseconds, as the store keeps them: a write's answer and a later
	// read show the same lastModified.
	res.Version, res.UpdatedAt = old.Version+1, s.e.Now().UTC().Truncate(time.Microsecond)
	if err := fill(&res, doc); err != nil {
		return err
	}
	var oldDoc map[string]any
	json.Unmarshal(old.Data, &oldDoc)
	was, now := sc.view(oldDoc), sc.view(doc)
	if err := immutable(was, now); err != nil {
		return err
	}
	write := func(tx Tx) error {
		again, err := tx.GetSCIM(r.Context(), sc.Name, id)
		if err != nil {
			return err
		}
		if again.Version != old.Version {
			return errf(412, "", "the resource changed meanwhile (now %s)", etag(again.Version))
		}
		if res.UserName != old.UserName {
			if other, err := tx.GetSCIMByUserName(r.Context(), sc.Name, "User", res.UserName); err == nil && other.ID != id {
				return errf(409, "uniqueness", "userName %q is taken", doc["userName"])
			}
		}
		return tx.UpdateSCIM(r.Context(), &res)
	}
	typ, follow, err := s.transition(r, sc, id, was, now)
	if err != nil {
		return err
	}
	if follow || typ == identity.Joiner || typ == identity.Mover {
		// The engine checks each event's attributes as it takes it; a
		// resume followed by a mover would commit the resume before the
		// mover's check, so the User's values are checked here first.
		if err := s.e.Policy().CheckAttributes(now.attributes); err != nil {
			return sc.attributeError(err)
		}
	}
	if typ == "" {
		err = s.st.Update(r.Context(), write)
	} else {
		_, err = s.e.SubmitWith(r.Context(), p, event(sc, id, res.Version, typ, now), func(tx store.Tx, _ *engine.Result) error { return write(tx) })
	}
	if err != nil {
		return sc.attributeError(err)
	}
	if follow {
		// A resume does not carry attributes; changed ones follow as a mover.
		if _, err := s.e.Submit(r.Context(), p, event(sc, id, res.Version, identity.Mover, now)); err != nil {
			return sc.attributeError(err)
		}
	}
	out, err := render(r, &res)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(res.Version))
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, sc SourceConfig, p engine.Principal) error {
	id := r.PathValue("id")
	old, err := s.load(r, sc, id)
	if err != nil {
		return err
	}
	if im := r.Header.Get("If-Match"); im != "" && im != "*" && im != etag(old.Version) {
		return errf(412, "", "If-Match %s: the resource is at %s", im, etag(old.Version))
	}
	del := func(tx Tx) error {
		ok, err := tx.DeleteSCIM(r.Context(), sc.Name, id)
		if err == nil && !ok {
			return errf(404, "", "no User %q", id)
		}
		return err
	}
	var cur *identity.Identity
	err = s.st.View(r.Context(), func(tx Tx) error {
		var err error
		cur, err = tx.GetIdentityByExternalID(r.Context(), sc.Name, id)
		return err
	})
	switch {
	case store.IsNotFound(err) || (err == nil && cur.State == identity.Departed):
		err = s.st.Update(r.Context(), del)
	case err == nil:
		_, err = s.e.SubmitWith(r.Context(), p, event(sc, id, old.Version+1, identity.Leaver, view{}), func(tx store.Tx, _ *engine.Result) error { return del(tx) })
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
