package bench

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/jml-dev/jml/internal/connector"
	"github.com/jml-dev/jml/internal/connector/postgres"
)

// pgListBench lists a PostgreSQL server holding 10,000 login roles and
// 50,000 memberships (each role in 5 of 100 group roles, every group an
// entitlement) through the connector, for reconciliation, and times the
// raw catalog query it rests on in the same run.
func pgListBench(ctx context.Context, o Options) error {
	const users, groups, per = 10000, 100, 5
	pool, err := pgxpool.New(ctx, o.PostgresAdminURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	drop := func() {
		pool.Exec(context.Background(), `DO $$DECLARE r record; BEGIN
  FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE 'jmlbench_l%' ORDER BY rolname DESC LOOP
    EXECUTE format('DROP ROLE %I', r.rolname);
  END LOOP; END$$`)
	}
	drop()
	defer drop()
	setup := time.Now()
	if _, err := pool.Exec(ctx, fmt.Sprintf(`DO $$BEGIN
  FOR g IN 0..%d LOOP EXECUTE format('CREATE ROLE jmlbench_lg%%s NOLOGIN', g); END LOOP;
  FOR u IN 0..%d LOOP
    EXECUTE format('CREATE ROLE jmlbench_lu%%s LOGIN', u);
    FOR k IN 0..%d LOOP EXECUTE format('GRANT jmlbench_lg%%s TO jmlbench_lu%%s', (u + k * 7) %% %d, u); END LOOP;
  END LOOP; END$$`, groups-1, users-1, per-1, groups)); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	setupTime := time.Since(setup)
	targets := map[string]map[string]any{}
	for g := 0; g < groups; g++ {
		targets[fmt.Sprintf("g%d", g)] = map[string]any{"role": fmt.Sprintf("jmlbench_lg%d", g)}
	}
	c, err := postgres.Open(ctx, connector.Config{System: "bench", Type: postgres.Type, Settings: map[string]any{"url": "env:URL"}, Targets: targets,
		Getenv: func(string) string { return o.PostgresAdminURL }})
	if err != nil {
		return err
	}
	defer c.(*postgres.Conn).Close()

	var jml, raw []time.Duration
	var accounts, memberships, rawRows int
	for run := 0; run < 5; run++ {
		start := time.Now()
		states, err := c.(connector.Lister).ListAccounts(ctx)
		if err != nil {
			return err
		}
		jml = append(jml, time.Since(start))
		accounts, memberships = 0, 0
		for _, s := range states {
			if len(s.Name) > 11 && s.Name[:11] == "jmlbench_lu" {
				accounts++
				memberships += len(s.Entitlements)
			}
		}
		start = time.Now()
		rows, err := pool.Query(ctx, `SELECT r.rolname, r.rolcanlogin, g.rolname FROM pg_roles r
LEFT JOIN pg_auth_members m ON m.member = r.oid LEFT JOIN pg_roles g ON g.oid = m.roleid`)
		if err != nil {
			return err
		}
		rawRows = 0
		for rows.Next() {
			var name string
			var login bool
			var group *string
			if err := rows.Scan(&name, &login, &group); err != nil {
				rows.Close()
				return err
			}
			rawRows++
		}
		rows.Close()
		raw = append(raw, time.Since(start))
	}
	if accounts != users || memberships != users*per {
		return fmt.Errorf("listed %d accounts with %d entitlements, want %d and %d", accounts, memberships, users, users*per)
	}
	sortDurations(jml)
	sortDurations(raw)
	fmt.Fprintf(o.Out, "\nreconciliation listing (PostgreSQL, %d roles, %d memberships, every group an entitlement; median of 5; setup took %s)\n",
		users, users*per, setupTime.Round(time.Millisecond))
	fmt.Fprintf(o.Out, "  jml ListAccounts:      %s  (target <= 10 s)\n", ms(jml[2]))
	fmt.Fprintf(o.Out, "  baseline catalog join: %s  (%d rows scanned by a plain client)\n", ms(raw[2]), rawRows)
	fmt.Fprintf(o.Out, "  ratio %.2fx\n", float64(jml[2])/float64(raw[2]))
	return nil
}

func sortDurations(d []time.Duration) { sort.Slice(d, func(i, j int) bool { return d[i] < d[j] }) }
