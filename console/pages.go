package console

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// pages holds the console's pages, rooted at the directory that holds
// index.html; console/web.go sets it from its embedded files in an init
// function, with page and assets built from them. nil serves a
// placeholder.
var (
	pages  fs.FS
	page   document
	assets map[string]asset
)

// basePolicy is the Content-Security-Policy of every answer; the pages'
// one inline script is added to it by its hash.
const basePolicy = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// policy is the Content-Security-Policy header: scripts only from this
// origin, or the inline one whose hash the console computed at start-up.
func policy() string {
	if page.scriptHash == "" {
		return basePolicy
	}
	return basePolicy + "; script-src 'self' " + page.scriptHash
}

// loadAssets reads every file of fsys with its content type and ETag.
func loadAssets(fsys fs.FS) (map[string]asset, error) {
	files := map[string]asset{}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ctype := mime.TypeByExtension(path.Ext(name))
		if ctype == "" {
			ctype = http.DetectContentType(b)
		}
		// Weak: the same file may go out compressed or not.
		files[name] = asset{body: b, etag: `W/"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`, ctype: ctype}
		return nil
	})
	return files, err
}

// asset is one embedded file, served with an ETag so that a browser
// revalidates it instead of fetching it again.
type asset struct {
	body  []byte
	etag  string
	ctype string
}

// pagesHandler serves the console: for / and every path without an
// extension (the pages route on the client) the one document that holds
// the style sheet, the scripts and the caller's session, so the first
// frame needs no other request; the files themselves by name; else 404.
func (c *Console) pagesHandler() http.Handler {
	if pages == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write([]byte(`<!doctype html><title>platform console</title><p>This binary was built without the console's pages. The JSON API is under <code>/console/api/</code>.</p>`))
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if name == "" || name == "index.html" || path.Ext(name) == "" {
			c.serveDocument(w, r)
			return
		}
		f, ok := assets[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.ctype)
		h.Set("ETag", f.etag)
		h.Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.body))
	})
}

// serveDocument writes the page with the caller's session in it (what
// GET /console/api/session answers, CSRF token included), which saves the
// pages a round trip before they ask for their data. It carries the
// token, so no cache keeps it; only this origin's scripts can read it.
func (c *Console) serveDocument(w http.ResponseWriter, r *http.Request) {
	s, err := json.Marshal(c.view(c.current(r))) // escapes <, > and &
	if err != nil {
		http.Error(w, "encode the session: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	var b bytes.Buffer
	b.Grow(len(page.head) + len(s) + len(page.tail))
	b.WriteString(page.head)
	b.Write(s)
	b.WriteString(page.tail)
	_, _ = w.Write(b.Bytes())
}
