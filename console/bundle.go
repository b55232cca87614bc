package console

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"
)

// The console's pages are written as plain JavaScript modules, but a
// browser that loads them as modules asks for each file in turn (index.html,
// app.js, every page module, lib.js), and on a busy 2-core host each of
// those requests costs tens of milliseconds before anything paints. So at
// start-up the modules are joined into one script and the style sheet
// inlined, and the console serves one document that needs no other request
// to paint. The joining understands only the forms the modules use, and
// refuses any other, so the pages stay ordinary modules a browser could
// also load one by one.

var (
	// import { a, b as c } from './x.js';   import x from './x.js';
	importLine = regexp.MustCompile(`^import\s+(?:\{([^}]*)\}|([A-Za-z_$][\w$]*))\s+from\s+'([^']+)';\s*$`)
	// export [default] function|async function|class|const name
	exportLine = regexp.MustCompile(`^export\s+(default\s+)?((?:async\s+)?function\*?|class|const)\s+([A-Za-z_$][\w$]*)`)
	identifier = regexp.MustCompile(`^[A-Za-z_$][\w$]*$`)
	notIdent   = regexp.MustCompile(`[^\w]`)
)

// joinModules returns the module entry (a path in fsys) and every module it
// imports, each wrapped in a function that returns its exports, in the
// order a browser would run them: each module after the modules it imports.
func joinModules(fsys fs.FS, entry string) (string, error) {
	var out strings.Builder
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, from string) error
	visit = func(name, from string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("%s imports %s, which imports it back: break the cycle", from, name)
		case 2:
			return nil
		}
		state[name] = 1
		src, err := fs.ReadFile(fsys, name)
		if err != nil {
			return fmt.Errorf("%s imports %s: %w", from, name, err)
		}
		lines := strings.Split(string(src), "\n")
		var exports []string
		for i, line := range lines {
			switch {
			case strings.HasPrefix(line, "import"):
				m := importLine.FindStringSubmatch(line)
				if m == nil {
					return fmt.Errorf("%s:%d: write imports as import { a, b as c } from './x.js'; or import x from './x.js'; on one line", name, i+1)
				}
				dep := path.Join(path.Dir(name), m[3])
				if err := visit(dep, name); err != nil {
					return err
				}
				var binds []string
				if m[2] != "" {
					binds = append(binds, "default: "+m[2])
				}
				for _, spec := range strings.Split(m[1], ",") {
					f := strings.Fields(spec)
					switch {
					case len(f) == 0:
					case len(f) == 1 && identifier.MatchString(f[0]):
						binds = append(binds, f[0])
					case len(f) == 3 && f[1] == "as" && identifier.MatchString(f[0]) && identifier.MatchString(f[2]):
						binds = append(binds, f[0]+": "+f[2])
					default:
						return fmt.Errorf("%s:%d: cannot read the import %q", name, i+1, strings.TrimSpace(spec))
					}
				}
				lines[i] = "const { " + strings.Join(binds, ", ") + " } = " + moduleVar(dep) + ";"
			case strings.HasPrefix(line, "export"):
				m := exportLine.FindStringSubmatch(line)
				if m == nil {
					return fmt.Errorf("%s:%d: export only named functions, classes and consts (export function f, export default function f, export const x)", name, i+1)
				}
				lines[i] = strings.TrimPrefix(line[len("export"):], " ")
				if m[1] != "" {
					lines[i] = strings.TrimPrefix(lines[i], "default ")
					exports = append(exports, "default: "+m[3])
				} else {
					exports = append(exports, m[3])
				}
			}
		}
		fmt.Fprintf(&out, "const %s = (() => { // %s\n%s\nreturn { %s };\n})();\n",
			moduleVar(name), name, strings.TrimRight(strings.Join(lines, "\n"), "\n"), strings.Join(exports, ", "))
		state[name] = 2
		return nil
	}
	if err := visit(entry, "the page"); err != nil {
		return "", err
	}
	return out.String(), nil
}

// moduleVar names the constant that holds one module's exports.
func moduleVar(name string) string {
	return "$module_" + notIdent.ReplaceAllString(name, "_")
}

// document is index.html with its style sheet and scripts inside it, split
// where the session goes: head, the session's JSON, tail.
type document struct {
	head, tail string
	// scriptHash is the Content-Security-Policy sources that allow the
	// two inline scripts and no other ('sha256-…' 'sha256-…').
	scriptHash string
}

const (
	firstTag  = `<script src="first.js"></script>`
	styleTag  = `<link rel="stylesheet" href="style.css">`
	scriptTag = `<script type="module" src="app.js"></script>`
)

// buildDocument inlines first.js, style.css and the joined modules of
// app.js into index.html, in place of the tags that load them.
func buildDocument(fsys fs.FS) (document, error) {
	read := func(name string) (string, error) {
		b, err := fs.ReadFile(fsys, name)
		return string(b), err
	}
	html, err := read("index.html")
	if err != nil {
		return document{}, err
	}
	first, err := read("first.js")
	if err != nil {
		return document{}, err
	}
	css, err := read("style.css")
	if err != nil {
		return document{}, err
	}
	js, err := joinModules(fsys, "app.js")
	if err != nil {
		return document{}, err
	}
	if strings.Contains(strings.ToLower(css), "</style") {
		return document{}, fmt.Errorf("style.css contains </style, which would end the inlined style early")
	}
	for name, src := range map[string]string{"the modules": js, "first.js": first} {
		if low := strings.ToLower(src); strings.Contains(low, "</script") || strings.Contains(low, "<!--") {
			return document{}, fmt.Errorf("%s: </script or <!-- inside, which an inlined script may not hold: split the string ('<' + '/script')", name)
		}
	}
	for _, tag := range []string{firstTag, styleTag, scriptTag} {
		if strings.Count(html, tag) != 1 {
			return document{}, fmt.Errorf("index.html: want %s once, the tag the console replaces with the file's content", tag)
		}
	}
	html = strings.Replace(html, firstTag, "<script>"+first+"</script>", 1)
	html = strings.Replace(html, styleTag, "<style>\n"+css+"</style>", 1)
	head, tail, _ := strings.Cut(html, scriptTag)
	return document{
		head:       head + `<script type="application/json" id="console-session">`,
		tail:       "</script>\n<script type=\"module\">" + js + "</script>" + tail,
		scriptHash: scriptSource(first) + " " + scriptSource(js),
	}, nil
}

// scriptSource is the Content-Security-Policy source that allows one
// inline script.
func scriptSource(js string) string {
	sum := sha256.Sum256([]byte(js))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}
