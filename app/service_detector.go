package app

import "github.com/platform/platform/services/detector"

func init() {
	register("detector", 10, func(d Deps) (Runner, error) {
		o := detector.DefaultOptions()
		o.Conn = d.Conn
		o.Logger = d.Logger
		o.Registerer = d.Registerer
		if d.HeartbeatInterval != 0 {
			o.HeartbeatInterval = d.HeartbeatInterval
		}
		return detector.New(o)
	})
}
