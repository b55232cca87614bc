package console

import (
	"io/fs"
	"net/http"
	"path"
	"strings"
)

// pages holds the console's pages, rooted at the directory that holds
// index.html. console/web.go sets it from its embedded files in an init
// function; nil serves a placeholder.
var pages fs.FS

// pagesHandler serves the pages: a file when the path names one, else
// index.html for paths without an extension (the pages route on the
// client), else 404.
func pagesHandler() http.Handler {
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
	files := http.FileServerFS(pages)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if name == "" {
			name = "index.html"
		}
		if _, err := fs.Stat(pages, name); err != nil {
			if path.Ext(name) != "" {
				http.NotFound(w, r)
				return
			}
			r2 := r.Clone(r.Context())
			r2.URL.Path = "/"
			files.ServeHTTP(w, r2)
			return
		}
		files.ServeHTTP(w, r)
	})
}
