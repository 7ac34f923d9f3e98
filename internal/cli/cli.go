// Package cli is the jml command: the server (jml serve) and the tools
// around it. Main is the whole program; cmd/jml only calls it, so tests run
// the same code in-process (testscript).
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go.yaml.in/yaml/v3"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/jsonin"
)

// env is what the commands read from outside: streams and environment.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// osUser names the operating-system user running the command: the
	// audit trail's actor for what the CLI writes to the store (principal).
	osUser func() string
}

// Main runs jml with args and returns the exit code: 0 on success, 1 on
// error (the message goes to stderr, prefixed "jml: "), 2 on bad usage.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	return run(ctx, &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, osUser: osUserName}, args)
}

func run(ctx context.Context, ev *env, args []string) int {
	stdin, stdout, stderr := ev.stdin, ev.stdout, ev.stderr
	root := newRoot(ev)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprintf(stderr, "jml: %v\n", err)
			return 2
		}
		fmt.Fprintf(stderr, "jml: %s\n", message(err))
		return 1
	}
	return 0
}

// message is the text an error shows on the command line: the full chain,
// since the user running the CLI is the operator.
func message(err error) string { return err.Error() }

type usageError struct{ error }

// version is jml's version, the commit it was built from (and whether the
// tree had changes), and the Go it was built with, from the build info.
func version() string {
	v, commit, dirty := "(devel)", "unknown", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = " (modified)"
				}
			}
		}
	}
	return fmt.Sprintf("jml %s, commit %s%s, %s %s/%s", v, commit, dirty, goruntime.Version(), goruntime.GOOS, goruntime.GOARCH)
}

func newRoot(ev *env) *cobra.Command {
	root := &cobra.Command{
		Use:           "jml",
		Short:         "jml grants, changes and removes access as identities join, move and leave",
		Long:          "jml is a joiner/mover/leaver engine for every identity: people, service accounts,\nworkloads, CI/CD pipelines and AI agents, and the credentials they hold.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(serveCmd(ev), eventCmd(ev), planCmd(ev), policyCmd(ev), identityCmd(ev), caseCmd(ev),
		auditCmd(ev), tokenCmd(ev), benchCmd(ev), importCmd(ev), holdsCmd(ev), findingsCmd(ev), accessCmd(ev), scheduledCmd(ev))
	return root
}

// dbFlag registers --db on a command that reads the store.
func dbFlag(cmd *cobra.Command, dsn *string) {
	cmd.Flags().StringVar(dsn, "db", "", "store: sqlite:PATH or postgres://URL (env JML_DB, default "+DefaultDB+")")
}

// resolveDB applies flag > JML_DB > config > default.
func resolveDB(ev *env, flag string, cfg *Config) string {
	if flag != "" {
		return flag
	}
	if v := ev.getenv("JML_DB"); v != "" {
		return v
	}
	if cfg != nil && cfg.DB != "" {
		return cfg.DB
	}
	if cfg != nil && cfg.dir != "" {
		return "sqlite:" + filepath.Join(cfg.dir, "jml.db") // next to the config file
	}
	return DefaultDB
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// output writes v as indented JSON or, for "table", with the table func.
func output(w io.Writer, format string, v any, table func(*tabwriter.Writer)) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		// Through JSON, so that YAML has the field names JSON has.
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		var doc any
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return err
		}
		out, err := yaml.Marshal(doc)
		if err != nil {
			return err
		}
		_, err = w.Write(out)
		return err
	case "table", "":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		table(tw)
		return tw.Flush()
	}
	return usageError{fmt.Errorf("-o %q: want table, json or yaml", format)}
}

// readEvent reads one JSON event from a file or "-" (stdin), strictly.
func readEvent(ev *env, path string) (identity.Event, error) {
	var r io.Reader
	if path == "-" || path == "" {
		r = ev.stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return identity.Event{}, err
		}
		defer f.Close()
		r = f
	}
	var e identity.Event
	data, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil {
		return e, err
	}
	if path == "" {
		path = "-"
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return e, identity.Errorf(identity.Invalid, "event %s: empty: give an event as JSON with -f FILE, or on standard input (see examples/ or README.md)", path)
	}
	if err := jsonin.Check(data); err != nil {
		return e, identity.Errorf(identity.Invalid, "event %s: %s", path, identity.ErrorMessage(err))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, identity.Errorf(identity.Invalid, "event %s: %v", path, strings.TrimPrefix(err.Error(), "json: "))
	}
	return e, nil
}
