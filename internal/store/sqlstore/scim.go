package sqlstore

// Tx's part for SCIM resources.

import (
	"context"

	"github.com/jml-dev/jml/internal/store"
)

const scimCols = "id, source, resource_type, user_name, external_id, display_name, active, data, version, created_at, updated_at, title, user_type, family_name, given_name, emails"

func scanSCIM(scan func(...any) error) (*store.SCIMResource, error) {
	var r store.SCIMResource
	var active int
	var data string
	var created, updated int64
	if err := scan(&r.ID, &r.Source, &r.Type, &r.UserName, &r.ExternalID, &r.DisplayName, &active, &data, &r.Version, &created, &updated,
		&r.Title, &r.UserType, &r.FamilyName, &r.GivenName, &r.Emails); err != nil {
		return nil, err
	}
	r.Active, r.Data, r.CreatedAt, r.UpdatedAt = active == 1, []byte(data), fromMicros(created), fromMicros(updated)
	return &r, nil
}

// putSCIMValues replaces a resource's multi-valued attribute rows.
func (t *Tx) putSCIMValues(ctx context.Context, r *store.SCIMResource, replace bool) error {
	if replace {
		if _, err := t.c.Exec(ctx, "DELETE FROM scim_values WHERE resource_id = ?", r.ID); err != nil {
			return err
		}
	}
	for _, v := range r.Values {
		if err := t.write(ctx, "INSERT INTO scim_values (resource_id, attr, type, value, display, primary_value) VALUES (?, ?, ?, ?, ?, ?)",
			r.ID, v.Attr, v.Type, v.Value, v.Display, boolInt(v.Primary)); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tx) InsertSCIM(ctx context.Context, r *store.SCIMResource) error {
	if err := t.putSCIMValues(ctx, r, false); err != nil {
		return err
	}
	_, err := t.c.Exec(ctx, "INSERT INTO scim_resources ("+scimCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		r.ID, r.Source, r.Type, r.UserName, r.ExternalID, r.DisplayName, boolInt(r.Active), string(r.Data), r.Version, micros(r.CreatedAt), micros(r.UpdatedAt),
		r.Title, r.UserType, r.FamilyName, r.GivenName, r.Emails)
	return err
}

func (t *Tx) GetSCIM(ctx context.Context, source, id string) (*store.SCIMResource, error) {
	return one(ctx, t.c, "resource", id, scanSCIM, "SELECT "+scimCols+" FROM scim_resources WHERE source = ? AND id = ?", source, id)
}

func (t *Tx) GetSCIMByUserName(ctx context.Context, source, resourceType, userName string) (*store.SCIMResource, error) {
	return one(ctx, t.c, "resource", userName, scanSCIM, "SELECT "+scimCols+" FROM scim_resources WHERE source = ? AND resource_type = ? AND user_name = ?", source, resourceType, userName)
}

func (t *Tx) UpdateSCIM(ctx context.Context, r *store.SCIMResource) error {
	n, err := t.c.Exec(ctx, "UPDATE scim_resources SET user_name = ?, external_id = ?, display_name = ?, active = ?, data = ?, version = ?, updated_at = ?, "+
		"title = ?, user_type = ?, family_name = ?, given_name = ?, emails = ? WHERE source = ? AND id = ?",
		r.UserName, r.ExternalID, r.DisplayName, boolInt(r.Active), string(r.Data), r.Version, micros(r.UpdatedAt),
		r.Title, r.UserType, r.FamilyName, r.GivenName, r.Emails, r.Source, r.ID)
	if err == nil && n == 0 {
		return notFound("resource", r.ID)
	}
	if err != nil {
		return err
	}
	return t.putSCIMValues(ctx, r, true)
}

func (t *Tx) DeleteSCIM(ctx context.Context, source, id string) (bool, error) {
	n, err := t.c.Exec(ctx, "DELETE FROM scim_resources WHERE source = ? AND id = ?", source, id)
	if err != nil || n == 0 {
		return false, err
	}
	_, err = t.c.Exec(ctx, "DELETE FROM scim_values WHERE resource_id = ?", id)
	return true, err
}

func (t *Tx) ListSCIM(ctx context.Context, q store.SCIMQuery) (int, []store.SCIMResource, error) {
	allow := filterable
	if q.Type == "Group" {
		allow = groupFilterable
	}
	where := "source = ? AND resource_type = ?"
	args := []any{q.Source, q.Type}
	if q.Filter != nil {
		cond, condArgs, err := sqlWhere(q.Filter, allow)
		if err != nil {
			return 0, nil, err
		}
		where += " AND (" + cond + ")"
		args = append(args, condArgs...)
	}
	var total int
	if err := t.row(ctx, []any{&total}, "SELECT COUNT(*) FROM scim_resources WHERE "+where, args...); err != nil {
		return 0, nil, err
	}
	order := "created_at"
	if q.SortBy != "" {
		col, err := sortColumn(q.SortBy, allow)
		if err != nil {
			return 0, nil, err
		}
		order = col
	}
	if q.Descending {
		order += " DESC"
	}
	limit := q.Limit
	if limit <= 0 {
		return total, nil, nil
	}
	out, err := queryAll(ctx, t.c, byValue(scanSCIM), "SELECT "+scimCols+" FROM scim_resources WHERE "+where+" ORDER BY "+order+", id LIMIT ? OFFSET ?", append(args, limit, q.Offset)...)
	return total, out, err
}
