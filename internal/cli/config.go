package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/scimserver"
	"github.com/jml-dev/jml/internal/source"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/yamlin"
)

// Config is the server configuration file (jml.yaml). Precedence for each
// setting: command-line flag, then environment variable, then this file,
// then the default.
type Config struct {
	// Policy is the policy file, relative to the config file.
	Policy string `yaml:"policy"`
	// DB is sqlite:PATH or a postgres:// URL (env JML_DB). Relative SQLite
	// paths are relative to the working directory.
	DB string `yaml:"db"`
	// Addr is where the API listens.
	Addr string `yaml:"addr"`
	// MasterKeyFile holds the vault's AES-256 key when JML_MASTER_KEY is
	// not set; on SQLite it is created on first start.
	MasterKeyFile string `yaml:"masterKeyFile"`
	Jobs          struct {
		Workers       int           `yaml:"workers"`
		FetchCooldown time.Duration `yaml:"fetchCooldown"`
		PollInterval  time.Duration `yaml:"pollInterval"`
		Timeout       time.Duration `yaml:"timeout"`
		// RescueStuckAfter: a job running this long died with its
		// process and is retried.
		RescueStuckAfter time.Duration `yaml:"rescueStuckAfter"`
		// CallTimeout bounds each call to a system (default 1.5s): a
		// system that does not answer by then fails the attempt, which
		// is retried, and the case says what it waits on.
		CallTimeout time.Duration `yaml:"callTimeout"`
		// BuiltinAsJobs applies built-in vault steps in River jobs instead
		// of the accepting transaction (slower; exercises the job path).
		BuiltinAsJobs bool `yaml:"builtinAsJobs"`
		// ExpirySweep is how often one replica looks for grants past
		// their expiry that no timer revoked (default 1m).
		ExpirySweep time.Duration `yaml:"expirySweep"`
	} `yaml:"jobs"`
	SQLite struct {
		// Synchronous is FULL (default) or NORMAL.
		Synchronous string `yaml:"synchronous"`
	} `yaml:"sqlite"`
	// Webhooks are sources that POST events to /v1/sources/{name}/webhook,
	// signed with their secret and mapped by CEL (docs/sources.md).
	Webhooks []source.WebhookConfig `yaml:"webhooks"`
	// Guards are mass-change guards of sources whose events arrive one at
	// a time (docs/hr-import.md#the-mass-change-guard).
	Guards []GuardConfig `yaml:"guards"`
	// SCIM sources provision at /scim/{name}/v2 (docs/scim.md).
	SCIM struct {
		Sources []scimserver.SourceConfig `yaml:"sources"`
	} `yaml:"scim"`
	// Introspection configures POST /v1/introspect, which answers only
	// resource (and admin) tokens.
	Introspection struct {
		// Claims are members the answer carries beyond active, scope,
		// exp, iat, sub, client_id and token_type: any of username, iss,
		// credential_id, identity_kind, owner.
		Claims []string `yaml:"claims"`
	} `yaml:"introspection"`
	Log struct {
		Level  string `yaml:"level"`  // debug, info, warn, error
		Format string `yaml:"format"` // text or json
	} `yaml:"log"`

	dir string // the config file's directory
}

// endpointSources names the sources whose events come only through their
// own endpoint: every SCIM source and every webhook source.
func (c *Config) endpointSources() map[string]string {
	out := map[string]string{}
	for _, sc := range c.SCIM.Sources {
		out[sc.Name] = "/scim/" + sc.Name + "/v2"
	}
	for _, w := range c.Webhooks {
		out[w.Name] = "POST /v1/sources/" + w.Name + "/webhook, signed"
	}
	return out
}

// GuardConfig is one source's mass-change guard.
type GuardConfig struct {
	Source             string `yaml:"source"`
	engine.SourceGuard `yaml:",inline"`
}

// DefaultDB is the store used when nothing else is given.
const DefaultDB = "sqlite:jml.db"

// LoadConfig reads path ("" gives the defaults) and fills defaults.
func LoadConfig(path string) (*Config, error) {
	c := &Config{}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := yamlin.Decode(data, c); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		c.dir = filepath.Dir(path)
		// Paths in a config file are relative to the file, so that every
		// command given the file finds the same store and key wherever it
		// runs from.
		if p, ok := strings.CutPrefix(c.DB, "sqlite:"); ok && p != "" && !filepath.IsAbs(p) && !strings.HasPrefix(p, "//") {
			c.DB = "sqlite:" + filepath.Join(c.dir, p)
		}
		if c.MasterKeyFile != "" && !filepath.IsAbs(c.MasterKeyFile) {
			c.MasterKeyFile = filepath.Join(c.dir, c.MasterKeyFile)
		}
	}
	return c, c.defaults()
}

func (c *Config) defaults() error {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8080"
	}
	if c.MasterKeyFile == "" {
		c.MasterKeyFile = filepath.Join(c.dir, "jml.key")
	}
	if c.Jobs.FetchCooldown == 0 {
		c.Jobs.FetchCooldown = store.DefaultFetchCooldown
	}
	if c.Jobs.PollInterval == 0 {
		c.Jobs.PollInterval = store.DefaultPollInterval
	}
	if c.Jobs.Timeout == 0 {
		c.Jobs.Timeout = time.Minute
	}
	if c.Jobs.RescueStuckAfter == 0 {
		c.Jobs.RescueStuckAfter = 5 * time.Minute
	}
	if c.Jobs.ExpirySweep == 0 {
		c.Jobs.ExpirySweep = engine.DefaultExpirySweep
	}
	if c.Jobs.ExpirySweep < time.Second {
		return fmt.Errorf("config jobs.expirySweep (%s) must be at least 1s", c.Jobs.ExpirySweep)
	}
	if c.Jobs.RescueStuckAfter <= c.Jobs.Timeout {
		return fmt.Errorf("config jobs.rescueStuckAfter (%s) must be longer than jobs.timeout (%s)", c.Jobs.RescueStuckAfter, c.Jobs.Timeout)
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("config log.format %q: want text or json", c.Log.Format)
	}
	switch strings.ToUpper(c.SQLite.Synchronous) {
	case "", "FULL", "NORMAL":
		c.SQLite.Synchronous = strings.ToUpper(c.SQLite.Synchronous)
	default:
		return fmt.Errorf("config sqlite.synchronous %q: want FULL or NORMAL", c.SQLite.Synchronous)
	}
	return nil
}

// PolicyPath is the policy file's path as the process sees it.
func (c *Config) PolicyPath() string {
	if c.Policy == "" || filepath.IsAbs(c.Policy) {
		return c.Policy
	}
	return filepath.Join(c.dir, c.Policy)
}
