package engine

// The systems' connectors: opened from the policy's system blocks, kept
// while their configuration is unchanged, replaced (and the old ones
// closed once their steps have had time to finish) when a reload changes
// them.

import (
	"context"
	"errors"
	"io"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/connector/builtin"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
)

// SetPolicy replaces the policy for events accepted from now on. Every
// system must have a connector: built-in systems get the vault's, others
// are opened with Config.Open; a system whose type, settings and targets
// are unchanged keeps its open connector. It is safe to call while the
// engine runs (jml serve calls it on SIGHUP); cases already planned keep
// their steps. If any system fails to open, nothing changes.
func (e *Engine) SetPolicy(p *policy.Policy) error {
	e.setPolicy.Lock()
	defer e.setPolicy.Unlock()
	old := *e.conns.Load()
	conns := make(map[string]connector.Connector, len(p.Systems))
	opened := map[string]openedConn{}
	var fresh []connector.Connector
	closeAll := func(cs []connector.Connector) {
		for _, c := range cs {
			if cl, ok := c.(io.Closer); ok {
				cl.Close()
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.Systems)) {
		sys := p.Systems[name]
		switch {
		case e.fixed[name]:
			conns[name] = old[name]
		case sys.Builtin():
			conns[name] = builtin.Conn{}
		case e.noSystems:
			// Never called: nothing is opened, no secret resolved.
		default:
			cfg := connector.ConfigFor(p, name)
			cfg.Getenv, cfg.Logger = e.getenv, e.log.With("system", name)
			if prev, ok := e.opened[name]; ok && prev.sameAs(cfg) {
				conns[name], opened[name] = prev.conn, prev
				continue
			}
			if e.open == nil {
				closeAll(fresh)
				return identity.Errorf(identity.Invalid, "system %q: no connector for type %q (this build has: builtin)", name, sys.Type)
			}
			c, err := e.open(context.Background(), cfg)
			if err != nil {
				closeAll(fresh)
				return identity.Errorf(identity.Invalid, "%v", err)
			}
			fresh = append(fresh, c)
			conns[name], opened[name] = c, openedConn{cfg: cfg, conn: c}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.Systems)) {
		if _, ok := conns[name].(connector.Adopter); p.Systems[name].Adopt && !ok && !e.noSystems {
			closeAll(fresh)
			return identity.Errorf(identity.Invalid, "system %q: adopt: type %s cannot take over existing accounts; remove adopt, or create the accounts through jml", name, p.Systems[name].Type)
		}
	}
	// Connectors the new policy dropped or replaced may still be running a
	// step; they are closed once a step has had time to finish.
	var retired []connector.Connector
	for name, prev := range e.opened {
		if cur, ok := opened[name]; !ok || cur.conn != prev.conn {
			retired = append(retired, prev.conn)
		}
	}
	if len(retired) > 0 {
		e.clock.AfterFunc(retireAfter, func() { closeAll(retired) })
	}
	e.opened = opened
	e.conns.Store(&conns)
	e.policy.Store(p)
	return nil
}

// retireAfter is how long a replaced connector stays open for steps that
// were already calling it.
const retireAfter = 2 * time.Minute

// Close waits for cases started on the fast path, then closes every
// connector the engine opened.
func (e *Engine) Close() error {
	e.fastRuns.Wait()
	e.setPolicy.Lock()
	defer e.setPolicy.Unlock()
	var errs []error
	for _, o := range e.opened {
		if cl, ok := o.conn.(io.Closer); ok {
			errs = append(errs, cl.Close())
		}
	}
	e.opened = map[string]openedConn{}
	return errors.Join(errs...)
}

type openedConn struct {
	cfg  connector.Config
	conn connector.Connector
}

func (o openedConn) sameAs(cfg connector.Config) bool {
	return o.cfg.Type == cfg.Type && reflect.DeepEqual(o.cfg.Settings, cfg.Settings) && reflect.DeepEqual(o.cfg.Targets, cfg.Targets)
}

// conn returns the connector of a system, or nil.
func (e *Engine) conn(system string) connector.Connector { return (*e.conns.Load())[system] }

// callsSystems refuses, in an engine made with Config.NoSystems, the work
// that needs the systems' connectors: planning (which asks them what names
// they hold and how they disable) and running steps.
func (e *Engine) callsSystems() error {
	if e.noSystems {
		return identity.Errorf(identity.Unavailable, "this command opens no system's connector, so it neither plans nor runs cases (jml serve, jml event and jml import do)")
	}
	return nil
}
