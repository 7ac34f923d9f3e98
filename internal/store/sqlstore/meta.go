package sqlstore

// Tx's part for settings.

import (
	"context"
	"errors"
)

func (t *Tx) GetMeta(ctx context.Context, name string) (string, error) {
	var v string
	err := t.row(ctx, []any{&v}, "SELECT value FROM jml_meta WHERE name = ?", name)
	if errors.Is(err, ErrNoRows) {
		return "", nil
	}
	return v, err
}

func (t *Tx) PutMeta(ctx context.Context, name, value string) error {
	_, err := t.c.Exec(ctx, "INSERT INTO jml_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value", name, value)
	return err
}
