package cli

import "github.com/spf13/cobra"

func benchCmd(ev *env) *cobra.Command {
	return &cobra.Command{Use: "bench", Short: "Measure time to revoke, throughput and policy evaluation"}
}
