package app

import (
	"context"

	"github.com/platform/platform/auth"
	"github.com/platform/platform/console"
	"github.com/platform/platform/services/admin"
)

// newConsole builds the console served on the HTTP listener: logins from
// the users file of --auth (without it, loopback clients only), /readyz's
// check, and the process's registry for its 15-minute series, sampled
// until the process stops.
func (a *App) newConsole() (*console.Console, error) {
	o := console.Options{Ready: a.checkReady, Gatherer: a.opts.Registry, Logger: a.log}
	if a.opts.Auth != "" {
		f, err := auth.Load(a.opts.Auth)
		if err != nil {
			return nil, err
		}
		o.Users = f
	}
	c, err := console.New(o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	a.onClose(func() { cancel(); <-done })
	a.mu.Lock()
	a.console = c
	a.mu.Unlock()
	return c, nil
}

// startConsole hands the console the connected platform; it follows
// KV MEMBERS until the process stops, before the connection drains.
func (a *App) startConsole() {
	a.mu.Lock()
	c, nc, js, cl := a.console, a.nc, a.js, a.cluster
	a.mu.Unlock()
	if c == nil {
		return
	}
	p := console.Platform{Conn: nc, JS: js}
	if cl != nil {
		p.Cluster = adminCluster{cl}
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.onClose(cancel)
	c.Start(ctx, p)
}

var _ admin.Cluster = adminCluster{}
