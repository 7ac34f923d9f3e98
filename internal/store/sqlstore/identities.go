package sqlstore

// Tx's part for identities.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

const identityCols = "id, source, external_id, kind, state, display_name, owner_id, manager_id, attributes, created_at, updated_at"

func scanIdentity(scan func(...any) error) (*identity.Identity, error) {
	var id identity.Identity
	var kind, state, attrs string
	var created, updated int64
	if err := scan(&id.ID, &id.Source, &id.ExternalID, &kind, &state, &id.DisplayName, &id.OwnerID, &id.ManagerID, &attrs, &created, &updated); err != nil {
		return nil, err
	}
	id.Kind, id.State = identity.Kind(kind), identity.State(state)
	if err := json.Unmarshal([]byte(attrs), &id.Attributes); err != nil {
		return nil, fmt.Errorf("identity %s attributes: %w", id.ID, err)
	}
	if id.Attributes == nil {
		id.Attributes = map[string]any{}
	}
	id.CreatedAt, id.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &id, nil
}

func marshalAttrs(a map[string]any) (string, error) {
	if a == nil {
		return "{}", nil
	}
	b, err := json.Marshal(a)
	return string(b), err
}

func (t *Tx) InsertIdentity(ctx context.Context, id *identity.Identity) error {
	attrs, err := marshalAttrs(id.Attributes)
	if err != nil {
		return err
	}
	err = t.write(ctx, "INSERT INTO identities ("+identityCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		id.ID, id.Source, id.ExternalID, string(id.Kind), string(id.State), id.DisplayName, id.OwnerID, id.ManagerID, attrs, micros(id.CreatedAt), micros(id.UpdatedAt))
	if err != nil {
		return fmt.Errorf("insert identity: %w", err)
	}
	t.pre.insertedIdentity(id)
	return nil
}

func (t *Tx) UpdateIdentity(ctx context.Context, id *identity.Identity) error {
	attrs, err := marshalAttrs(id.Attributes)
	if err != nil {
		return err
	}
	n, err := t.c.Exec(ctx, "UPDATE identities SET kind = ?, state = ?, display_name = ?, owner_id = ?, manager_id = ?, attributes = ?, updated_at = ? WHERE id = ?",
		string(id.Kind), string(id.State), id.DisplayName, id.OwnerID, id.ManagerID, attrs, micros(id.UpdatedAt), id.ID)
	if err == nil && n == 0 {
		return notFound("identity", id.ID)
	}
	if err == nil {
		t.pre.updatedIdentity(id)
	}
	return err
}

func (t *Tx) GetIdentity(ctx context.Context, id string) (*identity.Identity, error) {
	return one(ctx, t.c, "identity", id, scanIdentity, "SELECT "+identityCols+" FROM identities WHERE id = ?"+t.lock(), id)
}

// lock is what a lookup of identities appends to lock the rows it reads
// until the transaction ends: the dialect's FOR UPDATE in a read-write
// transaction, nothing in a read-only one (or where the database has one
// writer anyway). Events about one identity accepted at the same time, by
// two replicas say, then apply one after the other, each planned from what
// the other left: without it a mover that read an identity before a
// concurrent leaver committed could write it back as active.
func (t *Tx) lock() string {
	if t.enqueue == nil {
		return ""
	}
	return t.d.ForUpdate
}

func (t *Tx) GetIdentityByExternalID(ctx context.Context, source, externalID string) (*identity.Identity, error) {
	if id, ok, err := t.pre.identity(source, externalID); ok {
		return id, err
	}
	return one(ctx, t.c, "identity", source+"/"+externalID, scanIdentity,
		"SELECT "+identityCols+" FROM identities WHERE source = ? AND external_id = ?"+t.lock(), source, externalID)
}

func (t *Tx) ListIdentities(ctx context.Context, f store.IdentityFilter) ([]identity.Identity, error) {
	var where []string
	var args []any
	// Filters are fixed columns bound as parameters: nothing from the
	// request ever becomes SQL text.
	for _, c := range []struct {
		col string
		v   string
	}{{"kind", string(f.Kind)}, {"state", string(f.State)}, {"source", f.Source}, {"owner_id", f.Owner}} {
		if c.v != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.v)
		}
	}
	if f.Owner != "" {
		// identities_owner holds only identities that have an owner.
		where = append(where, "owner_id <> ''")
	}
	if f.VisibleTo != "" {
		where = append(where, "(id = ? OR owner_id = ? OR manager_id = ?)")
		args = append(args, f.VisibleTo, f.VisibleTo, f.VisibleTo)
	}
	if f.Entitlement != "" {
		where = append(where, "id IN (SELECT identity_id FROM grants WHERE entitlement = ?)")
		args = append(args, f.Entitlement)
	}
	if f.System != "" {
		// What jml records of access in the system: an account that still
		// exists there, a grant, an active credential.
		where = append(where, "id IN (SELECT identity_id FROM accounts WHERE system = ? AND status <> ?"+
			" UNION SELECT identity_id FROM grants WHERE system = ?"+
			" UNION SELECT identity_id FROM credentials WHERE system = ? AND status = ?)")
		args = append(args, f.System, string(identity.AccountDeleted), f.System, f.System, string(identity.CredentialActive))
	}
	if f.After != "" {
		where = append(where, "id > ?")
		args = append(args, f.After)
	}
	q := "SELECT " + identityCols + " FROM identities"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	q += " ORDER BY id LIMIT ?"
	args = append(args, limit)
	return queryAll(ctx, t.c, byValue(scanIdentity), q, args...)
}
