package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/hrfeed"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/store"
)

func importCmd(ev *env) *cobra.Command {
	cmd := &cobra.Command{Use: "import", Short: "Import lifecycle events from a source's files"}
	var cfgPath, dsn, mappingPath, format string
	var apply bool
	hr := &cobra.Command{
		Use:   "hr FILE --mapping MAPPING.yaml",
		Short: "Compare an HR snapshot (CSV or JSON) with the previous one and derive joiners, movers and leavers",
		Long: "Reads the whole file, compares it with the snapshot of the mapping's source imported last, and\n" +
			"prints the events that would take jml there (a dry run). With --apply they are submitted, unless the\n" +
			"mapping's mass-change guard holds them for an admin (jml holds list | release | discard), and the\n" +
			"snapshot is stored once every event is accepted.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if mappingPath == "" {
				return usageError{errors.New("--mapping is required")}
			}
			m, err := hrfeed.LoadMapping(mappingPath)
			if err != nil {
				return err
			}
			ff, err := m.FormatOf(args[0])
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			rt, err := openRuntime(cmd.Context(), ev, cfgPath, dsn, nil, runtimeNeeds{create: true, policy: true, systems: true})
			if err != nil {
				return err
			}
			defer rt.Close()
			// Values the policy does not admit are refused at their cell,
			// before any event is derived (the engine would refuse them
			// too, without the line).
			m.CheckAttributes = rt.engine.Policy().CheckAttributes
			progress := progressBar(ev, f)
			recs, err := m.Read(f, ff, progress)
			if progress != nil {
				fmt.Fprint(ev.stderr, "\r\033[K")
			}
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			prev := map[string]hrfeed.Record{}
			data, err := rt.engine.Snapshot(cmd.Context(), ev.principal(), m.Source)
			if err != nil {
				return err
			}
			if data != nil {
				if err := json.Unmarshal(data, &prev); err != nil {
					return err
				}
			}
			d := m.Compare(prev, recs, rt.engine.Now())
			held, why := d.Held(m.Guard)
			if !apply {
				if err := printEvents(ev, format, d.Events); err != nil {
					return err
				}
				fmt.Fprintf(ev.stderr, "%s; %s\n", summarize(d), guardLine(held, why))
				return nil
			}
			snap, err := json.Marshal(d.Next)
			if err != nil {
				return err
			}
			res, err := rt.engine.Import(cmd.Context(), ev.principal(), engine.Import{Source: m.Source, Events: d.Events, Cancel: d.Cancel, Snapshot: snap, HoldReason: why})
			if err != nil {
				return err
			}
			if res.Hold != nil {
				fmt.Fprintf(ev.stdout, "held as %s: %s; nothing was applied (jml holds release %s, or discard)\n", res.Hold.ID, res.Hold.Reason, res.Hold.ID)
				return nil
			}
			fmt.Fprintf(ev.stdout, "%s; %d accepted, %d already seen", summarize(d), res.Accepted, res.Duplicates)
			if len(d.Cancel) > 0 {
				fmt.Fprintf(ev.stdout, ", %d scheduled leavers cancelled", res.Cancelled)
			}
			fmt.Fprintln(ev.stdout)
			return importFailures(ev, res)
		},
	}
	hr.Flags().StringVar(&mappingPath, "mapping", "", "mapping YAML (source, key column, attribute columns, dates, guard)")
	hr.Flags().BoolVar(&apply, "apply", false, "submit the events (default: print them)")
	hr.Flags().StringVarP(&format, "output", "o", "table", "dry-run output: table or json")
	hr.Flags().StringVar(&cfgPath, "config", "", "config file (env JML_CONFIG)")
	dbFlag(hr, &dsn)
	cmd.AddCommand(hr)
	return cmd
}

// importFailures prints refused events and fails the command if any.
func importFailures(ev *env, res *engine.ImportResult) error {
	for _, f := range res.Failed {
		fmt.Fprintf(ev.stderr, "refused %s %s (%s): %v\n", f.Event.Type, f.Event.ExternalID, f.Event.ID, f.Err)
	}
	if len(res.Failed) > 0 {
		return fmt.Errorf("%d events refused; the snapshot was not stored, so the next import derives them again", len(res.Failed))
	}
	return nil
}

// summarize counts what a snapshot derives: every event by type, the
// future-dated ones, end dates removed, and
// rows that had ended before jml saw them (they derive no event, and are
// said rather than dropped).
func summarize(d *hrfeed.Diff) string {
	n := map[identity.EventType]int{}
	future := 0
	for _, e := range d.Events {
		n[e.Type]++
		if e.EffectiveAt != nil {
			future++
		}
	}
	out := fmt.Sprintf("%d joiners, %d movers, %d leavers (%d future-dated)", n[identity.Joiner], n[identity.Mover], n[identity.Leaver], future)
	if len(d.Cancel) > 0 {
		out += fmt.Sprintf(", %d end dates removed", len(d.Cancel))
	}
	if len(d.NeverJoined) > 0 {
		out += fmt.Sprintf(", %d new rows already ended (no event: %s)", len(d.NeverJoined), strings.Join(d.NeverJoined, " "))
	}
	return out
}

func guardLine(held bool, why string) string {
	if held {
		return "the mass-change guard would hold this import: " + why
	}
	return "the mass-change guard would let it through"
}

func printEvents(ev *env, format string, evs []identity.Event) error {
	if evs == nil {
		evs = []identity.Event{}
	}
	return output(ev.stdout, format, evs, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "TYPE\tEXTERNAL ID\tEFFECTIVE\tCHANGES\tEVENT ID")
		for _, e := range evs {
			at := "now"
			if e.EffectiveAt != nil {
				at = e.EffectiveAt.Format("2006-01-02")
			}
			var parts []string
			if e.Manager != "" {
				parts = append(parts, "manager="+e.Manager)
			}
			keys := make([]string, 0, len(e.Attributes))
			for k := range e.Attributes {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if v := e.Attributes[k]; v == nil {
					parts = append(parts, k+" removed")
				} else {
					parts = append(parts, fmt.Sprintf("%s=%v", k, v))
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Type, e.ExternalID, at, strings.Join(parts, " "), e.ID)
		}
	})
}

// progressBar returns a progress callback for f when stderr is a terminal
// and the file is large, else nil.
func progressBar(ev *env, f *os.File) func(int64) {
	st, err := f.Stat()
	if err != nil || st.Size() < 8<<20 {
		return nil
	}
	w, ok := ev.stderr.(*os.File)
	if !ok {
		return nil
	}
	if wi, err := w.Stat(); err != nil || wi.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	size, last := st.Size(), -1
	return func(n int64) {
		pct := int(100 * n / size)
		if pct != last {
			last = pct
			fmt.Fprintf(w, "\rreading %s: %3d%% [%-40s]", f.Name(), pct, strings.Repeat("#", pct*40/100))
		}
	}
}

func holdsCmd(ev *env) *cobra.Command {
	cmd := &cobra.Command{Use: "holds", Short: "Batches the mass-change guard held: list, release, discard"}
	var cfgPath, dsn, format, status string
	list := &cobra.Command{
		Use:   "list",
		Short: "List held batches",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, err := openRuntime(cmd.Context(), ev, cfgPath, dsn, nil, runtimeNeeds{policy: true})
			if err != nil {
				return err
			}
			defer rt.Close()
			hs, err := rt.engine.Holds(cmd.Context(), ev.principal(), store.HoldStatus(status))
			if err != nil {
				return err
			}
			if hs == nil {
				hs = []store.Hold{}
			}
			return output(ev.stdout, format, hs, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tSOURCE\tSTATUS\tEVENTS\tCREATED\tREASON")
				for _, h := range hs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", h.ID, h.Source, h.Status, len(h.Events), h.CreatedAt.Format(time.RFC3339), h.Reason)
				}
			})
		},
	}
	list.Flags().StringVar(&status, "status", "held", "held, released, discarded, or \"\" for all")
	list.Flags().StringVarP(&format, "output", "o", "table", "table, json or yaml")
	decide := func(use, short string, release bool) *cobra.Command {
		c := &cobra.Command{
			Use:   use + " ID",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				// A release applies the batch's events; a discard calls no system.
				rt, err := openRuntime(cmd.Context(), ev, cfgPath, dsn, nil, runtimeNeeds{policy: true, systems: release})
				if err != nil {
					return err
				}
				defer rt.Close()
				h, res, err := rt.engine.DecideHold(cmd.Context(), ev.principal(), args[0], release)
				if err != nil {
					return err
				}
				if res != nil {
					fmt.Fprintf(ev.stdout, "%s released: %d accepted, %d already seen\n", h.ID, res.Accepted, res.Duplicates)
					return nil
				}
				fmt.Fprintf(ev.stdout, "%s discarded: none of its %d events was applied\n", h.ID, len(h.Events))
				return nil
			},
		}
		return c
	}
	cmd.AddCommand(list, decide("release", "Apply a held batch", true), decide("discard", "Drop a held batch without applying it", false))
	cmd.PersistentFlags().StringVar(&cfgPath, "config", "", "config file (env JML_CONFIG)")
	cmd.PersistentFlags().StringVar(&dsn, "db", "", "store: sqlite:PATH or postgres://URL (env JML_DB, default "+DefaultDB+")")
	return cmd
}
