package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/jml-dev/jml/internal/audit"
	"github.com/jml-dev/jml/internal/cases"
	"github.com/jml-dev/jml/internal/connector/connectors"
	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/httpapi"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/policytest"
	"github.com/jml-dev/jml/internal/store"
)

// readFlags registers --db and --config on a command that reads the store.
func readFlags(cmd *cobra.Command, dsn, cfgPath *string) {
	dbFlag(cmd, dsn)
	cmd.Flags().StringVar(cfgPath, "config", "", "config file whose store to read (env JML_CONFIG)")
}

// openReader opens the engine a read command reads through: the same
// read models as the API's, with the CLI's principal. It opens no system's
// connector and resolves no connection secret, and never creates a store.
func openReader(ctx context.Context, ev *env, cfgPath, dsn string) (*runtime, error) {
	return openRuntime(ctx, ev, cfgPath, dsn, nil, runtimeNeeds{})
}

// principal is who the CLI acts as on the store: an administrator, named
// in the audit trail as "cli:" and the operating-system user that ran the
// command (engine.Principal.Actor).
func (ev *env) principal() engine.Principal {
	return engine.Principal{ID: "cli:" + ev.osUser(), Role: engine.RoleAdmin}
}

// osUserName is the operating-system user running jml: its login name, or
// its numeric ID where the system has no name for it (a container's
// arbitrary UID).
func osUserName() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "uid-" + strconv.Itoa(os.Getuid())
}

func eventCmd(ev *env) *cobra.Command {
	var cfgPath, dsn, file, server, token string
	cmd := &cobra.Command{
		Use:   "event -f FILE",
		Short: "Submit a lifecycle event (JSON) to a running server, or directly to the store",
		Long: "Submit one event. With --server (or JML_URL) it is POSTed to /v1/events with --token (or JML_TOKEN);\n" +
			"otherwise it is accepted directly in the store given by --db and --config.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := readEvent(ev, file)
			if err != nil {
				return err
			}
			if server == "" {
				server = ev.getenv("JML_URL")
			}
			if token == "" {
				token = ev.getenv("JML_TOKEN")
			}
			if server != "" {
				body, _ := json.Marshal(e)
				var res engine.Result
				if err := call(cmd.Context(), "POST", server+"/v1/events", token, body, &res); err != nil {
					return err
				}
				return output(ev.stdout, "json", res, nil)
			}
			rt, err := openRuntime(cmd.Context(), ev, cfgPath, dsn, nil, runtimeNeeds{create: true, policy: true, systems: true})
			if err != nil {
				return err
			}
			defer rt.Close()
			res, err := rt.engine.Submit(cmd.Context(), ev.principal(), e)
			if err != nil {
				return err
			}
			return output(ev.stdout, "json", res, nil)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "-", "event JSON file, - for stdin")
	cmd.Flags().StringVar(&cfgPath, "config", "", "config file (env JML_CONFIG)")
	dbFlag(cmd, &dsn)
	cmd.Flags().StringVar(&server, "server", "", "jml server URL (env JML_URL)")
	cmd.Flags().StringVar(&token, "token", "", "API token (env JML_TOKEN)")
	return cmd
}

// call is a minimal API client: it sends body and decodes the answer into
// out, turning error bodies into errors.
func call(ctx context.Context, method, url, token string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode >= 300 {
		var eb httpapi.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Message != "" {
			if eb.Error.Field != "" {
				return fmt.Errorf("%s (%d %s): %s: %s", url, resp.StatusCode, eb.Error.Code, eb.Error.Field, eb.Error.Message)
			}
			return fmt.Errorf("%s (%d %s): %s", url, resp.StatusCode, eb.Error.Code, eb.Error.Message)
		}
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.Unmarshal(data, out)
}

func planCmd(ev *env) *cobra.Command {
	var cfgPath, dsn, file, format string
	cmd := &cobra.Command{
		Use:   "plan -f FILE",
		Short: "Show what an event would do, without doing it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := readEvent(ev, file)
			if err != nil {
				return err
			}
			rt, err := openRuntime(cmd.Context(), ev, cfgPath, dsn, nil, runtimeNeeds{policy: true, systems: true})
			if err != nil {
				return err
			}
			defer rt.Close()
			res, c, err := rt.engine.Preview(cmd.Context(), ev.principal(), e)
			if err != nil {
				return err
			}
			return output(ev.stdout, format, map[string]any{"result": res, "case": c}, func(tw *tabwriter.Writer) {
				switch {
				case res.Duplicate:
					fmt.Fprintf(tw, "duplicate of event %s (case %s): nothing would run\n", res.EventID, res.CaseID)
				case c == nil:
					fmt.Fprintf(tw, "scheduled for %v: the plan is made when it takes effect\n", e.EffectiveAt)
				default:
					fmt.Fprintln(tw, "SEQ\tACTION\tSYSTEM\tTARGET\tSTATUS\tREASON")
					for _, s := range c.Steps {
						target := s.Entitlement + s.Rule
						if s.CredentialID != "" {
							target += " " + s.CredentialID
						}
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", s.Seq, s.Action, s.System, target, s.Status, s.Reason)
					}
					if len(c.Steps) == 0 {
						fmt.Fprintln(tw, "(no steps)")
					}
				}
			})
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "-", "event JSON file, - for stdin")
	cmd.Flags().StringVar(&cfgPath, "config", "", "config file (env JML_CONFIG)")
	cmd.Flags().StringVarP(&format, "output", "o", "table", "table, json or yaml")
	dbFlag(cmd, &dsn)
	return cmd
}

func policyCmd(ev *env) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Work with policy files"}
	var checkCfg string
	check := &cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate a policy file and type-check its CEL rules (without FILE: the config's policy)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				if checkCfg == "" {
					checkCfg = ev.getenv("JML_CONFIG")
				}
				if checkCfg == "" {
					return usageError{errors.New("give a policy FILE, or --config (or JML_CONFIG) with a jml.yaml that names one")}
				}
				cfg, err := LoadConfig(checkCfg)
				if err != nil {
					return err
				}
				if cfg.PolicyPath() == "" {
					return fmt.Errorf("%s names no policy file", checkCfg)
				}
				args = []string{cfg.PolicyPath()}
			}
			p, err := policy.LoadFile(args[0])
			if err != nil {
				return err
			}
			if err := connectors.Check(p); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			for _, w := range p.Warnings {
				fmt.Fprintf(ev.stderr, "warning: %s\n", w)
			}
			fmt.Fprintf(ev.stdout, "%s: ok: %d systems, %d entitlements, %d roles, %d birthright rules, %d credential rules\n",
				args[0], len(p.Systems), len(p.Entitlements), len(p.Roles), len(p.Birthrights), len(p.Credentials))
			return nil
		},
	}
	check.Flags().StringVar(&checkCfg, "config", "", "config file whose policy to check when no FILE is given (env JML_CONFIG)")
	cmd.AddCommand(check)
	cmd.AddCommand(&cobra.Command{
		Use:   "test FILE...",
		Short: "Run policy test cases (identity and event -> expected grants, credentials, approvals); exits 1 on a failure",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			failed, total := 0, 0
			for _, path := range args {
				_, results, err := policytest.Run(path)
				if err != nil {
					return err
				}
				for _, r := range results {
					total++
					if len(r.Diffs) == 0 {
						fmt.Fprintf(ev.stdout, "ok    %s: %s\n", path, r.Case)
						continue
					}
					failed++
					fmt.Fprintf(ev.stdout, "FAIL  %s: %s\n", path, r.Case)
					for _, d := range r.Diffs {
						fmt.Fprintf(ev.stdout, "  %s\n", d)
					}
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d policy test cases failed", failed, total)
			}
			fmt.Fprintf(ev.stdout, "%d policy test cases passed\n", total)
			return nil
		},
	})
	return cmd
}

func identityCmd(ev *env) *cobra.Command {
	cmd := &cobra.Command{Use: "identity", Short: "Read identities"}
	var readCfg string
	var dsn, format, kind, state, owner string
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List identities",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, err := openReader(cmd.Context(), ev, readCfg, dsn)
			if err != nil {
				return err
			}
			defer rt.Close()
			if kind != "" && !identity.Kind(kind).Valid() {
				return identity.FieldError("kind", "unknown kind %q (want one of %v)", kind, identity.Kinds)
			}
			items, err := rt.engine.Identities(cmd.Context(), ev.principal(), store.IdentityFilter{Kind: identity.Kind(kind), State: identity.State(state), Owner: owner, Limit: limit})
			if err != nil {
				return err
			}
			names, err := identityNames(cmd.Context(), ev, rt.engine, items)
			if err != nil {
				return err
			}
			return output(ev.stdout, format, items, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tSOURCE\tEXTERNAL ID\tNAME\tKIND\tSTATE\tOWNER")
				for _, i := range items {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", i.ID, i.Source, i.ExternalID, dash(i.DisplayName), i.Kind, i.State, dash(names[i.OwnerID]))
				}
			})
		},
	}
	readFlags(list, &dsn, &readCfg)
	list.Flags().StringVarP(&format, "output", "o", "table", "table, json or yaml")
	list.Flags().StringVar(&kind, "kind", "", "only this kind")
	list.Flags().StringVar(&state, "state", "", "only this state")
	list.Flags().StringVar(&owner, "owner", "", "only identities owned by this identity ID")
	list.Flags().IntVar(&limit, "limit", 1000, "at most this many")

	var showDSN, showFormat string
	show := &cobra.Command{
		Use:   "show ID|SOURCE/EXTERNAL_ID",
		Short: "Show an identity with its grants, credentials, cases and timeline",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := openReader(cmd.Context(), ev, readCfg, showDSN)
			if err != nil {
				return err
			}
			defer rt.Close()
			id := args[0]
			if src, ext, ok := strings.Cut(id, "/"); ok && !strings.HasPrefix(id, "idn_") {
				i, err := rt.engine.IdentityByExternalID(cmd.Context(), ev.principal(), src, ext)
				if err != nil {
					return err
				}
				id = i.ID
			}
			v, err := rt.engine.IdentityView(cmd.Context(), ev.principal(), id)
			if identity.ErrorCode(err) == identity.NotFound && !strings.Contains(id, "/") && !strings.HasPrefix(id, "idn_") {
				return identity.Errorf(identity.NotFound, "no identity %q: give its jml ID (idn_…) or SOURCE/EXTERNAL_ID, such as hr/%s", id, id)
			}
			if err != nil {
				return err
			}
			names, err := identityNames(cmd.Context(), ev, rt.engine, []identity.Identity{v.Identity})
			if err != nil {
				return err
			}
			return output(ev.stdout, showFormat, v, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "ID\t%s\nSOURCE\t%s/%s\nNAME\t%s\nKIND\t%s\nSTATE\t%s\nOWNER\t%s\nMANAGER\t%s\n", v.ID, v.Source, v.ExternalID, dash(v.DisplayName), v.Kind, v.State,
					dash(names[v.OwnerID]), dash(names[v.ManagerID]))
				fmt.Fprintln(tw, "\nACCOUNT\tSTATUS")
				for _, a := range v.Accounts {
					fmt.Fprintf(tw, "%s\t%s\n", a.System, a.Status)
				}
				fmt.Fprintln(tw, "\nGRANT\tSYSTEM\tREASON\tEXPIRES")
				for _, g := range v.Grants {
					exp := "-"
					if !g.ExpiresAt.IsZero() {
						exp = g.ExpiresAt.Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g.Entitlement, g.System, g.Reason, exp)
				}
				fmt.Fprintln(tw, "\nCREDENTIAL\tTYPE\tFINGERPRINT\tSTATUS")
				for _, c := range v.Credentials {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.ID, c.Type, c.Fingerprint, c.Status)
				}
				fmt.Fprintln(tw, "\nCASE\tTYPE\tSTATUS")
				for _, c := range v.Cases {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", c.ID, c.Type, c.Status)
				}
				fmt.Fprintln(tw, "\nSCHEDULED\tWHAT")
				for _, d := range v.Scheduled {
					fmt.Fprintf(tw, "%s\t%s\n", d.At.Format(time.RFC3339), dueWhat(d))
				}
				fmt.Fprintln(tw, "\nFINDING\tKIND\tSTATE")
				for _, f := range v.Findings {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", f.ID, f.Kind, f.State)
				}
				fmt.Fprintln(tw, "\nAT\tACTOR\tACTION\tCASE")
				for _, r := range v.Timeline {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.At.Format(time.RFC3339), r.Actor, r.Action, dash(r.CaseID))
				}
			})
		},
	}
	readFlags(show, &showDSN, &readCfg)
	show.Flags().StringVarP(&showFormat, "output", "o", "table", "table, json or yaml")
	cmd.AddCommand(list, show)
	return cmd
}

// identityNames maps the owners and managers of ids to "source/external
// ID (display name)", for tables that would otherwise show bare IDs; one
// the engine does not give keeps its bare ID.
func identityNames(ctx context.Context, ev *env, e *engine.Engine, ids []identity.Identity) (map[string]string, error) {
	refs, err := e.OwnersAndManagers(ctx, ev.principal(), ids)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, i := range ids {
		for _, ref := range []string{i.OwnerID, i.ManagerID} {
			if ref == "" || out[ref] != "" {
				continue
			}
			o, ok := refs[ref]
			if !ok {
				out[ref] = ref
				continue
			}
			out[ref] = o.Source + "/" + o.ExternalID
			if o.DisplayName != "" {
				out[ref] += " (" + o.DisplayName + ")"
			}
		}
	}
	return out, nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func caseCmd(ev *env) *cobra.Command {
	cmd := &cobra.Command{Use: "case", Short: "Cases: list, show, approve, deny, retry"}
	var readCfg string
	var dsn, format string
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a case's steps and their status",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := openReader(cmd.Context(), ev, readCfg, dsn)
			if err != nil {
				return err
			}
			defer rt.Close()
			c, err := rt.engine.Case(cmd.Context(), ev.principal(), args[0])
			if err != nil {
				return err
			}
			return output(ev.stdout, format, c, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "CASE\t%s\nTYPE\t%s\nSTATUS\t%s\nREASON\t%s\n\n", c.ID, c.Type, c.Status, c.Reason)
				fmt.Fprintln(tw, "SEQ\tACTION\tSYSTEM\tTARGET\tSTATUS\tATTEMPTS\tRESULT")
				for _, s := range c.Steps {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", s.Seq, s.Action, s.System, s.Entitlement+s.Rule, s.Status, s.Attempts, s.Result+s.LastError)
				}
			})
		},
	}
	readFlags(show, &dsn, &readCfg)
	show.Flags().StringVarP(&format, "output", "o", "table", "table, json or yaml")

	var retryCfg, retryDSN string
	retry := &cobra.Command{
		Use:   "retry ID",
		Short: "Run the failed steps of a failed case again (the server's workers pick it up)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := openRuntime(cmd.Context(), ev, retryCfg, retryDSN, nil, runtimeNeeds{policy: true})
			if err != nil {
				return err
			}
			defer rt.Close()
			c, err := rt.engine.Retry(cmd.Context(), ev.principal(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(ev.stdout, "case %s is %s\n", c.ID, c.Status)
			return nil
		},
	}
	retry.Flags().StringVar(&retryCfg, "config", "", "config file (env JML_CONFIG)")
	dbFlag(retry, &retryDSN)

	var listDSN, listFormat, listStatus, listType, listIdentity, listSince, listAfter string
	var listLimit int
	list := &cobra.Command{
		Use:   "list [ID|SOURCE/EXTERNAL_ID] [--status S] [--type T] [--identity I] [--since TIME]",
		Short: "List cases, newest first: all, or those of a status, type, identity or time",
		Long: `List cases, newest first, without their steps (jml case show ID has them).
Filters combine: --status running|awaiting_approval|completed|failed,
--type joiner|mover|leaver|suspend|resume|expiry|retention|undo, --identity
(a jml ID or SOURCE/EXTERNAL_ID; also given as the argument), --since (an
RFC 3339 time: cases opened then or later). What waits for approval:
jml case list --status awaiting_approval. More than --limit cases: the last
line names the --after that gives the next page.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if listIdentity != "" && listIdentity != args[0] {
					return usageError{fmt.Errorf("give the identity once: as the argument (%s) or as --identity (%s)", args[0], listIdentity)}
				}
				listIdentity = args[0]
			}
			f := store.CaseFilter{Status: cases.Status(listStatus), Type: identity.EventType(listType), IdentityID: listIdentity, After: listAfter, Limit: listLimit}
			if listSince != "" {
				var err error
				if f.Since, err = time.Parse(time.RFC3339, listSince); err != nil {
					return identity.FieldError("since", "%q is not an RFC 3339 time such as 2026-01-02T09:00:00Z", listSince)
				}
			}
			if listLimit < 1 || listLimit > 1000 {
				return identity.FieldError("limit", "must be a whole number from 1 to 1000")
			}
			rt, err := openReader(cmd.Context(), ev, readCfg, listDSN)
			if err != nil {
				return err
			}
			defer rt.Close()
			out, err := rt.engine.Cases(cmd.Context(), ev.principal(), f)
			if err != nil {
				return err
			}
			return output(ev.stdout, listFormat, out, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "CASE\tTYPE\tSTATUS\tIDENTITY\tCREATED\tREASON")
				for _, c := range out {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Type, c.Status, c.IdentityID, c.CreatedAt.Format(time.RFC3339), dash(c.Reason))
				}
				if len(out) == listLimit {
					fmt.Fprintf(tw, "(more: --after %s)\n", out[len(out)-1].ID)
				}
			})
		},
	}
	readFlags(list, &listDSN, &readCfg)
	list.Flags().StringVarP(&listFormat, "output", "o", "table", "table, json or yaml")
	list.Flags().StringVar(&listStatus, "status", "", "only cases in this status (running, awaiting_approval, completed, failed)")
	list.Flags().StringVar(&listType, "type", "", "only cases of this type (joiner, mover, leaver, suspend, resume, expiry, retention, undo)")
	list.Flags().StringVar(&listIdentity, "identity", "", "only this identity's cases: jml ID or SOURCE/EXTERNAL_ID")
	list.Flags().StringVar(&listSince, "since", "", "only cases opened at or after this RFC 3339 time")
	list.Flags().StringVar(&listAfter, "after", "", "the page after this case ID (what the last line of a full page names)")
	list.Flags().IntVar(&listLimit, "limit", 100, "at most this many (1 to 1000)")

	cmd.AddCommand(list, show, retry, decideCmd(ev, true), decideCmd(ev, false))
	return cmd
}

// decideCmd is jml case approve|deny: a person's decision, so it goes to
// the server with the person's own approver token (JML_TOKEN), never
// straight to the store.
func decideCmd(ev *env, approve bool) *cobra.Command {
	verb, short := "deny", "Deny a case's steps awaiting approval, with your approver token"
	if approve {
		verb, short = "approve", "Approve a case's steps awaiting approval, with your approver token"
	}
	var server, token, comment string
	c := &cobra.Command{
		Use:   verb + " CASE_ID [--comment TEXT]",
		Short: short,
		Long: short + ` (JML_URL and JML_TOKEN, or --server and --token).
Decisions are made by people: the token must be bound to you
(jml token create --role approver --identity SOURCE/EXTERNAL_ID), and you may
not decide on a case you submitted, that is for you, or for an NHI you own.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if server == "" {
				server = ev.getenv("JML_URL")
			}
			if token == "" {
				token = ev.getenv("JML_TOKEN")
			}
			if server == "" || token == "" {
				return usageError{fmt.Errorf("%s needs the server and your approver token: set JML_URL and JML_TOKEN (or --server and --token)", verb)}
			}
			body, _ := json.Marshal(httpapi.Decision{Comment: comment})
			var c cases.Case
			if err := call(cmd.Context(), "POST", strings.TrimSuffix(server, "/")+"/v1/cases/"+args[0]+"/"+verb, token, body, &c); err != nil {
				return err
			}
			fmt.Fprintf(ev.stdout, "case %s is %s\n", c.ID, c.Status)
			return nil
		},
	}
	c.Flags().StringVar(&server, "server", "", "jml's URL (env JML_URL)")
	c.Flags().StringVar(&token, "token", "", "your approver token (env JML_TOKEN)")
	c.Flags().StringVar(&comment, "comment", "", "why, recorded with the decision")
	return c
}

func auditCmd(ev *env) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Verify and export the audit log"}
	var readCfg string
	var dsn, verifyFormat string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the hash chain of the whole audit log; exit 1 naming the first bad record",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, err := openReader(cmd.Context(), ev, readCfg, dsn)
			if err != nil {
				return err
			}
			defer rt.Close()
			n, err := rt.engine.VerifyAudit(cmd.Context(), ev.principal())
			if err != nil {
				if verifyFormat != "table" {
					output(ev.stdout, verifyFormat, map[string]any{"ok": false, "records": n, "error": err.Error()}, nil)
				}
				return fmt.Errorf("audit log verification failed: %w", err)
			}
			return output(ev.stdout, verifyFormat, map[string]any{"ok": true, "records": n}, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "ok: %d audit records verified\n", n)
			})
		},
	}
	readFlags(verify, &dsn, &readCfg)
	verify.Flags().StringVarP(&verifyFormat, "output", "o", "table", "table, json or yaml")
	var exportDSN, identityID string
	export := &cobra.Command{
		Use:   "export",
		Short: "Write audit records as JSON lines (all, or one identity's)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, err := openReader(cmd.Context(), ev, readCfg, exportDSN)
			if err != nil {
				return err
			}
			defer rt.Close()
			enc := json.NewEncoder(ev.stdout)
			return rt.engine.ScanAudit(cmd.Context(), ev.principal(), identityID, func(r *audit.Record) error { return enc.Encode(r) })
		},
	}
	readFlags(export, &exportDSN, &readCfg)
	export.Flags().StringVar(&identityID, "identity", "", "only this identity's records (jml ID or SOURCE/EXTERNAL_ID)")
	cmd.AddCommand(verify, export)
	return cmd
}

func tokenCmd(ev *env) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage API tokens"}
	var cfgPath, dsn, role, name, sourceName, identityID string
	create := &cobra.Command{
		Use:   "create --role ROLE [--source NAME] [--identity ID]",
		Short: "Create an API token (admin, source, approver, auditor, member, resource); prints it once",
		Long: `Create an API token for jml's own API and print it once; jml keeps only its hash.

A source token submits the events of one source (--source). A member token is
a person's own (--identity): it reads their identity and those they own or
manage, and reveals their own and their NHIs' credentials. An approver token
is bound to a person too: decisions are made by people, never on their own
behalf. A resource token introspects credentials (RFC 7662). A token bound to
an identity works only while that identity is active.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, err := openRuntime(cmd.Context(), ev, cfgPath, dsn, nil, runtimeNeeds{})
			if err != nil {
				return err
			}
			defer rt.Close()
			secret, tk, err := rt.engine.IssueToken(cmd.Context(), ev.principal(), engine.TokenSpec{Name: name, Role: engine.Role(role), Source: sourceName, Identity: identityID})
			if err != nil {
				return err
			}
			fmt.Fprintf(ev.stderr, "created token %s with role %s; it is shown once, jml keeps only its hash\n", tk.ID, tk.Role)
			fmt.Fprintln(ev.stdout, secret)
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", "", "admin, source, approver, auditor, member or resource")
	create.Flags().StringVar(&name, "name", "", "a label for the token")
	create.Flags().StringVar(&sourceName, "source", "", "the one source a source token submits events of")
	create.Flags().StringVar(&identityID, "identity", "", "bind the token to an identity: jml ID or SOURCE/EXTERNAL_ID (required for member and approver)")
	create.Flags().StringVar(&cfgPath, "config", "", "config file (env JML_CONFIG)")
	dbFlag(create, &dsn)
	create.MarkFlagRequired("role")

	var listCfg, listDSN, format string
	list := &cobra.Command{
		Use:   "list",
		Short: "List API tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, err := openReader(cmd.Context(), ev, listCfg, listDSN)
			if err != nil {
				return err
			}
			defer rt.Close()
			items, err := rt.engine.ListTokens(cmd.Context(), ev.principal())
			if err != nil {
				return err
			}
			return output(ev.stdout, format, items, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tNAME\tROLE\tSOURCE\tIDENTITY\tCREATED\tREVOKED")
				for _, t := range items {
					revoked := "-"
					if !t.RevokedAt.IsZero() {
						revoked = t.RevokedAt.Format(time.RFC3339)
					}
					src, idn := "-", "-"
					if t.Source != "" {
						src = t.Source
					}
					if t.IdentityID != "" {
						idn = t.IdentityID + " (" + string(t.IdentityState) + ")"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, src, idn, t.CreatedAt.Format(time.RFC3339), revoked)
				}
			})
		},
	}
	list.Flags().StringVar(&listCfg, "config", "", "config file (env JML_CONFIG)")
	list.Flags().StringVarP(&format, "output", "o", "table", "table, json or yaml")
	dbFlag(list, &listDSN)

	var revokeCfg, revokeDSN string
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API token at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := openRuntime(cmd.Context(), ev, revokeCfg, revokeDSN, nil, runtimeNeeds{})
			if err != nil {
				return err
			}
			defer rt.Close()
			if err := rt.engine.RevokeToken(cmd.Context(), ev.principal(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(ev.stdout, "revoked %s\n", args[0])
			return nil
		},
	}
	revoke.Flags().StringVar(&revokeCfg, "config", "", "config file (env JML_CONFIG)")
	dbFlag(revoke, &revokeDSN)
	cmd.AddCommand(create, list, revoke)
	return cmd
}
