package main

import (
	"context"
	"fmt"
	"io"
)

// benchMore dispatches the load tools of the media and relay planes.
func benchMore(_ context.Context, kind string, _ []string, _, stderr io.Writer) int {
	fmt.Fprintf(stderr, "parley bench: unknown kind %q (signal, turn, fanout)\n", kind)
	return 2
}
