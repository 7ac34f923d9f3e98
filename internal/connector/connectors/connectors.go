// Package connectors is the set of connector types this build of jml has,
// by the type names policies use.
package connectors

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/connector/builtin"
	"github.com/jml-dev/jml/internal/connector/ldap"
	"github.com/jml-dev/jml/internal/connector/mysql"
	"github.com/jml-dev/jml/internal/connector/postgres"
	"github.com/jml-dev/jml/internal/connector/redis"
	"github.com/jml-dev/jml/internal/connector/scim"
	"github.com/jml-dev/jml/internal/connector/webhook"
	"github.com/jml-dev/jml/internal/policy"
)

var openers = map[string]connector.Opener{
	ldap.Type:     ldap.Open,
	mysql.Type:    mysql.Open,
	postgres.Type: postgres.Open,
	redis.Type:    redis.Open,
	scim.Type:     scim.Open,
	webhook.Type:  webhook.Open,
}

// Types returns every connector type name, builtin included, sorted.
func Types() []string {
	return slices.Sorted(func(yield func(string) bool) {
		if !yield(builtin.Type) {
			return
		}
		for k := range maps.Keys(openers) {
			if !yield(k) {
				return
			}
		}
	})
}

// Open opens a connector of cfg.Type.
func Open(ctx context.Context, cfg connector.Config) (connector.Connector, error) {
	open, ok := openers[cfg.Type]
	if !ok {
		return nil, cfg.Errorf("no connector of this type (this build has: %s)", strings.Join(Types(), ", "))
	}
	return open(ctx, cfg)
}

// Check validates the connector settings and entitlement targets of every
// system of p, without resolving secrets or connecting.
func Check(p *policy.Policy) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(p.Systems)) {
		if p.Systems[name].Builtin() {
			continue
		}
		cfg := connector.ConfigFor(p, name)
		cfg.CheckOnly = true
		if _, err := Open(context.Background(), cfg); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
