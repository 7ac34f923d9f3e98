// Command jml is the joiner/mover/leaver engine: `jml serve` runs the API
// and workers; the other commands inspect and operate it.
package main

import (
	"context"
	"os"

	"github.com/jml-dev/jml/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}
