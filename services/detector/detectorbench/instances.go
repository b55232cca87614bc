package detectorbench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/service"
)

// InstanceOptions configure ServeInstances.
type InstanceOptions struct {
	// URL is the NATS server to heartbeat to.
	URL string
	// Service names the instances' micro service (platform-<Service>).
	Service string
	// Instances is how many micro service instances to run.
	Instances int
	// Interval is their heartbeat interval.
	Interval time.Duration
	// Burners is how many goroutines spin on the CPU beside them, with
	// the process held to one OS thread (GOMAXPROCS 1), so the heartbeats
	// compete for the CPU; 0 for none.
	Burners int
}

// ServeInstances runs micro service instances that heartbeat as every
// platform service does (service.New), until ctx is done or the process is
// killed. It is what a recorded process runs (see Record).
func ServeInstances(ctx context.Context, opts InstanceOptions) error {
	nc, err := nats.Connect(opts.URL, nats.Name("platform-"+opts.Service), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("instances: connect: %w", err)
	}
	defer nc.Close()
	if opts.Burners > 0 {
		runtime.GOMAXPROCS(1)
		for range opts.Burners {
			go burn(ctx)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var wg sync.WaitGroup
	errs := make(chan error, opts.Instances)
	for range opts.Instances {
		svc, err := service.New(service.Options{
			Conn: nc, Name: opts.Service, Description: "Recorded heartbeat timing",
			HeartbeatInterval: opts.Interval, Logger: log,
		})
		if err != nil {
			return fmt.Errorf("instances: %w", err)
		}
		wg.Go(func() {
			if err := svc.Run(ctx); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// burn spins until ctx is done.
func burn(ctx context.Context) {
	x := 1.0
	for ctx.Err() == nil {
		for range 1 << 16 {
			x = x*1.0000001 + 1e-9
		}
	}
	_ = x
}
