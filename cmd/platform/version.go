package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/platform/platform/internal/version"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the platform version and the versions it embeds",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "platform %s (%s)\n", version.String(), runtime.Version())
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, d := range bi.Deps {
					switch d.Path {
					case "github.com/nats-io/nats-server/v2", "github.com/nats-io/nats.go":
						fmt.Fprintf(w, "  %s %s\n", d.Path, d.Version)
					}
				}
			}
		},
	}
}
