// Package builtin is the connector of jml's built-in vault. The vault's
// state is jml's own store: the credentials it issued (hashes and sealed
// secrets) and the grants it holds (an AI agent's tool scopes, which
// introspection reports). The engine writes that state in the same
// transaction that marks a step done, so every operation here has nothing
// left to do in another system and succeeds: it exists so that the built-in
// vault is driven through the same interface as every other system.
package builtin

import (
	"context"

	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/policy"
)

// Type is the system type of the built-in vault in policy files.
const Type = policy.BuiltinType

// Conn is the built-in vault's connector.
type Conn struct{}

var (
	_ connector.Connector        = Conn{}
	_ connector.CredentialSetter = Conn{}
)

func (Conn) EnsureAccount(context.Context, connector.Op, connector.Account) error  { return nil }
func (Conn) DisableAccount(context.Context, connector.Op, connector.Account) error { return nil }
func (Conn) DeleteAccount(context.Context, connector.Op, connector.Account) error  { return nil }
func (Conn) Grant(context.Context, connector.Op, connector.Account, string) error  { return nil }
func (Conn) Revoke(context.Context, connector.Op, connector.Account, string) error { return nil }
func (Conn) SetCredential(context.Context, connector.Op, connector.Account, connector.Credential) error {
	return nil
}
func (Conn) RevokeCredential(context.Context, connector.Op, connector.Account, string) error {
	return nil
}

// InTransaction marks the built-in vault: its effects are the engine's own
// writes, made in the step's transaction, so the engine applies its steps
// without a separate call and exactly once.
func (Conn) InTransaction() bool { return true }
