package console

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

func TestJoinModules(t *testing.T) {
	fsys := fstest.MapFS{
		"app.js":     {Data: []byte("import { a, b as c } from './js/lib.js';\nimport page from './js/page.js';\npage(a, c);\n")},
		"js/lib.js":  {Data: []byte("export const a = 1;\nexport function b() { return 2; }\nexport async function d() {}\nexport class E {}\n")},
		"js/page.js": {Data: []byte("import { a } from './lib.js';\nexport default function page(x, y) { return a + x + y(); }\n")},
	}
	js, err := joinModules(fsys, "app.js")
	require.NoError(t, err)
	lib := strings.Index(js, "// js/lib.js")
	page := strings.Index(js, "// js/page.js")
	app := strings.Index(js, "// app.js")
	require.True(t, lib >= 0 && lib < page && page < app, "each module after what it imports, once:\n%s", js)
	require.Equal(t, 1, strings.Count(js, "// js/lib.js"))
	for _, want := range []string{
		"const { a, b: c } = $module_js_lib_js;",
		"const { default: page } = $module_js_page_js;",
		"return { a, b, d, E };",
		"function page(x, y)",
		"return { default: page };",
	} {
		require.Contains(t, js, want)
	}
	require.NotContains(t, js, "export ")
	require.NotContains(t, js, "import ")

	for name, src := range map[string]string{
		"export let":       "export let x = 1;\n",
		"export list":      "const x = 1;\nexport { x };\n",
		"anonymous export": "export default () => 1;\n",
		"import star":      "import * as lib from './js/lib.js';\n",
		"dynamic import":   "import('./js/lib.js');\n",
		"missing module":   "import { a } from './js/none.js';\n",
	} {
		bad := fstest.MapFS{"app.js": {Data: []byte(src)}, "js/lib.js": fsys["js/lib.js"]}
		_, err := joinModules(bad, "app.js")
		require.Error(t, err, name)
	}

	cycle := fstest.MapFS{
		"app.js": {Data: []byte("import { a } from './b.js';\nexport const c = a;\n")},
		"b.js":   {Data: []byte("import { c } from './app.js';\nexport const a = 1;\n")},
	}
	_, err = joinModules(cycle, "app.js")
	require.ErrorContains(t, err, "cycle")
}

func TestBuildDocumentRefusesAnEarlyEnd(t *testing.T) {
	fsys := fstest.MapFS{
		"index.html": {Data: []byte("<head>" + firstTag + styleTag + scriptTag + "</head>")},
		"first.js":   {Data: []byte("let f = 1;\n")},
		"style.css":  {Data: []byte("a {}\n")},
		"app.js":     {Data: []byte("const s = '</script>';\n")},
	}
	_, err := buildDocument(fsys)
	require.ErrorContains(t, err, "the modules: </script")

	fsys["app.js"] = &fstest.MapFile{Data: []byte("const s = 1;\n")}
	fsys["first.js"] = &fstest.MapFile{Data: []byte("const s = '<!-- x';\n")}
	_, err = buildDocument(fsys)
	require.ErrorContains(t, err, "first.js: </script or <!--")

	fsys["first.js"] = &fstest.MapFile{Data: []byte("let f = 1;\n")}
	d, err := buildDocument(fsys)
	require.NoError(t, err)
	require.Equal(t, `<head><script>let f = 1;`+"\n"+`</script><style>`+"\na {}\n"+`</style><script type="application/json" id="console-session">`, d.head)
	joined, err := joinModules(fsys, "app.js")
	require.NoError(t, err)
	require.Equal(t, scriptSource("let f = 1;\n")+" "+scriptSource(joined), d.scriptHash, "first.js's hash, then the modules'")
	require.True(t, strings.HasPrefix(d.scriptHash, "'sha256-"))
}
