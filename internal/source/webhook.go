// Package source turns what systems of record send into lifecycle events.
// A webhook source (a CI/CD system, an agent registry) POSTs JSON signed
// with its secret; the server's config maps the payload to an event with
// CEL expressions over `payload`, compiled when the config loads.
package source

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/secretref"
	"github.com/jml-dev/jml/internal/signature"
)

// WebhookConfig is one webhook source in jml.yaml.
type WebhookConfig struct {
	Name         string `yaml:"name"`
	Secret       string `yaml:"secret"`       // env:NAME or file:PATH, at least 16 bytes
	ReplayWindow string `yaml:"replayWindow"` // default 5m
	// When, if set, is a CEL condition; a payload for which it is false is
	// acknowledged and ignored.
	When string `yaml:"when"`
	// Map holds CEL expressions over payload for the event's fields; type,
	// id and externalId are required.
	Map map[string]string `yaml:"map"`
}

// fields an event's mapping may set, and what each must evaluate to.
var fields = map[string]string{
	"type": "string", "id": "string", "externalId": "string", "kind": "string", "owner": "string",
	"ownerSource": "string", "manager": "string", "displayName": "string", "attributes": "map", "effectiveAt": "timestamp",
}

// Webhook is a compiled webhook source.
type Webhook struct {
	Name   string
	secret []byte
	window time.Duration
	when   cel.Program
	progs  map[string]cel.Program
}

// CompileWebhook validates and compiles a webhook source; every error
// names the source and the field.
func CompileWebhook(cfg WebhookConfig, getenv func(string) string) (*Webhook, error) {
	errf := func(format string, args ...any) error {
		return identity.Errorf(identity.Invalid, "source %q: %s", cfg.Name, fmt.Sprintf(format, args...))
	}
	if err := identity.ValidName("name", cfg.Name); err != nil {
		return nil, identity.Errorf(identity.Invalid, "source: %v", err)
	}
	w := &Webhook{Name: cfg.Name, window: 5 * time.Minute, progs: map[string]cel.Program{}}
	if cfg.ReplayWindow != "" {
		d, err := time.ParseDuration(cfg.ReplayWindow)
		if err != nil || d <= 0 || d > time.Hour {
			return nil, errf("replayWindow: %q is not a duration between 0 and 1h", cfg.ReplayWindow)
		}
		w.window = d
	}
	secret, err := secretref.Resolve(cfg.Secret, getenv)
	if err != nil {
		return nil, errf("secret %v", err)
	}
	if len(secret) < 16 {
		return nil, errf("secret: at least 16 bytes, for HMAC-SHA256")
	}
	w.secret = []byte(secret)
	env, err := cel.NewEnv(cel.Variable("payload", cel.DynType))
	if err != nil {
		return nil, err
	}
	compile := func(field, src string) (cel.Program, error) {
		ast, iss := env.Compile(src)
		if iss.Err() != nil {
			return nil, errf("%s: %v", field, iss.Err())
		}
		return env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	}
	if cfg.When != "" {
		if w.when, err = compile("when", cfg.When); err != nil {
			return nil, err
		}
	}
	for _, f := range []string{"type", "id", "externalId"} {
		if cfg.Map[f] == "" {
			return nil, errf("map.%s is required", f)
		}
	}
	for _, f := range slices.Sorted(maps.Keys(cfg.Map)) {
		if _, ok := fields[f]; !ok {
			return nil, errf("map.%s: not an event field (want one of %v)", f, slices.Sorted(maps.Keys(fields)))
		}
		if w.progs[f], err = compile("map."+f, cfg.Map[f]); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Verify checks a request's signature and freshness.
func (w *Webhook) Verify(h http.Header, body []byte, now time.Time) error {
	if err := signature.Verify(w.secret, h, body, now, w.window); err != nil {
		return identity.Errorf(identity.Unauthorized, "source %s: %v", w.Name, err)
	}
	return nil
}

// Map turns a payload into an event; ignored is true when the source's
// when condition is false. Errors name the mapping field.
func (w *Webhook) Map(body []byte) (ev identity.Event, ignored bool, err error) {
	var payload any
	if err := json.Unmarshal(body, &payload); err != nil {
		return ev, false, identity.Errorf(identity.Invalid, "payload is not JSON: %v", err)
	}
	act := map[string]any{"payload": payload}
	if w.when != nil {
		v, _, err := w.when.Eval(act)
		if err != nil {
			return ev, false, identity.Errorf(identity.Invalid, "source %s: when: %v", w.Name, err)
		}
		if b, ok := v.Value().(bool); !ok {
			return ev, false, identity.Errorf(identity.Invalid, "source %s: when: gave %s, want a boolean", w.Name, v.Type())
		} else if !b {
			return ev, true, nil
		}
	}
	ev.Source = w.Name
	for f, prog := range w.progs {
		v, _, err := prog.Eval(act)
		if err != nil {
			return ev, false, identity.Errorf(identity.Invalid, "source %s: map.%s: %v", w.Name, f, err)
		}
		if err := set(&ev, f, v); err != nil {
			return ev, false, identity.Errorf(identity.Invalid, "source %s: map.%s: %v", w.Name, f, err)
		}
	}
	return ev, false, nil
}

func set(ev *identity.Event, f string, v ref.Val) error {
	want := fields[f]
	switch want {
	case "string":
		s, ok := v.Value().(string)
		if !ok {
			return fmt.Errorf("gave %s, want a string", v.Type())
		}
		switch f {
		case "type":
			ev.Type = identity.EventType(s)
		case "id":
			ev.ID = s
		case "externalId":
			ev.ExternalID = s
		case "kind":
			ev.Kind = identity.Kind(s)
		case "owner":
			ev.Owner = s
		case "ownerSource":
			ev.OwnerSource = s
		case "manager":
			ev.Manager = s
		case "displayName":
			ev.DisplayName = s
		}
	case "map":
		m, err := v.ConvertToNative(mapType)
		if err != nil {
			return fmt.Errorf("gave %s, want a map", v.Type())
		}
		ev.Attributes = m.(map[string]any)
	case "timestamp":
		switch x := v.Value().(type) {
		case time.Time:
			ev.EffectiveAt = &x
		case string:
			t, err := time.Parse(time.RFC3339, x)
			if err != nil {
				return fmt.Errorf("%q is not an RFC 3339 time", x)
			}
			ev.EffectiveAt = &t
		default:
			if v == types.NullValue {
				return nil
			}
			return fmt.Errorf("gave %s, want a timestamp or RFC 3339 string", v.Type())
		}
	}
	return nil
}

var mapType = reflect.TypeOf(map[string]any{})
