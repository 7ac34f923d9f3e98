// Package redis is the connector for Redis 6.2+ ACLs. An account is an ACL
// user; an entitlement is a named rule set (commands, key patterns,
// channels) from the policy, held as one ACL selector, so that rule sets
// add up and each can be taken away alone; the user's own root
// permissions stay empty (-@all, no keys, no channels). A credential is a
// password, sent to Redis only as its SHA-256 (#hash). Disable is
// "ACL SETUSER name off" plus CLIENT KILL USER, since Redis keeps
// connections of a user switched off authenticated.
//
// User names are allow-listed (Redis arguments are binary-safe, but a name
// with spaces cannot be a user and names should read the same in ACL LIST
// and logs); rules are allow-listed so that no rule set can switch a user
// on, remove its password or give it nopass.
package redis

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/identity"
)

// Type is the connector type name in a policy.
const Type = "redis"

type settings struct {
	Addr     string `yaml:"addr"`     // host:port
	Username string `yaml:"username"` // default "default"
	// Password is a reference (env:NAME or file:PATH); empty for a server
	// without one.
	Password string `yaml:"password"`
	TLS      struct {
		Enabled       bool `yaml:"enabled"`
		connector.TLS `yaml:",inline"`
	} `yaml:"tls"`
	// Protected are users jml must never manage (default: the connecting
	// user and "default").
	Protected []string `yaml:"protected"`
	// RotationOverlap keeps a rotated-out password working this long
	// (e.g. 10m) so clients can pick up the new one; default none.
	RotationOverlap string `yaml:"rotationOverlap"`
}

type target struct {
	Rules []string `yaml:"rules"`
}

var (
	userName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+=-]{0,127}$`)
	// rulePattern allows command, key, channel and selector-less rules; it
	// refuses on/off, passwords (>, <, #, !), nopass, reset* and
	// selector syntax.
	rulePattern = regexp.MustCompile(`^([+-]@?[a-z][a-z0-9_|-]*|~\S+|%(R|W|RW)~\S+|&\S+|allkeys|allchannels|allcommands|nocommands)$`)
)

// Conn is a Redis ACL connector.
type Conn struct {
	client    *goredis.Client
	rules     map[string][]string // entitlement -> rules
	protected map[string]bool

	overlap time.Duration

	mu    sync.Mutex
	canon map[string]selector // entitlement -> Redis's canonical selector
}

// Open validates cfg and returns a connector; it connects lazily.
func Open(ctx context.Context, cfg connector.Config) (connector.Connector, error) {
	var st settings
	if err := connector.Decode(cfg.Settings, &st); err != nil {
		return nil, cfg.Errorf("config: %v", err)
	}
	if st.Addr == "" {
		return nil, cfg.Errorf("addr is required (host:port)")
	}
	if st.Username == "" {
		st.Username = "default"
	}
	c := &Conn{rules: map[string][]string{}, protected: map[string]bool{st.Username: true, "default": true}, canon: map[string]selector{}}
	for _, p := range st.Protected {
		c.protected[p] = true
	}
	if st.RotationOverlap != "" {
		d, err := time.ParseDuration(st.RotationOverlap)
		if err != nil || d < 0 {
			return nil, cfg.Errorf("rotationOverlap: %q is not a duration", st.RotationOverlap)
		}
		c.overlap = d
	}
	targets, err := connector.DecodeTargets(cfg, func(tg target) error {
		if len(tg.Rules) == 0 {
			return errors.New("rules: at least one rule is required")
		}
		for _, r := range tg.Rules {
			if !rulePattern.MatchString(r) {
				return fmt.Errorf("rule %q is not allowed (commands +cmd -cmd +@cat, keys ~pat %%R~pat, channels &pat, allkeys, allchannels, allcommands)", r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for name, tg := range targets {
		c.rules[name] = tg.Rules
	}
	if st.Password != "" {
		if err := cfg.CheckRef("password", st.Password); err != nil {
			return nil, err
		}
	}
	if cfg.CheckOnly {
		return nil, nil
	}
	opts := &goredis.Options{Addr: st.Addr, Username: st.Username, MaxRetries: 1, PoolSize: 4, DialTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, Protocol: 2, DisableIdentity: true}
	if st.Password != "" {
		pw, err := cfg.Secret("password", st.Password)
		if err != nil {
			return nil, err
		}
		opts.Password = pw
	}
	if st.TLS.Enabled {
		host, _, _ := net.SplitHostPort(st.Addr)
		var err error
		if opts.TLSConfig, err = st.TLS.ClientConfig(host); err != nil {
			return nil, cfg.Errorf("%v", err)
		}
	}
	c.client = goredis.NewClient(opts)
	return c, nil
}

// Close closes the client.
func (c *Conn) Close() error { return c.client.Close() }

func (c *Conn) name(a connector.Account) (string, error) {
	if !userName.MatchString(a.Name) {
		return "", &identity.Error{Code: identity.Invalid, Field: "account",
			Message: fmt.Sprintf("%q is not a Redis user name jml manages (letters, digits and . _ @ + = -, at most 128)", a.Name)}
	}
	if c.protected[a.Name] {
		return "", identity.Errorf(identity.Forbidden, "account %q is protected in this system", a.Name)
	}
	return a.Name, nil
}

// CheckName implements connector.NameChecker.
func (c *Conn) CheckName(name string) error {
	_, err := c.name(connector.Account{Name: name})
	return err
}

var _ connector.NameChecker = (*Conn)(nil)

// AccountExists implements connector.Prober.
func (c *Conn) AccountExists(ctx context.Context, a connector.Account) (bool, error) {
	_, u, err := c.account(ctx, a)
	return u != nil, err
}

// Adopt implements connector.Adopter: ACL SETUSER reset takes the user
// off with no password, no commands, keys, channels or selectors, and its
// connections are killed.
func (c *Conn) Adopt(ctx context.Context, _ connector.Op, a connector.Account) error {
	name, u, err := c.account(ctx, a)
	if err != nil || u == nil {
		return err
	}
	if err := c.client.Do(ctx, "ACL", "SETUSER", name, "reset").Err(); err != nil {
		return err
	}
	return c.kill(ctx, name)
}

var (
	_ connector.Prober  = (*Conn)(nil)
	_ connector.Adopter = (*Conn)(nil)
)

// selector is an ACL selector as ACL GETUSER reports it.
type selector struct{ commands, keys, channels string }

// user is what ACL GETUSER reports, nil when the user does not exist.
type user struct {
	on        bool
	passwords []string // SHA-256 hex
	root      selector
	selectors []selector
}

func (c *Conn) getUser(ctx context.Context, name string) (*user, error) {
	res, err := c.client.Do(ctx, "ACL", "GETUSER", name).Result()
	if errors.Is(err, goredis.Nil) || (err == nil && res == nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseUser(res)
}

// account validates a's name and reads its user (nil when missing).
func (c *Conn) account(ctx context.Context, a connector.Account) (string, *user, error) {
	name, err := c.name(a)
	if err != nil {
		return "", nil, err
	}
	u, err := c.getUser(ctx, name)
	return name, u, err
}

// parseUser reads ACL GETUSER's reply (RESP2: a flat list of field names
// and values).
func parseUser(res any) (*user, error) {
	list, ok := res.([]any)
	if !ok {
		return nil, fmt.Errorf("ACL GETUSER: unexpected reply %T", res)
	}
	u := &user{}
	for i := 0; i+1 < len(list); i += 2 {
		key, _ := list[i].(string)
		switch key {
		case "flags":
			flags, _ := list[i+1].([]any)
			for _, f := range flags {
				if f == "on" {
					u.on = true
				}
			}
		case "passwords":
			pws, _ := list[i+1].([]any)
			for _, p := range pws {
				if h, ok := p.(string); ok {
					u.passwords = append(u.passwords, h)
				}
			}
		case "commands":
			u.root.commands, _ = list[i+1].(string)
		case "keys":
			u.root.keys, _ = list[i+1].(string)
		case "channels":
			u.root.channels, _ = list[i+1].(string)
		case "selectors":
			sels, _ := list[i+1].([]any)
			for _, s := range sels {
				fields, _ := s.([]any)
				var sel selector
				for j := 0; j+1 < len(fields); j += 2 {
					k, _ := fields[j].(string)
					v, _ := fields[j+1].(string)
					switch k {
					case "commands":
						sel.commands = v
					case "keys":
						sel.keys = v
					case "channels":
						sel.channels = v
					}
				}
				u.selectors = append(u.selectors, sel)
			}
		}
	}
	return u, nil
}

// canonical returns Redis's own rendering of an entitlement's selector, by
// setting it on a scratch user once per entitlement: comparing what
// GETUSER reports with it tells exactly whether a user holds the
// entitlement.
func (c *Conn) canonical(ctx context.Context, entitlement string) (selector, error) {
	c.mu.Lock()
	sel, ok := c.canon[entitlement]
	c.mu.Unlock()
	if ok {
		return sel, nil
	}
	rules, ok := c.rules[entitlement]
	if !ok {
		return sel, identity.Errorf(identity.Invalid, "entitlement %q has no target in this system", entitlement)
	}
	scratch := fmt.Sprintf("jml-canon-%d", time.Now().UnixNano())
	defer c.client.Do(context.WithoutCancel(ctx), "ACL", "DELUSER", scratch)
	args := []any{"ACL", "SETUSER", scratch, "reset", "(" + strings.Join(rules, " ") + ")"}
	if err := c.client.Do(ctx, args...).Err(); err != nil {
		return sel, fmt.Errorf("entitlement %s: rules refused by Redis: %w", entitlement, err)
	}
	u, err := c.getUser(ctx, scratch)
	if err != nil || u == nil || len(u.selectors) != 1 {
		return sel, fmt.Errorf("entitlement %s: reading its canonical selector: %v", entitlement, err)
	}
	c.mu.Lock()
	c.canon[entitlement] = u.selectors[0]
	c.mu.Unlock()
	return u.selectors[0], nil
}

func (c *Conn) EnsureAccount(ctx context.Context, _ connector.Op, a connector.Account) error {
	name, u, err := c.account(ctx, a)
	if err != nil {
		return err
	}
	if u == nil {
		// A new user: on, no password yet (it cannot log in until a
		// credential is set), no root permissions.
		return c.client.Do(ctx, "ACL", "SETUSER", name, "on", "resetpass", "-@all", "resetkeys", "resetchannels").Err()
	}
	if !u.on {
		return c.client.Do(ctx, "ACL", "SETUSER", name, "on").Err()
	}
	return nil
}

func (c *Conn) DisableAccount(ctx context.Context, _ connector.Op, a connector.Account) error {
	name, u, err := c.account(ctx, a)
	if err != nil || u == nil {
		return err
	}
	if err := c.client.Do(ctx, "ACL", "SETUSER", name, "off").Err(); err != nil {
		return err
	}
	return c.kill(ctx, name)
}

// kill closes every connection authenticated as the user.
func (c *Conn) kill(ctx context.Context, name string) error {
	err := c.client.Do(ctx, "CLIENT", "KILL", "USER", name).Err()
	if err != nil && strings.Contains(err.Error(), "No such user") {
		return nil
	}
	return err
}

func (c *Conn) DeleteAccount(ctx context.Context, _ connector.Op, a connector.Account) error {
	name, err := c.name(a)
	if err != nil {
		return err
	}
	if err := c.client.Do(ctx, "ACL", "DELUSER", name).Err(); err != nil {
		return err
	}
	// DELUSER closes the user's connections; killing again covers a
	// server that did not.
	return c.kill(ctx, name)
}

func (c *Conn) Grant(ctx context.Context, _ connector.Op, a connector.Account, entitlement string) error {
	name, err := c.name(a)
	if err != nil {
		return err
	}
	want, err := c.canonical(ctx, entitlement)
	if err != nil {
		return err
	}
	u, err := c.getUser(ctx, name)
	if err != nil {
		return err
	}
	if u == nil {
		return fmt.Errorf("grant %s: account %q does not exist", entitlement, name)
	}
	if slices.Contains(u.selectors, want) {
		return nil
	}
	return c.client.Do(ctx, "ACL", "SETUSER", name, "("+strings.Join(c.rules[entitlement], " ")+")").Err()
}

// Revoke rewrites the user's selectors without the entitlement's, in one
// MULTI/EXEC so the user is never seen without the others.
func (c *Conn) Revoke(ctx context.Context, _ connector.Op, a connector.Account, entitlement string) error {
	name, err := c.name(a)
	if err != nil {
		return err
	}
	drop, err := c.canonical(ctx, entitlement)
	if err != nil {
		return err
	}
	u, err := c.getUser(ctx, name)
	if err != nil || u == nil || !slices.Contains(u.selectors, drop) {
		return err
	}
	args := []any{"ACL", "SETUSER", name, "clearselectors"}
	for _, s := range u.selectors {
		if s != drop {
			args = append(args, s.rules())
		}
	}
	_, err = c.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.Do(ctx, args...)
		return nil
	})
	if err != nil {
		return err
	}
	// Connections keep running under the permissions they had; the next
	// command is checked against the new ones, so nothing more to do.
	return nil
}

// rules renders a selector back as an ACL SETUSER argument.
func (s selector) rules() string {
	parts := []string{s.commands}
	for _, f := range []string{s.keys, s.channels} {
		if f != "" {
			parts = append(parts, f)
		}
	}
	return "(" + strings.Join(parts, " ") + ")"
}

// SetCredential replaces the user's passwords with the credential's,
// sent as its SHA-256.
func (c *Conn) SetCredential(ctx context.Context, _ connector.Op, a connector.Account, cred connector.Credential) error {
	name, u, err := c.account(ctx, a)
	if err != nil {
		return err
	}
	if u == nil {
		return fmt.Errorf("set password: account %q does not exist", name)
	}
	sum := sha256.Sum256([]byte(cred.Secret))
	if err := c.client.Do(ctx, "ACL", "SETUSER", name, "resetpass", "#"+hex.EncodeToString(sum[:])).Err(); err != nil {
		return err
	}
	// Connections authenticated with the old password stay; rotation
	// means the old secret no longer logs in.
	return nil
}

// RevokeAll implements connector.RevokeAller: the user is switched off
// with no password and no rule sets, and its connections are killed, in
// one pipelined round trip after the lookup.
func (c *Conn) RevokeAll(ctx context.Context, _ connector.Op, a connector.Account) error {
	name, u, err := c.account(ctx, a)
	if err != nil || u == nil {
		return err
	}
	cmds, err := c.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		p.Do(ctx, "ACL", "SETUSER", name, "off", "resetpass", "clearselectors")
		p.Do(ctx, "CLIENT", "KILL", "USER", name)
		return nil
	})
	if err != nil && !(len(cmds) == 2 && cmds[0].Err() == nil && strings.Contains(fmt.Sprint(cmds[1].Err()), "No such user")) {
		return err
	}
	return nil
}

// RotationOverlap implements connector.OverlapRotator.
func (c *Conn) RotationOverlap() time.Duration { return c.overlap }

// AddCredential adds a password next to the user's others (a rotation
// with overlap).
func (c *Conn) AddCredential(ctx context.Context, _ connector.Op, a connector.Account, cred connector.Credential) error {
	name, u, err := c.account(ctx, a)
	if err != nil {
		return err
	}
	if u == nil {
		return fmt.Errorf("add password: account %q does not exist", name)
	}
	sum := sha256.Sum256([]byte(cred.Secret))
	return c.client.Do(ctx, "ACL", "SETUSER", name, "#"+hex.EncodeToString(sum[:])).Err()
}

// RetireCredentials removes, by hash, every password of the user but the
// one whose SHA-256 starts with keep.
func (c *Conn) RetireCredentials(ctx context.Context, _ connector.Op, a connector.Account, keep string) error {
	name, u, err := c.account(ctx, a)
	if err != nil || u == nil {
		return err
	}
	args := []any{"ACL", "SETUSER", name}
	for _, h := range u.passwords {
		if keep == "" || !strings.HasPrefix(h, keep) {
			args = append(args, "!"+h)
		}
	}
	if len(args) == 3 {
		return nil
	}
	return c.client.Do(ctx, args...).Err()
}

func (c *Conn) RevokeCredential(ctx context.Context, _ connector.Op, a connector.Account, _ string) error {
	name, u, err := c.account(ctx, a)
	if err != nil || u == nil {
		return err
	}
	return c.client.Do(ctx, "ACL", "SETUSER", name, "resetpass").Err()
}

// ListAccounts lists every ACL user except the protected ones. Selectors
// that match an entitlement's rule set are that entitlement; other
// selectors and any root permissions are reported under Other as ACL
// rules.
func (c *Conn) ListAccounts(ctx context.Context) ([]connector.AccountState, error) {
	names, err := c.client.Do(ctx, "ACL", "USERS").StringSlice()
	if err != nil {
		return nil, err
	}
	canon := map[selector][]string{}
	for ent := range c.rules {
		sel, err := c.canonical(ctx, ent)
		if err != nil {
			return nil, err
		}
		canon[sel] = append(canon[sel], ent)
	}
	var keep []string
	for _, n := range names {
		if !c.protected[n] && !strings.HasPrefix(n, "jml-canon-") {
			keep = append(keep, n)
		}
	}
	var out []connector.AccountState
	// GETUSER per user, pipelined in chunks.
	const chunk = 500
	for start := 0; start < len(keep); start += chunk {
		part := keep[start:min(start+chunk, len(keep))]
		cmds, err := c.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, n := range part {
				p.Do(ctx, "ACL", "GETUSER", n)
			}
			return nil
		})
		if err != nil && !errors.Is(err, goredis.Nil) {
			return nil, err
		}
		for i, cmd := range cmds {
			res, err := cmd.(*goredis.Cmd).Result()
			if errors.Is(err, goredis.Nil) || res == nil {
				continue // deleted meanwhile
			}
			if err != nil {
				return nil, err
			}
			u, err := parseUser(res)
			if err != nil {
				return nil, err
			}
			st := connector.AccountState{Name: part[i], Disabled: !u.on}
			for _, s := range u.selectors {
				if ents, ok := canon[s]; ok {
					st.Entitlements = append(st.Entitlements, ents...)
				} else {
					st.Other = append(st.Other, s.rules())
				}
			}
			if u.root.commands != "-@all" || u.root.keys != "" || u.root.channels != "" {
				st.Other = append(st.Other, strings.TrimSpace(strings.Join([]string{u.root.commands, u.root.keys, u.root.channels}, " ")))
			}
			slices.Sort(st.Entitlements)
			st.Entitlements = slices.Compact(st.Entitlements)
			slices.Sort(st.Other)
			out = append(out, st)
		}
	}
	return out, nil
}

var (
	_ connector.CredentialSetter = (*Conn)(nil)
	_ connector.OverlapRotator   = (*Conn)(nil)
	_ connector.RevokeAller      = (*Conn)(nil)
	_ connector.Lister           = (*Conn)(nil)
)
