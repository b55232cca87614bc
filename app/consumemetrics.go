package app

import (
	"fmt"

	"github.com/platform/platform/services/consume"
	"github.com/platform/platform/services/txn"
)

// registerConsumerMetrics exports every consumer group's status (lag per
// partition, positions, members) on the process's registry, read at
// scrape time: /metrics shows it, and the alerting rules over metrics
// (ConsumerGroupLagging) see it.
func (a *App) registerConsumerMetrics() error {
	store, err := txn.NewStore(a.nc, txn.WithLogger(a.log))
	if err != nil {
		return fmt.Errorf("consumer group metrics: %w", err)
	}
	if err := a.opts.Registry.Register(consume.NewCollector(a.js, store, 0, a.log)); err != nil {
		return fmt.Errorf("consumer group metrics: %w", err)
	}
	return nil
}
