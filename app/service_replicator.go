package app

import "github.com/platform/platform/services/replicator"

func init() {
	register("replicator", 20, func(d Deps) (Runner, error) {
		return replicator.New(replicator.Options{
			Conn: d.Conn, JS: d.JS,
			PerEvent:  d.Ingest.PerEvent,
			TopicRate: d.Ingest.TopicRate, ClientRate: d.Ingest.ClientRate,
			HeartbeatInterval: d.HeartbeatInterval,
			Logger:            d.Logger, Registerer: d.Registerer,
		})
	})
}
