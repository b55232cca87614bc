package detectorbench

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Plot draws every configuration on the held-out traces, generated and
// recorded, pooled, as an SVG file: detection P99 against false positives
// per 1,000 instance-hours, one series per detector family (phi accrual
// one per threshold), each baseline's chosen configuration ringed and
// labelled, ours a large cross. False positives are on a log(1+x) axis so
// that zero shows.
//
// The SVG is written by hand: a plotting library with its fonts, LaTeX
// and PDF back ends made up a sixth of the platform binary for this one
// chart.
func (r Report) Plot(file string) error {
	if ext := strings.ToLower(filepath.Ext(file)); ext != ".svg" {
		return fmt.Errorf("plot %s: the plot is written as SVG, give a .svg file", filepath.Base(file))
	}
	if err := os.WriteFile(file, r.svg(), 0o644); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}

type xy struct{ x, y float64 }

// mark is one glyph kind on the chart and its legend entry.
type mark struct {
	name   string
	pts    []xy
	color  string
	shape  string
	radius float64
}

// label is a chosen configuration: ringed and named.
type label struct {
	at   xy
	text string
}

var plotColors = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"}
var plotShapes = []string{"circle", "triangle", "square", "diamond", "box", "ring"}

// marks returns the series and the chosen configurations, in the
// chart's coordinates: x = log10(1 + false positives), y = seconds.
func (r Report) marks() ([]mark, []label) {
	fx := func(fp float64) float64 { return math.Log10(1 + fp) }
	fy := func(ms float64) float64 { return ms / 1000 }
	var marks []mark
	index := map[string]int{}
	for _, s := range r.Points {
		if math.IsInf(s.P99MS, 0) || s.Detector == NameOurs {
			continue // a death never declared has no point; ours is drawn below
		}
		name := s.Detector
		if s.Detector == NamePhi {
			name = fmt.Sprintf("%s, %s", NamePhi, strings.SplitN(s.Config, ",", 2)[0])
		}
		i, ok := index[name]
		if !ok {
			k := len(marks)
			i, index[name] = k, k
			marks = append(marks, mark{name: name, color: plotColors[k%len(plotColors)], shape: plotShapes[k%len(plotShapes)], radius: 3})
		}
		marks[i].pts = append(marks[i].pts, xy{fx(s.FalsePer1kHours), fy(s.P99MS)})
	}
	var chosen []label
	for _, s := range r.Scores {
		if s.Traces != "held-out, all" || s.Class != "" || s.Kind != "" || math.IsInf(s.P99MS, 0) {
			continue
		}
		text := s.Detector + " (" + s.Config + ")"
		if s.Detector != NameOurs {
			text = "best " + text
		}
		at := xy{fx(s.FalsePer1kHours), fy(s.P99MS)}
		chosen = append(chosen, label{at, text})
		if s.Detector != NameOurs {
			continue
		}
		marks = append(marks, mark{name: "ours (defaults)", pts: []xy{at}, color: "#d62728", shape: "cross", radius: 7})
		if c, ok := r.find("held-out mixed", NameOurs, "", KindCrash); ok && !math.IsInf(c.P99MS, 0) {
			// Crash deaths of the generated fleets; false positives count
			// for no kind of death, so it stands at zero.
			at := xy{fx(c.FalsePer1kHours), fy(c.P99MS)}
			marks = append(marks, mark{name: "ours, crash deaths of the generated fleets", pts: []xy{at}, color: "#d62728", shape: "plus", radius: 5})
			chosen = append(chosen, label{at, "ours, crashes (generated)"})
		}
	}
	return marks, chosen
}

// Chart geometry in SVG user units (pixels).
const (
	plotW, plotH                        = 1100.0, 700.0
	plotLeft, plotRight, plotTop, plotB = 70.0, 30.0, 50.0, 60.0
)

func (r Report) svg() []byte {
	marks, chosen := r.marks()
	// Room around the data: zero false positives sit off the axis line,
	// the highest P99 below the title.
	xmin, xmax, ymax := -0.2, 5.2, 0.0
	for _, m := range marks {
		for _, p := range m.pts {
			xmax, ymax = max(xmax, p.x), max(ymax, p.y)
		}
	}
	ymax = max(ymax*1.06, 0.5)
	px := func(x float64) float64 { return plotLeft + (x-xmin)/(xmax-xmin)*(plotW-plotLeft-plotRight) }
	py := func(y float64) float64 { return plotH - plotB - y/ymax*(plotH-plotTop-plotB) }

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" font-family="sans-serif" font-size="12">`+"\n", plotW, plotH, plotW, plotH)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%g" y="28" text-anchor="middle" font-size="15">%s</text>`+"\n", plotW/2,
		esc(fmt.Sprintf("Held-out traces: %d mixed fleets of %d instances (%s, %s heartbeats) and the recordings",
			r.Held, r.Trace.Instances, r.Trace.Duration, r.Trace.Interval)))
	// Grid, ticks and axes.
	x0, x1, y0, y1 := px(xmin), px(xmax), py(0), py(ymax)
	for _, v := range []float64{0, 1, 10, 100, 1e3, 1e4, 1e5, 1e6} {
		x := math.Log10(1 + v)
		if x < xmin || x > xmax {
			continue
		}
		text := fmt.Sprintf("%g", v)
		if v >= 1e3 {
			text = fmt.Sprintf("%gk", v/1e3)
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", px(x), y0, px(x), y1)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", px(x), y0+18, text)
	}
	step := 0.5
	for ymax/step > 14 {
		step *= 2
	}
	for v := 0.0; v <= ymax; v += step {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x0, py(v), x1, py(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%g</text>`+"\n", x0-6, py(v)+4, v)
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="black"/>`+"\n", x0, y1, x1-x0, y0-y1)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", (x0+x1)/2, plotH-18,
		esc("false positives per 1,000 instance-hours (after the 30 s warm-up)"))
	fmt.Fprintf(&b, `<text transform="translate(20 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", (y0+y1)/2,
		esc("detection P99 (s), all deaths"))
	// Points, then the chosen configurations ringed and named.
	for _, m := range marks {
		for _, p := range m.pts {
			glyph(&b, m.shape, px(p.x), py(p.y), m.radius, m.color)
		}
	}
	for _, c := range chosen {
		glyph(&b, "ring", px(c.at.x), py(c.at.y), 6, "black")
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", px(c.at.x)+9, py(c.at.y)+4, esc(c.text))
	}
	// Legend, top right.
	lx, ly := x1-330, y1+10
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="320" height="%d" fill="white" fill-opacity="0.85" stroke="#999"/>`+"\n", lx, ly, 8+18*len(marks))
	for i, m := range marks {
		y := ly + 16 + 18*float64(i)
		glyph(&b, m.shape, lx+14, y-4, min(m.radius, 5), m.color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+28, y, esc(m.name))
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// glyph draws one marker centred on (x, y).
func glyph(b *bytes.Buffer, shape string, x, y, r float64, color string) {
	switch shape {
	case "circle":
		fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="%g" fill="%s"/>`+"\n", x, y, r, color)
	case "ring":
		fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="%g" fill="none" stroke="%s"/>`+"\n", x, y, r, color)
	case "square":
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%g" height="%g" fill="%s"/>`+"\n", x-r, y-r, 2*r, 2*r, color)
	case "box":
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%g" height="%g" fill="none" stroke="%s"/>`+"\n", x-r, y-r, 2*r, 2*r, color)
	case "triangle":
		fmt.Fprintf(b, `<path d="M%.1f %.1fL%.1f %.1fL%.1f %.1fZ" fill="%s"/>`+"\n", x, y-r, x+r, y+r, x-r, y+r, color)
	case "diamond":
		fmt.Fprintf(b, `<path d="M%.1f %.1fL%.1f %.1fL%.1f %.1fL%.1f %.1fZ" fill="%s"/>`+"\n", x, y-r, x+r, y, x, y+r, x-r, y, color)
	case "cross":
		fmt.Fprintf(b, `<path d="M%.1f %.1fL%.1f %.1fM%.1f %.1fL%.1f %.1f" stroke="%s" stroke-width="2.5"/>`+"\n",
			x-r, y-r, x+r, y+r, x-r, y+r, x+r, y-r, color)
	case "plus":
		fmt.Fprintf(b, `<path d="M%.1f %.1fL%.1f %.1fM%.1f %.1fL%.1f %.1f" stroke="%s" stroke-width="2"/>`+"\n",
			x-r, y, x+r, y, x, y-r, x, y+r, color)
	}
}

func esc(s string) string { return html.EscapeString(s) }
