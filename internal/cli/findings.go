package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
	"github.com/jml-dev/jml/internal/store"
)

func findingsCmd(ev *env) *cobra.Command {
	cmd := &cobra.Command{Use: "findings", Short: "Findings: list them, acknowledge one"}
	var cfgPath, dsn, format, state, kind, identityID string
	list := &cobra.Command{
		Use:   "list",
		Short: "List findings (open by default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := store.FindingFilter{Kind: kind, IdentityID: identityID, State: identity.FindingState(state)}
			switch f.State {
			case identity.FindingOpen, identity.FindingAcknowledged, identity.FindingResolved:
			case "all":
				f.State = ""
			default:
				return fmt.Errorf("--state: %q is not open, acknowledged, resolved or all", state)
			}
			rt, err := openReader(cmd.Context(), ev, cfgPath, dsn)
			if err != nil {
				return err
			}
			defer rt.Close()
			items, err := rt.engine.Findings(cmd.Context(), ev.principal(), f)
			if err != nil {
				return err
			}
			return output(ev.stdout, format, items, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tKIND\tIDENTITY\tSYSTEM\tSTATE\tCREATED\tNOTE")
				for _, fd := range items {
					note := fd.Message
					switch fd.State {
					case identity.FindingResolved:
						note = "resolved: " + fd.Resolution
					case identity.FindingAcknowledged:
						note = "acknowledged until " + fd.AckUntil.Format(time.RFC3339) + ": " + fd.AckReason
					}
					sys := fd.System
					if sys == "" {
						sys = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", fd.ID, fd.Kind, fd.IdentityID, sys, fd.State, fd.CreatedAt.Format(time.RFC3339), note)
				}
			})
		},
	}
	list.Flags().StringVar(&state, "state", "open", "open, acknowledged, resolved or all")
	list.Flags().StringVar(&kind, "kind", "", "only this kind (owner_not_active, account_exists_unmanaged, account_adopted, attributes_invalid)")
	list.Flags().StringVar(&identityID, "identity", "", "only this identity's (jml ID)")
	list.Flags().StringVarP(&format, "output", "o", "table", "table, json or yaml")

	var reason, forText string
	ack := &cobra.Command{
		Use:   "ack ID --reason TEXT --for DURATION",
		Short: "Acknowledge an unresolved finding until a time; it is open again afterwards if still unresolved",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			forDur, err := policy.ParseDuration(forText)
			if err != nil || forDur <= 0 {
				return usageError{fmt.Errorf("--for %q: give how long the acknowledgement lasts, a positive duration such as 720h or 30d", forText)}
			}
			rt, err := openRuntime(cmd.Context(), ev, cfgPath, dsn, nil, runtimeNeeds{})
			if err != nil {
				return err
			}
			defer rt.Close()
			f, err := rt.engine.AcknowledgeFinding(cmd.Context(), ev.principal(), args[0], reason, rt.engine.Now().Add(forDur))
			if err != nil {
				return err
			}
			fmt.Fprintf(ev.stdout, "%s acknowledged until %s\n", f.ID, f.AckUntil.Format(time.RFC3339))
			return nil
		},
	}
	ack.Flags().StringVar(&reason, "reason", "", "why the finding may stay (required)")
	ack.Flags().StringVar(&forText, "for", "", "how long, such as 720h or 30d (at most a year)")
	cmd.AddCommand(list, ack)
	cmd.PersistentFlags().StringVar(&cfgPath, "config", "", "config file (env JML_CONFIG)")
	cmd.PersistentFlags().StringVar(&dsn, "db", "", "store: sqlite:PATH or postgres://URL (env JML_DB, default "+DefaultDB+")")
	return cmd
}
