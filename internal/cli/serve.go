package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/jml-dev/jml/internal/connector/connectors"
	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/httpapi"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/scimserver"
	"github.com/jml-dev/jml/internal/source"
	"github.com/jml-dev/jml/internal/store"
	"github.com/jml-dev/jml/internal/vault"
)

// runtime is an opened store with an engine on it.
type runtime struct {
	cfg    *Config
	store  store.Store
	engine *engine.Engine
	log    *slog.Logger
	reg    *prometheus.Registry
}

func (r *runtime) Close() {
	r.engine.Close()
	r.store.Close()
}

// openRuntime loads the config and policy, opens the store and the vault
// key, and builds the engine.
// runtimeNeeds says what a command needs of openRuntime.
type runtimeNeeds struct {
	// create: a SQLite store or a key file that does not exist is made,
	// and the command says so (serve, and event and import, which write
	// events straight into a store). Every other command refuses.
	create bool
	// policy: the command plans (serve, event, import, plan, retry,
	// holds); the others (tokens, findings) work with --db alone.
	policy bool
	// systems: the command plans or runs cases (serve, event, import,
	// plan, holds release), so every system's connector is opened and its
	// connection secrets resolved. Every other command opens none and
	// resolves no secret: it works where the systems' env: and file:
	// references are not set.
	systems bool
}

// openRuntime opens the store, the key and the engine a command works
// with.
func openRuntime(ctx context.Context, ev *env, cfgPath, dbFlag string, log *slog.Logger, needs runtimeNeeds) (*runtime, error) {
	if cfgPath == "" {
		cfgPath = ev.getenv("JML_CONFIG")
	}
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	create := needs.create
	var pol *policy.Policy
	switch {
	case cfg.PolicyPath() != "":
		if pol, err = policy.LoadFile(cfg.PolicyPath()); err != nil {
			return nil, err
		}
	case needs.policy:
		return nil, usageError{errors.New("no policy: give --config with a jml.yaml that names its policy file (see examples/quickstart/jml.yaml)")}
	default:
		// Nothing is planned: an empty policy serves.
		if pol, err = policy.Parse("(no policy)", []byte("{}")); err != nil {
			return nil, err
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dsn := resolveDB(ev, dbFlag, cfg)
	if path, ok := strings.CutPrefix(dsn, "sqlite:"); ok && create {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(ev.stderr, "jml: no store at %s: creating a new one\n", path)
		}
	}
	s, err := OpenStore(ctx, dsn, cfg.SQLite.Synchronous, log, create)
	if err != nil {
		return nil, err
	}
	// A missing key file is created, so that a first start needs no setup.
	// The database keeps the key's check value, so a later start or another
	// replica with a different key is refused instead of sealing secrets
	// nobody else can open. A command that calls no system issues no
	// secret and reads none: it needs no key (it works with --db alone).
	var key []byte
	var sealer *vault.Sealer
	if needs.systems {
		var created bool
		if key, created, err = vault.LoadKey(ev.getenv("JML_MASTER_KEY"), cfg.MasterKeyFile, create); err != nil {
			s.Close()
			return nil, err
		}
		if created {
			log.Warn("created a new vault master key; keep it safe, back it up apart from the database, and give every replica the same key", "file", cfg.MasterKeyFile)
		}
		if sealer, err = vault.NewSealer(key); err != nil {
			s.Close()
			return nil, err
		}
	}
	guards := map[string]engine.SourceGuard{}
	for _, g := range cfg.Guards {
		if _, dup := guards[g.Source]; dup {
			s.Close()
			return nil, fmt.Errorf("config guards: source %q is guarded twice", g.Source)
		}
		guards[g.Source] = g.SourceGuard
	}
	reg := prometheus.NewRegistry()
	e, err := engine.New(engine.Config{Guards: guards, Store: s, Policy: pol, Sealer: sealer, Logger: log, Metrics: engine.NewMetrics(reg), DeferBuiltin: cfg.Jobs.BuiltinAsJobs,
		Open: connectors.Open, Getenv: ev.getenv, CallTimeout: cfg.Jobs.CallTimeout,
		IntrospectionClaims: cfg.Introspection.Claims, EndpointSources: cfg.endpointSources(), NoSystems: !needs.systems})
	if err != nil {
		s.Close()
		return nil, err
	}
	reg.MustRegister(e.Collector())
	if key != nil {
		if err := e.CheckMasterKey(ctx, key); err != nil {
			e.Close()
			s.Close()
			return nil, err
		}
	}
	return &runtime{cfg: cfg, store: s, engine: e, log: log, reg: reg}, nil
}

// reloadPolicy compiles the policy file again and, if it is valid and
// every system has a connector, switches the engine to it for events
// accepted from then on; then it checks the stored identities against it
// in the background.
func reloadPolicy(ctx context.Context, rt *runtime, log *slog.Logger, scans *sync.WaitGroup) {
	pol, err := policy.LoadFile(rt.cfg.PolicyPath())
	if err == nil {
		err = rt.engine.SetPolicy(pol)
	}
	if err != nil {
		log.Error("policy reload failed; the running policy stays", "policy", rt.cfg.PolicyPath(), "error", err)
		return
	}
	log.Info("policy reloaded", "policy", rt.cfg.PolicyPath(), "entitlements", len(pol.Entitlements), "birthright_rules", len(pol.Birthrights))
	scans.Go(func() { checkStoredAttributes(ctx, rt, log) })
}

// checkStoredAttributes reports stored identities whose attributes the
// policy in force does not admit (one attributes_invalid finding each,
// their access unchanged), and resolves the findings of those it admits
// again. jml serve runs it at start (the policy may have changed while it
// was down) and after each reload.
func checkStoredAttributes(ctx context.Context, rt *runtime, log *slog.Logger) {
	rep, err := rt.engine.CheckStoredAttributes(ctx)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			log.Error("checking stored identities' attributes against the policy failed", "error", err)
		}
	case rep.Invalid > 0:
		log.Warn("identities hold attribute values the policy does not admit; their access is unchanged (jml findings list --kind attributes_invalid)",
			"identities", rep.Invalid, "findings_opened", rep.Opened, "findings_resolved", rep.Resolved)
	case rep.Resolved > 0:
		log.Info("attribute findings resolved: the policy admits the stored values", "findings_resolved", rep.Resolved)
	}
}

func serveCmd(ev *env) *cobra.Command {
	var cfgPath, dsn, addr string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the API and the workers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tuneGC()
			if cfgPath == "" {
				cfgPath = ev.getenv("JML_CONFIG")
			}
			cfg, err := LoadConfig(cfgPath)
			if err != nil {
				return err
			}
			log, err := newLogger(ev.stderr, cfg.Log.Level, cfg.Log.Format)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if addr == "" {
				addr = cfg.Addr
			}
			// Bind first: a taken port fails before any migration runs or
			// any worker starts.
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", addr, err)
			}
			defer ln.Close()
			rt, err := openRuntime(ctx, ev, cfgPath, dsn, log, runtimeNeeds{create: true, policy: true, systems: true})
			if err != nil {
				return err
			}
			defer rt.Close()
			if tok := ev.getenv("JML_BOOTSTRAP_TOKEN"); tok != "" {
				created, err := rt.engine.Bootstrap(ctx, tok)
				if err != nil {
					return err
				}
				if created {
					log.Info("created the first admin token from JML_BOOTSTRAP_TOKEN")
				}
			}
			var hooks []*source.Webhook
			seen := map[string]bool{}
			for _, wc := range rt.cfg.Webhooks {
				if seen[wc.Name] {
					return fmt.Errorf("config webhooks: source %q is defined twice", wc.Name)
				}
				seen[wc.Name] = true
				h, err := source.CompileWebhook(wc, ev.getenv)
				if err != nil {
					return fmt.Errorf("config webhooks: %w", err)
				}
				hooks = append(hooks, h)
			}
			scimSrv, err := scimserver.New(rt.engine, scimserver.Parts(rt.store), rt.cfg.SCIM.Sources, log)
			if err != nil {
				return fmt.Errorf("config %w", err)
			}
			rt.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			registered := rt.engine.Jobs(rt.cfg.Jobs.ExpirySweep)
			if err := rt.store.Jobs().Start(ctx, registered.Workers(), store.JobConfig{
				Workers: rt.cfg.Jobs.Workers, FetchCooldown: rt.cfg.Jobs.FetchCooldown, PollInterval: rt.cfg.Jobs.PollInterval,
				Timeout: rt.cfg.Jobs.Timeout, RescueAfter: rt.cfg.Jobs.RescueStuckAfter,
				Periodic: registered.Periodic()}); err != nil {
				return fmt.Errorf("start workers: %w", err)
			}
			log.Info("jobs and timers registered", "kinds", registered.String())
			if n, err := rt.engine.Resume(ctx); err != nil {
				return fmt.Errorf("resume cases: %w", err)
			} else if n > 0 {
				log.Info("resumed cases left running", "cases", n)
			}
			if err := sayHowToGetIn(ctx, rt, cfgPath, log); err != nil {
				return err
			}
			srv := &http.Server{
				Handler:           httpapi.New(rt.engine, log, rt.reg, rt.reg, httpapi.WithWebhooks(hooks), httpapi.WithSCIM(scimSrv)),
				ReadHeaderTimeout: 5 * time.Second,
				ReadTimeout:       30 * time.Second,
				WriteTimeout:      30 * time.Second,
				IdleTimeout:       2 * time.Minute,
			}
			log.Info("jml serving", "addr", ln.Addr().String(), "store", rt.store.Backend(), "policy", rt.cfg.PolicyPath())
			// Checks of stored attributes run in the background and end
			// before the store closes (ctx ends them early on shutdown).
			var scans sync.WaitGroup
			defer scans.Wait()
			scans.Go(func() { checkStoredAttributes(ctx, rt, log) })
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			// SIGHUP reloads the policy file: a policy kept in git is
			// deployed without a restart. A file that does not compile is
			// logged and the running policy stays.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
		serving:
			for {
				select {
				case err := <-errc:
					return err
				case <-hup:
					reloadPolicy(ctx, rt, log, &scans)
				case <-ctx.Done():
					break serving
				}
			}
			log.Info("shutting down")
			shutdown, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			err = errors.Join(srv.Shutdown(shutdown), rt.store.Jobs().Stop(shutdown))
			log.Info("stopped")
			return err
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "config file (env JML_CONFIG)")
	dbFlag(cmd, &dsn)
	cmd.Flags().StringVar(&addr, "addr", "", "listen address (default from config, else 127.0.0.1:8080)")
	return cmd
}

// sayHowToGetIn logs, when no API token exists, the command that makes
// the first admin token: a fresh install is otherwise a server nobody can
// call. It never makes or logs a token itself (a token in a log is a
// secret in a log).
func sayHowToGetIn(ctx context.Context, rt *runtime, cfgPath string, log *slog.Logger) error {
	var n int
	if err := rt.store.View(ctx, func(tx store.Tx) error {
		var err error
		n, err = tx.CountTokens(ctx)
		return err
	}); err != nil || n > 0 {
		return err
	}
	cmd := "jml token create --role admin"
	if cfgPath != "" {
		cmd += " --config " + cfgPath
	}
	log.Warn("no API token exists yet: create the first admin token with `" + cmd + "` (it prints the token once), or restart with JML_BOOTSTRAP_TOKEN set to a secret of 16 characters or more")
	return nil
}
