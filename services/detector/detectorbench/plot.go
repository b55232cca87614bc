package detectorbench

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Plot draws every configuration on the held-out traces, generated and
// recorded, pooled: detection P99
// against false positives per 1,000 instance-hours, one series per
// detector family (phi accrual one per threshold), each baseline's chosen
// configuration ringed and labelled, ours a large star. False positives
// are on a log(1+x) axis so that zero shows. The format follows the
// file's extension (png, svg, pdf).
func (r Report) Plot(file string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Held-out traces: %d mixed fleets of %d instances (%s, %s heartbeats) and the recordings",
		r.Held, r.Trace.Instances, r.Trace.Duration, r.Trace.Interval)
	p.X.Label.Text = "false positives per 1,000 instance-hours (after the 30 s warm-up)"
	p.Y.Label.Text = "detection P99 (s), all deaths"
	p.X.Tick.Marker = fpTicks{}
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Left = false

	fx := func(fp float64) float64 { return math.Log10(1 + fp) }
	fy := func(ms float64) float64 { return ms / 1000 }
	series := map[string]plotter.XYs{}
	var order []string
	for _, s := range r.Points {
		if math.IsInf(s.P99MS, 0) {
			continue // a death never declared: no point to place
		}
		name := s.Detector
		if s.Detector == NamePhi {
			name = fmt.Sprintf("%s, %s", NamePhi, strings.SplitN(s.Config, ",", 2)[0])
		}
		if _, ok := series[name]; !ok {
			order = append(order, name)
		}
		series[name] = append(series[name], plotter.XY{X: fx(s.FalsePer1kHours), Y: fy(s.P99MS)})
	}
	colors := []color.RGBA{
		{R: 0x1f, G: 0x77, B: 0xb4, A: 255}, {R: 0xff, G: 0x7f, B: 0x0e, A: 255}, {R: 0x2c, G: 0xa0, B: 0x2c, A: 255},
		{R: 0x94, G: 0x67, B: 0xbd, A: 255}, {R: 0x8c, G: 0x56, B: 0x4b, A: 255}, {R: 0xe3, G: 0x77, B: 0xc2, A: 255},
		{R: 0x7f, G: 0x7f, B: 0x7f, A: 255},
	}
	shapes := []draw.GlyphDrawer{draw.CircleGlyph{}, draw.TriangleGlyph{}, draw.SquareGlyph{}, draw.PyramidGlyph{}, draw.BoxGlyph{}, draw.RingGlyph{}}
	k := 0
	for _, name := range order {
		if name == NameOurs {
			continue
		}
		sc, err := plotter.NewScatter(series[name])
		if err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		sc.GlyphStyle = draw.GlyphStyle{Color: colors[k%len(colors)], Radius: vg.Points(3), Shape: shapes[k%len(shapes)]}
		p.Add(sc)
		p.Legend.Add(name, sc)
		k++
	}
	// The chosen configurations, ringed and named, and ours.
	var chosen plotter.XYLabels
	for _, s := range r.Scores {
		if s.Traces != "held-out, all" || s.Class != "" || s.Kind != "" || math.IsInf(s.P99MS, 0) {
			continue
		}
		label := s.Detector + " (" + s.Config + ")"
		if s.Detector != NameOurs {
			label = "best " + label
		}
		chosen.XYs = append(chosen.XYs, plotter.XY{X: fx(s.FalsePer1kHours), Y: fy(s.P99MS)})
		chosen.Labels = append(chosen.Labels, label)
		if s.Detector == NameOurs {
			star, err := plotter.NewScatter(plotter.XYs{{X: fx(s.FalsePer1kHours), Y: fy(s.P99MS)}})
			if err != nil {
				return fmt.Errorf("plot: %w", err)
			}
			star.GlyphStyle = draw.GlyphStyle{Color: color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 255}, Radius: vg.Points(7), Shape: draw.CrossGlyph{}}
			p.Add(star)
			p.Legend.Add("ours (defaults)", star)
			if c, ok := r.find("held-out mixed", NameOurs, "", KindCrash); ok && !math.IsInf(c.P99MS, 0) {
				// Crash deaths of the generated fleets; false positives
				// count for no kind of death, so it stands at zero.
				cs, err := plotter.NewScatter(plotter.XYs{{X: fx(c.FalsePer1kHours), Y: fy(c.P99MS)}})
				if err != nil {
					return fmt.Errorf("plot: %w", err)
				}
				cs.GlyphStyle = draw.GlyphStyle{Color: color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 255}, Radius: vg.Points(5), Shape: draw.PlusGlyph{}}
				p.Add(cs)
				p.Legend.Add("ours, crash deaths of the generated fleets", cs)
				chosen.XYs = append(chosen.XYs, plotter.XY{X: fx(c.FalsePer1kHours), Y: fy(c.P99MS)})
				chosen.Labels = append(chosen.Labels, "ours, crashes (generated)")
			}
		}
	}
	rings, err := plotter.NewScatter(chosen.XYs)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	rings.GlyphStyle = draw.GlyphStyle{Color: color.Black, Radius: vg.Points(6), Shape: draw.RingGlyph{}}
	labels, err := plotter.NewLabels(chosen)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	for i := range labels.TextStyle {
		labels.TextStyle[i].XAlign = draw.XLeft
		labels.Offset = vg.Point{X: vg.Points(8), Y: vg.Points(-3)}
	}
	p.Add(rings, labels)
	// Room around the data: zero false positives sit off the axis line,
	// the highest P99 below the title.
	p.Y.Min = 0
	p.Y.Max *= 1.06
	p.X.Min = -0.2
	p.X.Max = max(p.X.Max, 5.2)
	p.Y.Tick.Marker = secondTicks{}
	if err := p.Save(11*vg.Inch, 7*vg.Inch, file); err != nil {
		return fmt.Errorf("plot %s: %w", filepath.Base(file), err)
	}
	return nil
}

// fpTicks labels the log(1+x) axis with the false-positive rates.
type fpTicks struct{}

func (fpTicks) Ticks(lo, hi float64) []plot.Tick {
	var out []plot.Tick
	for _, v := range []float64{0, 1, 10, 100, 1e3, 1e4, 1e5, 1e6} {
		x := math.Log10(1 + v)
		if x < lo-1e-9 || x > hi+1e-9 {
			continue
		}
		label := fmt.Sprintf("%g", v)
		if v >= 1e3 {
			label = fmt.Sprintf("%gk", v/1e3)
		}
		out = append(out, plot.Tick{Value: x, Label: label})
	}
	return out
}

// secondTicks marks every half second.
type secondTicks struct{}

func (secondTicks) Ticks(lo, hi float64) []plot.Tick {
	var out []plot.Tick
	for v := math.Ceil(lo*2) / 2; v <= hi; v += 0.5 {
		out = append(out, plot.Tick{Value: v, Label: fmt.Sprintf("%g", v)})
	}
	return out
}
