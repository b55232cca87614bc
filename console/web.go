package console

import (
	"embed"
	"io/fs"
)

// web holds the pages: index.html, app.js and its modules under js/, and
// style.css. They are plain files, written to be served as they are: no
// build step, no third-party code, nothing fetched from elsewhere.
//
//go:embed web
var web embed.FS

// Assets are the console's pages, rooted at the directory that holds
// index.html, as the handler serves them at /.
var Assets fs.FS

func init() {
	sub, err := fs.Sub(web, "web")
	if err != nil {
		panic("console: embedded pages: " + err.Error()) // a build mistake, never a runtime one
	}
	Assets = sub
	pages = sub
}
