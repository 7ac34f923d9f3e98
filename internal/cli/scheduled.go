package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/jml-dev/jml/internal/engine"
)

func scheduledCmd(ev *env) *cobra.Command {
	cmd := &cobra.Command{Use: "scheduled", Short: "What jml will do at a known time: scheduled events and grant expiries"}
	var cfgPath, dsn, format, kind, until string
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List what is due, soonest first (GET /v1/scheduled)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := engine.ScheduleFilter{Kind: engine.DueKind(kind), Limit: limit}
			if until != "" {
				t, err := time.Parse(time.RFC3339, until)
				if err != nil {
					return usageError{fmt.Errorf("--until %q: give an RFC 3339 time such as 2026-12-31T00:00:00Z", until)}
				}
				f.Until = t
			}
			rt, err := openRuntime(cmd.Context(), ev, cfgPath, dsn, nil, runtimeNeeds{})
			if err != nil {
				return err
			}
			defer rt.Close()
			items, err := rt.engine.Schedule(cmd.Context(), ev.principal(), f)
			if err != nil {
				return err
			}
			return output(ev.stdout, format, items, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "AT\tIDENTITY\tWHAT")
				for _, d := range items {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", d.At.Format(time.RFC3339), d.IdentityID, dueWhat(d))
				}
			})
		},
	}
	list.Flags().StringVar(&kind, "kind", "", "only event or grant_expiry")
	list.Flags().StringVar(&until, "until", "", "only what is due at or before this RFC 3339 time")
	list.Flags().IntVar(&limit, "limit", 1000, fmt.Sprintf("at most this many of each kind (1 to %d)", engine.MaxScheduleLimit))
	list.Flags().StringVarP(&format, "output", "o", "table", "table, json or yaml")
	readFlags(list, &dsn, &cfgPath)
	cmd.AddCommand(list)
	return cmd
}

// dueWhat says what a Due is, in a table's last column.
func dueWhat(d engine.Due) string {
	if d.Kind == engine.DueGrantExpiry {
		return fmt.Sprintf("grant %s (%s) expires", d.Entitlement, d.System)
	}
	return fmt.Sprintf("%s %s (%s/%s)", d.Type, d.EventID, d.Source, d.SourceEventID)
}
