package console

import (
	"embed"
	"io/fs"
)

// web holds the pages: index.html, app.js and its modules under js/, and
// style.css. They are plain files, no third-party code, nothing fetched
// from elsewhere; the console joins them into one document at start-up
// (bundle.go) and serves the files themselves too.
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
	if page, err = buildDocument(sub); err != nil {
		panic("console: embedded pages: " + err.Error())
	}
	if assets, err = loadAssets(sub); err != nil {
		panic("console: embedded pages: " + err.Error())
	}
	pages = sub
}
