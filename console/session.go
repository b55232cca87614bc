package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/platform/platform/auth"
)

const (
	// cookieName is the session cookie.
	cookieName = "platform_console"
	// csrfHeader carries the session's CSRF token on every POST.
	csrfHeader = "X-CSRF-Token"
	// maxSessions bounds the sessions kept in memory; the oldest goes.
	maxSessions = 10000
	// maxLoginBody bounds a login request.
	maxLoginBody = 4096
)

// session is a logged-in user (or, without --auth, the one anonymous
// visitor) with its CSRF token.
type session struct {
	id      string
	user    string
	role    string
	csrf    string
	expires time.Time
}

func (s *session) canWrite() bool { return s.role == auth.RoleAdmin }

func (s *session) checkCSRF(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.csrf)) == 1
}

// sessions are the logins of this process, in memory: a restart logs
// everyone out.
type sessions struct {
	ttl   time.Duration
	anon  *session // without --auth
	login *rate.Limiter

	mu  sync.Mutex
	all map[string]*session
}

func newSessions(ttl time.Duration) *sessions {
	return &sessions{
		ttl:   ttl,
		anon:  &session{role: auth.RoleAdmin, csrf: token()},
		login: rate.NewLimiter(20, 20), // bcrypt costs ~50ms of CPU: bound guessing and its cost
		all:   map[string]*session{},
	}
}

// token returns 256 random bits, URL-safe.
func token() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (ss *sessions) create(u auth.User, now time.Time) *session {
	s := &session{id: token(), user: u.Name, role: u.Role, csrf: token(), expires: now.Add(ss.ttl)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.all) >= maxSessions {
		var oldest *session
		for _, o := range ss.all {
			if oldest == nil || o.expires.Before(oldest.expires) {
				oldest = o
			}
		}
		delete(ss.all, oldest.id)
	}
	ss.all[s.id] = s
	return s
}

func (ss *sessions) get(id string, now time.Time) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.all[id]
	if s != nil && now.After(s.expires) {
		delete(ss.all, id)
		return nil
	}
	return s
}

func (ss *sessions) remove(id string) {
	ss.mu.Lock()
	delete(ss.all, id)
	ss.mu.Unlock()
}

// current returns the request's session: the anonymous one without
// --auth, else the cookie's (nil: none or expired).
func (c *Console) current(r *http.Request) *session {
	if c.opts.Users == nil {
		return c.sessions.anon
	}
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	return c.sessions.get(ck.Value, time.Now())
}

// authorize returns the request's session or answers 401.
func (c *Console) authorize(w http.ResponseWriter, r *http.Request) (*session, bool) {
	s := c.current(r)
	if s == nil {
		fail(w, http.StatusUnauthorized, codeAuth, "log in first: POST "+apiPrefix+"login")
		return nil, false
	}
	return s, true
}

// sessionView is the answer of /session and /login.
type sessionView struct {
	Auth     bool       `json:"auth"`
	User     string     `json:"user"`
	Role     string     `json:"role"`
	CanWrite bool       `json:"can_write"`
	CSRF     string     `json:"csrf"`
	Expires  *time.Time `json:"expires,omitempty"`
}

func (c *Console) view(s *session) sessionView {
	v := sessionView{Auth: c.opts.Users != nil}
	if s != nil {
		v.User, v.Role, v.CanWrite, v.CSRF = s.user, s.role, s.canWrite(), s.csrf
		if !s.expires.IsZero() {
			v.Expires = &s.expires
		}
	}
	return v
}

func (c *Console) handleSession(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, c.view(c.current(r)))
}

// loginRequest is the body of POST /login.
type loginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// loginWant is what a refused login body is told.
const loginWant = `want {"user":"..","password":".."} (at most 4 KiB)`

// decodeLogin reads a login body, read up to maxLoginBody+1 bytes: at
// most maxLoginBody bytes of JSON naming a user, or a bad request.
func decodeLogin(body []byte) (loginRequest, error) {
	var req loginRequest
	if len(body) > maxLoginBody || json.Unmarshal(body, &req) != nil || req.User == "" {
		return loginRequest{}, &apiError{http.StatusBadRequest, codeBadRequest, loginWant}
	}
	return req, nil
}

func (c *Console) handleLogin(w http.ResponseWriter, r *http.Request) {
	if err := c.xorigin.Check(r); err != nil {
		fail(w, http.StatusForbidden, codeForbidden, "cross-origin request refused")
		return
	}
	if c.opts.Users == nil {
		fail(w, http.StatusBadRequest, codeBadRequest, "no login without --auth: the console is open to loopback clients")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxLoginBody+1))
	if err != nil {
		fail(w, http.StatusBadRequest, codeBadRequest, loginWant)
		return
	}
	req, err := decodeLogin(body)
	if err != nil {
		failErr(w, err)
		return
	}
	if !c.sessions.login.Allow() {
		fail(w, http.StatusTooManyRequests, codeTooMany, "too many logins: try again in a second")
		return
	}
	u, err := c.opts.Users.Authenticate(req.User, req.Password)
	if errors.Is(err, auth.ErrBadLogin) || err != nil {
		c.log.Info("console login refused", "user", req.User, "remote", r.RemoteAddr)
		fail(w, http.StatusUnauthorized, codeAuth, "unknown user or wrong password")
		return
	}
	s := c.sessions.create(u, time.Now())
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: s.id, Path: "/", Expires: s.expires,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	c.log.Info("console login", "user", u.Name, "role", u.Role, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, c.view(s))
}

func (c *Console) handleLogout(w http.ResponseWriter, r *http.Request) {
	if err := c.xorigin.Check(r); err != nil {
		fail(w, http.StatusForbidden, codeForbidden, "cross-origin request refused")
		return
	}
	if s := c.current(r); s != nil && s.id != "" {
		if !s.checkCSRF(r.Header.Get(csrfHeader)) {
			fail(w, http.StatusForbidden, codeForbidden, "missing or wrong "+csrfHeader+" header")
			return
		}
		c.sessions.remove(s.id)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	writeJSON(w, http.StatusOK, struct{}{})
}
