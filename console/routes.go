package console

import (
	"context"
	"net/http"
	"time"
)

// apiPrefix starts every API path.
const apiPrefix = "/console/api/"

// requestTimeout bounds the NATS and JetStream work of one API request.
const requestTimeout = 5 * time.Second

// handler answers one API request: a value to send as JSON, or an error.
type handler func(ctx context.Context, r *http.Request, s *session) (any, error)

func (c *Console) routes() {
	m := http.NewServeMux()
	m.HandleFunc(apiPrefix+"session", c.method(http.MethodGet, c.handleSession))
	m.HandleFunc(apiPrefix+"login", c.method(http.MethodPost, c.handleLogin))
	m.HandleFunc(apiPrefix+"logout", c.method(http.MethodPost, c.handleLogout))

	m.HandleFunc(apiPrefix+"overview", c.read(c.overview))
	m.HandleFunc(apiPrefix+"services", c.read(c.services))
	m.HandleFunc(apiPrefix+"series", c.read(c.seriesAPI))
	m.HandleFunc(apiPrefix+"events", c.read(c.events))
	m.HandleFunc(apiPrefix+"events/tail", c.method(http.MethodGet, c.tail))
	m.HandleFunc(apiPrefix+"events/{seq}", c.read(c.event))
	m.HandleFunc(apiPrefix+"members", c.read(c.membersAPI))
	m.HandleFunc(apiPrefix+"members/{service}/{instance}", c.read(c.member))
	m.HandleFunc(apiPrefix+"balancer", c.read(c.balancerAPI))
	m.HandleFunc(apiPrefix+"alerts", c.read(c.alerts))
	m.HandleFunc(apiPrefix+"silences", c.write(c.addSilence))
	m.HandleFunc(apiPrefix+"silences/{id}/expire", c.write(c.expireSilence))
	m.HandleFunc(apiPrefix+"state", c.read(c.state))
	m.HandleFunc(apiPrefix+"groups", c.read(c.groups))
	m.HandleFunc(apiPrefix, func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, codeNotFound, "no such API path: "+r.URL.Path)
	})
	m.Handle("/", c.pagesHandler())
	c.mux = m
}

// method refuses requests of another method.
func (c *Console) method(method string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			fail(w, http.StatusMethodNotAllowed, codeMethod, r.Method+" "+r.URL.Path+": use "+method)
			return
		}
		h(w, r)
	}
}

// read serves a GET endpoint to any session (any visitor without --auth)
// once the platform is connected.
func (c *Console) read(h handler) http.HandlerFunc {
	return c.method(http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		s, ok := c.authorize(w, r)
		if !ok {
			return
		}
		c.serve(w, r, s, h)
	})
}

// write serves a POST endpoint to admin sessions that send their CSRF
// token, from the console's own origin.
func (c *Console) write(h handler) http.HandlerFunc {
	return c.method(http.MethodPost, func(w http.ResponseWriter, r *http.Request) {
		if err := c.xorigin.Check(r); err != nil {
			fail(w, http.StatusForbidden, codeForbidden, "cross-origin request refused")
			return
		}
		s, ok := c.authorize(w, r)
		if !ok {
			return
		}
		if !s.checkCSRF(r.Header.Get(csrfHeader)) {
			fail(w, http.StatusForbidden, codeForbidden, "missing or wrong "+csrfHeader+" header: read it from GET "+apiPrefix+"session")
			return
		}
		if !s.canWrite() {
			fail(w, http.StatusForbidden, codeForbidden, "role "+s.role+" may not change anything: log in as an admin")
			return
		}
		c.serve(w, r, s, h)
	})
}

func (c *Console) serve(w http.ResponseWriter, r *http.Request, s *session, h handler) {
	if c.platform() == nil {
		fail(w, http.StatusServiceUnavailable, codeUnavailable, "the platform is starting: not connected to NATS yet")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	v, err := h(ctx, r, s)
	if err != nil {
		failErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}
