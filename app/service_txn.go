package app

import "github.com/platform/platform/services/txn"

func init() {
	register("txn", 30, func(d Deps) (Runner, error) {
		return txn.New(txn.Options{
			Conn:              d.Conn,
			HeartbeatInterval: d.HeartbeatInterval,
			Logger:            d.Logger,
			Registerer:        d.Registerer,
		})
	})
}
