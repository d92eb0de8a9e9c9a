package turn

import (
	"context"
	"testing"
	"time"
)

func TestOptionsDefaults(t *testing.T) {
	if _, err := (Options{}).withDefaults(); err == nil {
		t.Fatal("missing server accepted")
	}
	o, err := Options{Server: "127.0.0.1:3478", Secret: "s", Duration: time.Hour, Rate: -1}.withDefaults()
	if err != nil || o.Duration != time.Minute || o.Rate != 50000 || o.Allocations != 16 || o.Size != 100 {
		t.Fatalf("defaults: %+v %v", o, err)
	}
}

func TestRunNoServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Nothing listens on the discard port of loopback: setup must fail, not hang.
	if _, err := Run(ctx, Options{Server: "127.0.0.1:9", Secret: "s", Allocations: 1}); err == nil {
		t.Fatal("run against no server succeeded")
	}
}
