package cli

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

// accessCmd is jml access: who has access to an entitlement or in a
// system, and what one identity has. Both read jml's records through the
// engine's read models (what jml granted, created and issued), never the
// systems, so they open no connector.
func accessCmd(ev *env) *cobra.Command {
	cmd := &cobra.Command{Use: "access", Short: "Who has access to what, from jml's records: who holds an entitlement, what an identity holds"}
	var cfgPath, dsn, format, system, after string
	var limit int
	who := &cobra.Command{
		Use:   "who ENTITLEMENT | --system NAME",
		Short: "List who holds an entitlement (with reason, since, expiry), or who has access in a system",
		Long: `List the identities that hold a grant of ENTITLEMENT, with why (the birthright
rule or request), since when and until when; or, with --system and no
ENTITLEMENT, those jml records as having access in the system: an account
there that is not deleted, a grant of one of its entitlements, or an active
credential. A name the policy does not have is an error naming it.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := store.IdentityFilter{System: system, After: after, Limit: limit}
			if len(args) == 1 {
				f.Entitlement = args[0]
			}
			if f.Entitlement == "" && f.System == "" {
				return usageError{fmt.Errorf("give an ENTITLEMENT, or --system NAME")}
			}
			if limit < 1 || limit > 1000 {
				return identity.FieldError("limit", "must be a whole number from 1 to 1000")
			}
			rt, err := openRuntime(cmd.Context(), ev, cfgPath, dsn, nil, runtimeNeeds{policy: true})
			if err != nil {
				return err
			}
			defer rt.Close()
			hs, err := rt.engine.Holders(cmd.Context(), ev.principal(), f)
			if err != nil {
				return err
			}
			return output(ev.stdout, format, hs, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "IDENTITY\tNAME\tKIND\tSTATE\tHOLDS\tSYSTEM\tREASON\tSINCE\tEXPIRES")
				for _, h := range hs {
					for _, r := range holdingRows(h) {
						fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Identity.Source, h.Identity.ExternalID, dash(h.Identity.DisplayName), h.Identity.Kind, h.Identity.State,
							r.what, r.system, r.reason, r.since, r.expires)
					}
				}
				if len(hs) == limit {
					fmt.Fprintf(tw, "(more: --after %s)\n", hs[len(hs)-1].Identity.ID)
				}
			})
		},
	}
	who.Flags().StringVar(&system, "system", "", "a system: who has access there (with ENTITLEMENT: who holds it there)")
	who.Flags().StringVar(&after, "after", "", "the page after this identity ID (what the last line of a full page names)")
	who.Flags().IntVar(&limit, "limit", 100, "at most this many identities (1 to 1000)")
	who.Flags().StringVarP(&format, "output", "o", "table", "table, json or yaml")

	var ofFormat string
	of := &cobra.Command{
		Use:   "of ID|SOURCE/EXTERNAL_ID",
		Short: "Show every account, entitlement and credential an identity has across systems, and why",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := openRuntime(cmd.Context(), ev, cfgPath, dsn, nil, runtimeNeeds{})
			if err != nil {
				return err
			}
			defer rt.Close()
			a, err := rt.engine.AccessOf(cmd.Context(), ev.principal(), args[0])
			if err != nil {
				return err
			}
			return output(ev.stdout, ofFormat, a, func(tw *tabwriter.Writer) {
				id := a.Identity
				fmt.Fprintf(tw, "%s/%s (%s, %s, %s)\n\n", id.Source, id.ExternalID, id.ID, id.Kind, id.State)
				fmt.Fprintln(tw, "SYSTEM\tHOLDS\tSTATUS\tREASON\tSINCE\tEXPIRES")
				rows := holdingRows(engine.Holding{Identity: id, Grants: a.Grants, Accounts: a.Accounts, Credentials: a.Credentials})
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.system, r.what, r.status, r.reason, r.since, r.expires)
				}
				if len(rows) == 0 {
					fmt.Fprintln(tw, "(nothing: no account, grant or active credential)")
				}
			})
		},
	}
	of.Flags().StringVarP(&ofFormat, "output", "o", "table", "table, json or yaml")
	cmd.AddCommand(who, of)
	cmd.PersistentFlags().StringVar(&cfgPath, "config", "", "config file (env JML_CONFIG)")
	cmd.PersistentFlags().StringVar(&dsn, "db", "", "store: sqlite:PATH or postgres://URL (env JML_DB, default "+DefaultDB+")")
	return cmd
}

// holdingRow is one line of what an identity holds: an account, a grant
// or a credential.
type holdingRow struct{ system, what, status, reason, since, expires string }

// holdingRows lists h's accounts, grants and credentials, each system's
// together, accounts first.
func holdingRows(h engine.Holding) []holdingRow {
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	var rows []holdingRow
	for _, a := range h.Accounts {
		rows = append(rows, holdingRow{a.System, "account", string(a.Status), "-", at(a.UpdatedAt), "-"})
	}
	for _, g := range h.Grants {
		reason := g.Reason
		if g.ApprovedBy != "" {
			reason += ", approved by " + g.ApprovedBy
		}
		rows = append(rows, holdingRow{g.System, g.Entitlement, "granted", reason, at(g.GrantedAt), at(g.ExpiresAt)})
	}
	for _, c := range h.Credentials {
		rows = append(rows, holdingRow{c.System, "credential " + c.ID + " (" + c.Type + ")", string(c.Status), "rule " + c.Rule, at(c.IssuedAt), at(c.ExpiresAt)})
	}
	// By system; within one, accounts, grants, credentials as listed.
	slices.SortStableFunc(rows, func(a, b holdingRow) int { return strings.Compare(a.system, b.system) })
	return rows
}
