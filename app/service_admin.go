package app

import "github.com/platform/platform/services/admin"

func init() {
	register("admin", 0, func(d Deps) (Runner, error) {
		return admin.New(admin.Options{
			Conn: d.Conn, JS: d.JS, Cluster: d.Cluster,
			HeartbeatInterval: d.HeartbeatInterval,
			Logger:            d.Logger, Registerer: d.Registerer,
		})
	})
}
