package connector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/jml-dev/jml/internal/policy"
)

// Config is what a connector is opened with: one system of the policy and
// the targets of its entitlements.
type Config struct {
	System string
	Type   string
	// Settings is the system's config block from the policy.
	Settings map[string]any
	// Targets maps each entitlement of the system to its target block.
	Targets map[string]map[string]any
	// Getenv resolves env: references; nil means os.Getenv.
	Getenv func(string) string
	Logger *slog.Logger
	// CheckOnly asks for validation alone (jml policy check): resolve no
	// secret, build no client, and return a nil connector.
	CheckOnly bool
}

// ConfigFor is the connector configuration of system name in p: its
// type, its settings and the targets of its entitlements.
func ConfigFor(p *policy.Policy, name string) Config {
	sys := p.Systems[name]
	cfg := Config{System: name, Type: sys.Type, Settings: sys.Config, Targets: map[string]map[string]any{}}
	for en, ent := range p.Entitlements {
		if ent.System == name {
			cfg.Targets[en] = ent.Target
		}
	}
	return cfg
}

// Opener opens a connector for a system. Opening validates the settings
// and every target, and does not wait for the system: a target that is
// down when jml starts fails its steps, which retry, not the server.
type Opener func(ctx context.Context, cfg Config) (Connector, error)

// Errorf returns an error about system cfg.System: every configuration
// error names the system and the setting.
func (cfg Config) Errorf(format string, args ...any) error {
	return fmt.Errorf("system %q (type %s): %s", cfg.System, cfg.Type, fmt.Sprintf(format, args...))
}

// Decode decodes m strictly into dst (a struct with yaml tags): an unknown
// key is an error, so a typo in a policy is caught when it loads.
func Decode(m map[string]any, dst any) error {
	data, err := yaml.Marshal(m)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(dst); err != nil && !errors.Is(err, io.EOF) {
		// yaml's messages speak of line numbers in the re-marshalled text,
		// which mean nothing to the reader; keep what follows them.
		msg := err.Error()
		if i := strings.LastIndex(msg, ": "); strings.HasPrefix(msg, "yaml: ") && i > 0 {
			msg = strings.TrimSpace(msg[i+2:])
		}
		return errors.New(strings.TrimPrefix(msg, "yaml: "))
	}
	return nil
}

// CheckRef validates the form of a secret reference without resolving it
// (jml policy check runs where the secrets are not).
func (cfg Config) CheckRef(setting, ref string) error {
	if ref == "" {
		return cfg.Errorf("%s is required (env:NAME or file:PATH)", setting)
	}
	name, ok := strings.CutPrefix(ref, "env:")
	if !ok {
		name, ok = strings.CutPrefix(ref, "file:")
	}
	if !ok {
		return cfg.Errorf("%s must be a reference, env:NAME or file:PATH; secrets are never written in the policy", setting)
	}
	if name == "" {
		return cfg.Errorf("%s: %q names nothing", setting, ref)
	}
	return nil
}

// Secret resolves a reference to a connection secret: "env:NAME" reads the
// environment variable NAME, "file:PATH" reads the file PATH (one trailing
// newline dropped). Anything else is refused: a policy kept in git never
// holds a secret inline.
func (cfg Config) Secret(setting, ref string) (string, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if err := cfg.CheckRef(setting, ref); err != nil {
		return "", err
	}
	switch {
	case strings.HasPrefix(ref, "env:"):
		name := strings.TrimPrefix(ref, "env:")
		v := getenv(name)
		if v == "" {
			return "", cfg.Errorf("%s: environment variable %s is not set", setting, name)
		}
		return v, nil
	default: // file:, as CheckRef allows no other
		path := strings.TrimPrefix(ref, "file:")
		data, err := os.ReadFile(path)
		if err != nil {
			return "", cfg.Errorf("%s: %v", setting, err)
		}
		v := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
		if v == "" {
			return "", cfg.Errorf("%s: file %s is empty", setting, path)
		}
		return v, nil
	}
}
