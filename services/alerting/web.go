package alerting

import (
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/prometheus/exporter-toolkit/web"
)

// validateWeb checks the HTTP API's web configuration: the file reads as
// Alertmanager's --web.config.file does, and an API that other hosts can
// reach is not served to anyone without one when RequireWebConfig is set.
func (o *Options) validateWeb() error {
	if o.WebConfigFile != "" {
		if o.HTTPAddr == "" {
			return errors.New("a web config file without an HTTP address")
		}
		if err := web.Validate(o.WebConfigFile); err != nil {
			return fmt.Errorf("web config %s: %w", o.WebConfigFile, err)
		}
		return nil
	}
	if o.HTTPAddr != "" && o.RequireWebConfig && !loopback(o.HTTPAddr) {
		return fmt.Errorf("the HTTP API on %s would let anyone on the network post alerts and silences past the NATS roles: "+
			"give a web config file (basic auth, TLS) or bind it to 127.0.0.1", o.HTTPAddr)
	}
	return nil
}

// loopback reports whether addr (host:port) listens on a loopback address
// only; an empty host or an unspecified one listens on every interface.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// serveWeb serves srv on l with the web config's TLS and basic auth, as
// Alertmanager does (prometheus/exporter-toolkit), or plain HTTP without
// a config file.
func (s *Service) serveWeb(l net.Listener, srv *http.Server) error {
	return web.Serve(l, srv, &web.FlagConfig{WebConfigFile: &s.opts.WebConfigFile}, s.log)
}
