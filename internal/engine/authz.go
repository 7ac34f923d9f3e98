package engine

import (
	"github.com/jml-dev/jml/internal/identity"
)

// Role is what an API principal may do.
type Role string

const (
	// RoleAdmin may do everything but decide on its own behalf.
	RoleAdmin Role = "admin"
	// RoleSource is a feed of lifecycle events (an HR system, an identity
	// provider, a CI system): it submits the events of its one source and
	// reads identities and cases.
	RoleSource Role = "source"
	// RoleApprover is a person who approves or denies access that waits
	// for approval, and reads identities and cases.
	RoleApprover Role = "approver"
	// RoleAuditor reads everything, the audit trail included.
	RoleAuditor Role = "auditor"
	// RoleMember is a person's own token: it reads their identity and the
	// identities they own or manage, and reveals the credentials of
	// themselves and of the identities they own.
	RoleMember Role = "member"
	// RoleResource is a protected resource (an API that accepts jml-issued
	// keys): it introspects credentials (RFC 7662 §2.1) and nothing else.
	RoleResource Role = "resource"
)

// Roles lists every role.
var Roles = []Role{RoleAdmin, RoleSource, RoleApprover, RoleAuditor, RoleMember, RoleResource}

func validRole(r Role) bool {
	for _, v := range Roles {
		if r == v {
			return true
		}
	}
	return false
}

// Principal is who calls the engine: an API token, an operating-system
// user running the CLI against the store, or jml itself. Audit records name
// it by Actor (actor.go).
type Principal struct {
	ID   string // token ID; "cli:USER" for the CLI; "jml" for the engine's own actions
	Name string // the token's name
	Role Role
	// Source is the one source a source token submits events of.
	Source string
	// IdentityID binds the token to an identity: a person using jml, or a
	// service acting through it. Such a token authenticates only while the
	// identity is active.
	IdentityID string
	// Endpoint is set by a source's own endpoint (the SCIM server, a
	// signed webhook) to the source it serves: only then may events of a
	// source with an endpoint (Config.EndpointSources) be submitted.
	Endpoint string
	// Token: ID is the API token the principal authenticated with.
	Token bool
}

// Permission is what an API operation needs of its caller: what the
// caller's role must allow (permissions) and how far (Reach).
type Permission string

const (
	PermSubmit     Permission = "submit"
	PermRead       Permission = "read"
	PermDecide     Permission = "decide"
	PermAudit      Permission = "audit"
	PermReveal     Permission = "reveal"
	PermIntrospect Permission = "introspect"
	PermTokens     Permission = "tokens"
	PermOperate    Permission = "operate"
)

// phrases say what each permission lets a principal do, for error messages.
var phrases = map[Permission]string{
	PermSubmit: "submit events", PermRead: "read identities and cases", PermDecide: "approve or deny",
	PermAudit: "read the audit trail", PermReveal: "reveal credentials", PermIntrospect: "introspect credentials",
	PermTokens: "manage API tokens", PermOperate: "operate jml (retry cases, release holds, acknowledge findings)",
}

// String is what the permission lets a principal do.
func (a Permission) String() string {
	if p, ok := phrases[a]; ok {
		return p
	}
	return string(a)
}

// Reach is how far a role's permission extends.
type Reach int

const (
	// Nowhere: the role lacks the permission.
	Nowhere Reach = iota
	// Own: only on what is the principal's own. For submit, the events of
	// the token's source; for read, the principal's identity and those it
	// owns or manages (Principal.Sees); for reveal, the credentials of the
	// principal's own human identity and of the identities it owns
	// (Principal.Holds).
	Own
	// Anywhere: on every identity, case and source.
	Anywhere
)

// permissions is the whole authorisation model of the API: what each role
// may do, and how far. Every route names one permission (package httpapi);
// the engine adds what no table can say (decisions are made by people,
// never on their own behalf: see Decide).
var permissions = map[Permission]map[Role]Reach{
	PermSubmit:     {RoleAdmin: Anywhere, RoleSource: Own},
	PermRead:       {RoleAdmin: Anywhere, RoleSource: Anywhere, RoleApprover: Anywhere, RoleAuditor: Anywhere, RoleMember: Own},
	PermDecide:     {RoleAdmin: Anywhere, RoleApprover: Anywhere},
	PermAudit:      {RoleAdmin: Anywhere, RoleAuditor: Anywhere},
	PermReveal:     {RoleAdmin: Anywhere, RoleMember: Own},
	PermIntrospect: {RoleAdmin: Anywhere, RoleResource: Anywhere},
	PermTokens:     {RoleAdmin: Anywhere},
	PermOperate:    {RoleAdmin: Anywhere},
}

// ReachOf reports how far role r may use permission a.
func ReachOf(r Role, a Permission) Reach {
	return permissions[a][r]
}

// Allowed reports whether role r has permission a at all.
func Allowed(r Role, a Permission) bool {
	return ReachOf(r, a) != Nowhere
}

// Sees reports whether p, limited to its own, may read id: id is p's
// identity, or one p's identity owns or manages.
func (p Principal) Sees(id *identity.Identity) bool {
	me := p.IdentityID
	return me != "" && (id.ID == me || id.OwnerID == me || id.ManagerID == me)
}

// Holds reports whether p may reveal id's credentials as their holder: id
// is p's own human identity, or an identity p's identity owns. A manager
// reads a report's identity but does not hold its secrets.
func (p Principal) Holds(id *identity.Identity) bool {
	me := p.IdentityID
	return me != "" && (id.OwnerID == me || (id.ID == me && id.Kind == identity.Human))
}

// MaySee reports whether p may read id under permission a's reach.
func (p Principal) MaySee(a Permission, id *identity.Identity) bool {
	switch ReachOf(p.Role, a) {
	case Anywhere:
		return true
	case Own:
		return p.Sees(id)
	}
	return false
}
