package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/findings"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/store"
)

// Attribute values are checked against the types the policy declares
// where the engine takes an event (apply and schedule), so every edge (the
// API, jml event, SCIM, HR imports, webhooks) refuses the same values the
// same way, and a value the rules would misread never plans a revocation.
// A policy that changes under stored identities does not revoke their
// access either: CheckStoredAttributes reports each one as a finding.

// checkAttributes refuses a joiner or mover that would leave the identity
// with an attribute value the policy's declarations do not admit. A
// joiner's attributes are its whole set. A mover's are merged into what
// the identity holds, and the merged set is checked: the mover's own
// values first, then the stored values it keeps, since its plan reads
// them all (a value stored before the policy changed must be set anew or
// removed, or the mover would plan from a value the rules misread).
// Leavers and suspends only take access away and carry no attributes;
// a resume carries none either (its stored values are reported as a
// finding instead), so neither is refused for them.
func (e *Engine) checkAttributes(ev identity.Event, cur *identity.Identity) error {
	pol := e.Policy()
	if !pol.DeclaresAttributes() || (ev.Type != identity.Joiner && ev.Type != identity.Mover) {
		return nil
	}
	if err := pol.CheckAttributes(ev.Attributes); err != nil {
		return err
	}
	if ev.Type != identity.Mover || cur == nil {
		return nil
	}
	kept := make(map[string]any, len(cur.Attributes))
	for k, v := range cur.Attributes {
		if _, set := ev.Attributes[k]; !set {
			kept[k] = v
		}
	}
	if err := pol.CheckAttributes(kept); err != nil {
		var ie *identity.Error
		if !errors.As(err, &ie) {
			return err
		}
		return identity.FieldError(ie.Field, "the value the identity holds no longer fits the policy (%s): send a value that fits with this mover, or null to remove it", ie.Message)
	}
	return nil
}

// attributesFinding is the message of an attributes_invalid finding about
// id under pol, "" when its attributes fit.
func attributesFinding(pol *policy.Policy, id *identity.Identity) string {
	err := pol.CheckAttributes(id.Attributes)
	if err == nil {
		return ""
	}
	return identity.ErrorMessage(err) + "; its access is left as it was until an event gives it a value that fits, the policy accepts it again, or it leaves"
}

// AttributeReport is what CheckStoredAttributes found.
type AttributeReport struct {
	// Invalid counts the identities whose attributes do not fit; Opened
	// and Resolved the findings it opened and resolved.
	Invalid, Opened, Resolved int
}

// CheckStoredAttributes checks the attributes of every identity that has
// not left against the policy in force, after the policy changed (jml
// serve runs it at start and on each reload). Each identity whose values
// no longer fit gets one attributes_invalid finding; its access is not
// touched (nothing is planned). Findings of identities that fit again are
// resolved, and one whose message no longer says what is wrong is
// resolved and opened anew with the current one. Each change is made with
// the identity locked and checked again, so an event accepted meanwhile is
// never contradicted.
func (e *Engine) CheckStoredAttributes(ctx context.Context) (AttributeReport, error) {
	e.attrScan.Lock()
	defer e.attrScan.Unlock()
	pol := e.Policy()
	var rep AttributeReport
	// Open findings that no longer hold, or no longer say why.
	for after := ""; ; {
		var page []identity.Finding
		stale := map[string]bool{} // identity ID -> resolve its finding
		err := e.store.View(ctx, func(tx store.Tx) error {
			var err error
			page, err = tx.ListFindings(ctx, store.FindingFilter{Kind: identity.FindingAttributesInvalid, OpenOnly: true, Paged: true, After: after})
			if err != nil {
				return err
			}
			for _, f := range page {
				id, err := tx.GetIdentity(ctx, f.IdentityID)
				if store.IsNotFound(err) {
					continue
				}
				if err != nil {
					return err
				}
				if id.State == identity.Departed || attributesFinding(pol, id) != f.Message {
					stale[f.IdentityID] = true
				}
			}
			return nil
		})
		if err != nil {
			return rep, err
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1].ID
		if len(stale) == 0 {
			continue
		}
		n := 0 // counted by the transaction that commits (a retry runs it again)
		err = e.store.Update(ctx, func(tx store.Tx) error {
			now := e.Now().UTC()
			n = 0
			var recs []audit.Record
			for idn := range stale {
				id, err := tx.GetIdentity(ctx, idn) // locks it against events
				if err != nil {
					return err
				}
				cause := "the policy now accepts its attributes"
				switch msg := attributesFinding(pol, id); {
				case id.State == identity.Departed:
					cause = "the identity left"
				case msg != "":
					cause = "the policy changed; a new finding says what does not fit now"
				}
				done, err := findings.Resolve(ctx, tx, idn, []string{identity.FindingAttributesInvalid}, "", now, cause)
				if err != nil {
					return err
				}
				n += len(done)
				recs = append(recs, done...)
			}
			return tx.AppendAudit(ctx, recs...)
		})
		if err != nil {
			return rep, err
		}
		rep.Resolved += n
	}
	if !pol.DeclaresAttributes() {
		return rep, nil
	}
	// Identities whose values do not fit.
	for after := ""; ; {
		var page []identity.Identity
		var invalid []string
		err := e.store.View(ctx, func(tx store.Tx) error {
			var err error
			page, err = tx.ListIdentities(ctx, store.IdentityFilter{After: after, Limit: 1000})
			for i := range page {
				if page[i].State != identity.Departed && attributesFinding(pol, &page[i]) != "" {
					invalid = append(invalid, page[i].ID)
				}
			}
			return err
		})
		if err != nil {
			return rep, err
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1].ID
		if len(invalid) == 0 {
			continue
		}
		bad, opened := 0, 0
		err = e.store.Update(ctx, func(tx store.Tx) error {
			now := e.Now().UTC()
			bad, opened = 0, 0
			var recs []audit.Record
			for _, idn := range invalid {
				id, err := tx.GetIdentity(ctx, idn) // locks it against events
				if err != nil {
					return err
				}
				msg := attributesFinding(pol, id)
				if id.State == identity.Departed || msg == "" {
					continue
				}
				bad++
				f := &identity.Finding{ID: e.newID("fnd_"), Kind: identity.FindingAttributesInvalid, IdentityID: id.ID, Message: msg, CreatedAt: now}
				rec, err := findings.Open(ctx, tx, f, map[string]any{"message": msg})
				if err != nil {
					return err
				}
				opened += len(rec)
				recs = append(recs, rec...)
			}
			return tx.AppendAudit(ctx, recs...)
		})
		if err != nil {
			return rep, err
		}
		rep.Invalid += bad
		rep.Opened += opened
	}
	e.metrics.findings.Add(float64(rep.Opened))
	return rep, nil
}

// String is the report as a log line reads it.
func (r AttributeReport) String() string {
	return fmt.Sprintf("%d identities hold attributes that do not fit the policy (%d findings opened, %d resolved)", r.Invalid, r.Opened, r.Resolved)
}
