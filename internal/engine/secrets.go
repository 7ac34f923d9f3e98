package engine

// The secrets jml issues: their IDs, their generation, their markers.

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/vault"
)

func credentialID(caseID string, seq int) string {
	h := sha256.Sum256([]byte(caseID + "/" + strconv.Itoa(seq)))
	return "cred_" + hex.EncodeToString(h[:13])
}

func (e *Engine) newSecret(s *cases.Step) (string, error) {
	rule := e.Policy().CredentialRule(s.Rule)
	if rule == nil {
		return "", identity.Errorf(identity.Conflict, "credential rule %q is no longer in the policy", s.Rule)
	}
	if rule.Type == policy.Password {
		return vault.NewPassword(e.rand)
	}
	return vault.NewSecret(e.rand, vault.APIKeyPrefix)
}

// secretMarker is the public marker secrets of type t start with.
func secretMarker(t policy.CredentialType) string {
	if t == policy.APIKey {
		return vault.APIKeyPrefix
	}
	return ""
}
