package identity

import "time"

// Grant is an identity holding an entitlement.
type Grant struct {
	IdentityID  string `json:"-"`
	Entitlement string `json:"entitlement"`
	System      string `json:"system"`
	// Reason says why it is held: "birthright:RULE", "request", "manual".
	Reason    string    `json:"reason"`
	CaseID    string    `json:"caseId"`
	GrantedAt time.Time `json:"grantedAt"`
	// ExpiresAt is zero when the grant does not expire.
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	// ApprovedBy names the principal that approved it, when it needed one.
	ApprovedBy string `json:"approvedBy,omitempty"`
}

// CredentialStatus is where a credential is in its life.
type CredentialStatus string

const (
	CredentialActive  CredentialStatus = "active"
	CredentialRevoked CredentialStatus = "revoked"
)

// Credential is a secret an identity holds. jml keeps only a hash (API keys)
// or ciphertext (recoverable secrets); the secret itself never appears here.
type Credential struct {
	ID         string           `json:"id"`
	IdentityID string           `json:"identityId"`
	Rule       string           `json:"rule"`
	System     string           `json:"system"`
	Type       string           `json:"type"`
	Status     CredentialStatus `json:"status"`
	// Marker is the public marker every secret of the type starts with
	// ("jml_" for API keys, "" for passwords), never a character of the
	// secret itself. Fingerprint (the first 8 bytes of the secret's SHA-256,
	// in hex) tells one credential from another in a log or a leak report.
	Marker      string    `json:"marker,omitempty"`
	Fingerprint string    `json:"fingerprint"`
	IssuedAt    time.Time `json:"issuedAt"`
	ExpiresAt   time.Time `json:"expiresAt,omitzero"`
	RevokedAt   time.Time `json:"revokedAt,omitzero"`
	// Revealed is true once the secret has been handed out.
	Revealed bool   `json:"revealed"`
	CaseID   string `json:"caseId"`
}

// AccountStatus is the state of an identity's account in a system.
type AccountStatus string

const (
	AccountActive   AccountStatus = "active"
	AccountDisabled AccountStatus = "disabled"
	// AccountCreating: jml found no account of the name and is creating
	// it; written before the create call, so that after a crash between
	// the call and its record the account is still known as jml's.
	AccountCreating AccountStatus = "creating"
	// AccountDeleted: removed from the system after the system's
	// retention; the row stays as evidence.
	AccountDeleted AccountStatus = "deleted"
)

// Account is an identity's account in one system.
type Account struct {
	IdentityID string        `json:"-"`
	System     string        `json:"system"`
	Status     AccountStatus `json:"status"`
	UpdatedAt  time.Time     `json:"updatedAt"`
}

// Finding is a gap between what should be and what is.
type Finding struct {
	ID         string `json:"id"`
	Kind       string `json:"kind"`
	IdentityID string `json:"identityId"`
	// System names the system of a finding about an account there; ""
	// for one about the identity as a whole.
	System    string    `json:"system,omitempty"`
	Message   string    `json:"message"`
	CreatedAt time.Time `json:"createdAt"`
	// State is open, acknowledged or resolved (FindingState).
	State FindingState `json:"state"`
	// ResolvedAt and Resolution: when the condition ended, and why.
	ResolvedAt time.Time `json:"resolvedAt,omitzero"`
	Resolution string    `json:"resolution,omitempty"`
	// An acknowledgement: who, why, when, and until when; after AckUntil
	// the finding is open again if it is still unresolved.
	AckedBy   string    `json:"acknowledgedBy,omitempty"`
	AckReason string    `json:"acknowledgedReason,omitempty"`
	AckedAt   time.Time `json:"acknowledgedAt,omitzero"`
	AckUntil  time.Time `json:"acknowledgedUntil,omitzero"`
}

// FindingState is where a finding is in its lifecycle.
type FindingState string

const (
	FindingOpen         FindingState = "open"
	FindingAcknowledged FindingState = "acknowledged"
	FindingResolved     FindingState = "resolved"
)

// StateOf derives a finding's state from its times.
func (f *Finding) StateOf() FindingState {
	switch {
	case !f.ResolvedAt.IsZero():
		return FindingResolved
	case !f.AckUntil.IsZero():
		return FindingAcknowledged
	}
	return FindingOpen
}

// Finding kinds.
const (
	// FindingOwnerNotActive: an NHI that has not left has an owner that is
	// not active. It resolves when the owner is active again, the NHI has
	// a new active owner, or the NHI leaves.
	FindingOwnerNotActive = "owner_not_active"
	// FindingAccountExistsUnmanaged: a joiner's account name exists in a
	// system, and jml did not create it; jml left it untouched. It
	// resolves when jml holds the account (the other was removed and jml
	// created its own, or jml adopted it) or the identity leaves.
	FindingAccountExistsUnmanaged = "account_exists_unmanaged"
	// FindingAccountAdopted: a system with adopt: true had such an
	// account, and jml reset and took it over: someone should review what
	// the account was used for. An admin acknowledges it; it resolves when
	// the identity leaves.
	FindingAccountAdopted = "account_adopted"
	// FindingAttributesInvalid: an identity that has not left holds an
	// attribute value that does not fit the type (or values) the policy
	// now declares, after the policy changed; its access was left as it
	// was. It resolves when an event gives it attributes that fit, the
	// policy accepts them again, or the identity leaves.
	FindingAttributesInvalid = "attributes_invalid"
)
