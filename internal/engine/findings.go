package engine

import (
	"context"
	"strings"
	"time"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/findings"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/jobs"
	"github.com/jml-dev/jml/internal/store"
)

// A finding is opened when jml sees a condition that needs a person (an
// NHI whose owner left, an account jml did not create), resolves by
// itself when the condition ends, and can be acknowledged by an admin for
// a while, after which it is open again if it still holds. Each change is
// audited. Package findings does all of it; the engine authorises the
// acknowledgement and bounds it.

// MaxAcknowledgement bounds how long an acknowledgement lasts.
const MaxAcknowledgement = findings.MaxAcknowledgement

// ReopenFindingArgs is the timer that ends an acknowledgement.
type ReopenFindingArgs = findings.ReopenArgs

// AcknowledgeFinding records that an admin has seen an unresolved finding,
// why it may stay, and until when (at most MaxAcknowledgement from now);
// the finding is then acknowledged, and open again after until unless its
// condition ended first.
func (e *Engine) AcknowledgeFinding(ctx context.Context, p Principal, id, reason string, until time.Time) (*identity.Finding, error) {
	if !Allowed(p.Role, PermOperate) {
		return nil, e.RecordRefusal(ctx, p, DecisionAcknowledge, id, identity.Errorf(identity.Forbidden, "role %s may not acknowledge findings", p.Role))
	}
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return nil, identity.FieldError("reason", "is required: say why the finding may stay")
	}
	if len(reason) > 1024 {
		return nil, identity.FieldError("reason", "is longer than 1024 bytes")
	}
	now := e.Now().UTC()
	switch {
	case until.IsZero():
		return nil, identity.FieldError("until", "is required: an acknowledgement ends")
	case !until.After(now):
		return nil, identity.FieldError("until", "%s is not in the future", until.Format(time.RFC3339))
	case until.Sub(now) > MaxAcknowledgement:
		return nil, identity.FieldError("until", "is more than a year away: an acknowledgement lasts at most %d days", int(MaxAcknowledgement/(24*time.Hour)))
	}
	until = until.UTC().Truncate(time.Microsecond)
	var out *identity.Finding
	err := e.store.Update(ctx, func(tx store.Tx) error {
		var err error
		out, err = findings.Acknowledge(ctx, tx, id, p.ID, reason, now, until, func(identityID string, data map[string]any) audit.Record {
			return auditBy(now, p, "finding.acknowledged", identityID, "", data)
		})
		return err
	})
	return out, err
}

// registerFindings has package findings declare its timer.
func (e *Engine) registerFindings(r *jobs.Registry) {
	findings.Register(r, e.findingDeps())
}

func (e *Engine) findingDeps() findings.Deps {
	return findings.Deps{Store: e.store, Now: e.Now, Log: e.log}
}

// reopenFinding runs the reopen timer as its River job does.
func (e *Engine) reopenFinding(ctx context.Context, a ReopenFindingArgs) error {
	return findings.Reopen(ctx, e.findingDeps(), a)
}
