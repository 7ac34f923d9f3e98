package connector

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/secretref"
	"github.com/jml-dev/jml/internal/yamlin"
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
	// Unknown keys first, named with the keys allowed (the re-encoded
	// node has no lines to give, which would mean nothing to the reader).
	var n yaml.Node
	if err := n.Encode(m); err != nil {
		return err
	}
	if err := yamlin.Keys(&n, reflect.TypeOf(dst)); err != nil {
		return err
	}
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
	if err := secretref.Check(ref); err != nil {
		return cfg.Errorf("%s %v", setting, err)
	}
	return nil
}

// Secret resolves a reference to a connection secret (package secretref):
// a policy kept in git never holds a secret inline.
func (cfg Config) Secret(setting, ref string) (string, error) {
	v, err := secretref.Resolve(ref, cfg.Getenv)
	if err != nil {
		return "", cfg.Errorf("%s: %v", setting, err)
	}
	return v, nil
}

// CheckHTTPURL checks the URL of a system reached over HTTP: http or
// https, with a host, and plain http only to this machine, since requests
// carry credentials.
func CheckHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%q is not an http(s) URL", raw)
	}
	if u.Scheme == "http" && !Loopback(u.Hostname()) {
		return errors.New("http is allowed only to localhost; requests carry secrets, use https")
	}
	return nil
}

// Loopback reports whether host names this machine: the only place a
// connector may send secrets over plain http.
func Loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// TLS is the tls block of the connectors that dial a server: a private CA
// to verify it against and the name it must carry.
type TLS struct {
	// CAFile is a PEM file of the CAs to trust; empty: the system's.
	CAFile string `yaml:"caFile"`
	// ServerName is the name to verify; empty: the host dialled.
	ServerName string `yaml:"serverName"`
}

// ClientConfig is the client TLS configuration that verifies a server
// reached at host. Its errors name the setting, for cfg.Errorf.
func (t TLS) ClientConfig(host string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.caFile: %v", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.caFile: no certificate in %s", t.CAFile)
		}
	}
	return tc, nil
}

// DecodeTargets decodes every entitlement's target block of cfg into a T
// and checks it with check (nil: no check). Errors name the entitlement:
// "entitlement NAME: target: ...".
func DecodeTargets[T any](cfg Config, check func(T) error) (map[string]T, error) {
	out := make(map[string]T, len(cfg.Targets))
	for name, raw := range cfg.Targets {
		var tg T
		if err := Decode(raw, &tg); err != nil {
			return nil, cfg.Errorf("entitlement %q: target: %v", name, err)
		}
		if check != nil {
			if err := check(tg); err != nil {
				return nil, cfg.Errorf("entitlement %q: target: %v", name, err)
			}
		}
		out[name] = tg
	}
	return out, nil
}
