package cli

import (
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"

	"github.com/jml-dev/jml/internal/bench"
)

func benchCmd(ev *env) *cobra.Command {
	o := bench.Options{}
	var dir, cpuProfile string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure time to revoke, joiner throughput and policy evaluation, each against a same-run baseline",
		Long: "Runs on this machine and prints medians and percentiles with their baselines.\n" +
			"SQLite files go to a temporary directory. On the PostgreSQL server --postgres names\n" +
			"(or JML_BENCH_POSTGRES), bench creates its own databases and drops them; --postgres \"\"\n" +
			"skips PostgreSQL. The systems part also starts a private slapd and makes (and\n" +
			"removes) users named jmlbench* in PostgreSQL, Redis and MariaDB.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tuneGC()
			if v := ev.getenv("JML_BENCH_POSTGRES"); v != "" && !cmd.Flags().Changed("postgres") {
				o.PostgresAdminURL = v
			}
			if dir == "" {
				d, err := os.MkdirTemp("", "jml-bench-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(d)
				dir = d
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return fmt.Errorf("cpu profile: %w", err)
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return fmt.Errorf("cpu profile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			o.Dir, o.Out = dir, ev.stdout
			return bench.Run(cmd.Context(), o)
		},
	}
	cmd.Flags().IntVar(&o.Leavers, "leavers", 1000, "leavers for time to revoke")
	cmd.Flags().IntVar(&o.Events, "events", 20000, "joiners for throughput")
	cmd.Flags().IntVar(&o.Submitters, "submitters", 16, "concurrent event submitters (throughput also runs with as many as --workers)")
	cmd.Flags().IntVar(&o.Rounds, "rounds", 3, "throughput rounds, each jml then River back to back; medians are reported")
	cmd.Flags().IntVar(&o.Jobs.Workers, "workers", 100, "River workers")
	cmd.Flags().DurationVar(&o.Jobs.FetchCooldown, "fetch-cooldown", time.Millisecond, "River fetch cooldown")
	cmd.Flags().DurationVar(&o.Jobs.PollInterval, "poll-interval", 10*time.Millisecond, "River fetch poll interval")
	cmd.Flags().StringVar(&o.PostgresAdminURL, "postgres", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server to benchmark on (env JML_BENCH_POSTGRES)")
	cmd.Flags().StringVar(&dir, "dir", "", "directory for SQLite files (default: a temporary one)")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a Go CPU profile of the whole run to this file")
	cmd.Flags().IntVar(&o.SCIMUsers, "scim-users", 5000, "users POSTed then PATCHed over SCIM")
	cmd.Flags().IntVar(&o.RealLeavers, "real-leavers", 200, "leavers for time to revoke across real systems")
	cmd.Flags().StringVar(&o.RedisAddr, "redis", "127.0.0.1:6379", "Redis for the systems part (users jmlbench* are made and removed)")
	cmd.Flags().StringVar(&o.MySQLDSN, "mysql", "root@tcp(127.0.0.1:3306)/", "MariaDB/MySQL DSN for the systems part")
	cmd.Flags().StringSliceVar(&o.Only, "only", nil, "run only these parts: policy, hrdiff, scim, revoke, sqlite, jobs, postgres, systems, pglist")
	return cmd
}
