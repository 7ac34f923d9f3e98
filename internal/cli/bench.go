package cli

import (
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/jml-dev/jml/internal/bench"
)

func benchCmd(ev *env) *cobra.Command {
	o := bench.Options{}
	var dir string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure time to revoke, joiner throughput and policy evaluation, each against a same-run baseline",
		Long: "Runs on this machine and prints medians and percentiles with their baselines.\n" +
			"SQLite files go to a temporary directory; --postgres (or JML_BENCH_POSTGRES) names an\n" +
			"empty PostgreSQL database to fill, and without it PostgreSQL is skipped.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.PostgresURL == "" {
				o.PostgresURL = ev.getenv("JML_BENCH_POSTGRES")
			}
			if dir == "" {
				d, err := os.MkdirTemp("", "jml-bench-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(d)
				dir = d
			}
			o.Dir, o.Out = dir, ev.stdout
			return bench.Run(cmd.Context(), o)
		},
	}
	cmd.Flags().IntVar(&o.Leavers, "leavers", 1000, "leavers for time to revoke")
	cmd.Flags().IntVar(&o.Events, "events", 20000, "joiners for throughput")
	cmd.Flags().IntVar(&o.Submitters, "submitters", 8, "concurrent event submitters")
	cmd.Flags().IntVar(&o.Jobs.Workers, "workers", 32, "River workers")
	cmd.Flags().DurationVar(&o.Jobs.FetchCooldown, "fetch-cooldown", time.Millisecond, "River fetch cooldown")
	cmd.Flags().DurationVar(&o.Jobs.PollInterval, "poll-interval", 10*time.Millisecond, "River fetch poll interval")
	cmd.Flags().StringVar(&o.PostgresURL, "postgres", "", "PostgreSQL database URL to benchmark on (env JML_BENCH_POSTGRES)")
	cmd.Flags().StringVar(&dir, "dir", "", "directory for SQLite files (default: a temporary one)")
	return cmd
}
