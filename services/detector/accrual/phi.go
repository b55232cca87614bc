package accrual

import "math"

// Window holds the last inter-arrival times of one instance (milliseconds)
// in a ring, with running sums for the mean and standard deviation. The
// zero Window has no room: make one with NewWindow.
type Window struct {
	buf   []float32
	next  int
	n     int
	sum   float64
	sumSq float64
	adds  int
}

// NewWindow returns a window that keeps the last size inter-arrival times.
func NewWindow(size int) Window { return Window{buf: make([]float32, size)} }

// Add records one inter-arrival time, evicting the oldest when full.
func (w *Window) Add(ms float64) {
	if w.n == len(w.buf) {
		old := float64(w.buf[w.next])
		w.sum -= old
		w.sumSq -= old * old
	} else {
		w.n++
	}
	w.buf[w.next] = float32(ms)
	v := float64(w.buf[w.next])
	w.sum += v
	w.sumSq += v * v
	w.next = (w.next + 1) % len(w.buf)
	// Running sums drift with floating point cancellation: rebuild them
	// once per window's worth of additions.
	if w.adds++; w.adds >= len(w.buf) {
		w.adds = 0
		w.sum, w.sumSq = 0, 0
		for i := 0; i < w.n; i++ {
			x := float64(w.buf[i])
			w.sum += x
			w.sumSq += x * x
		}
	}
}

// Reset forgets every recorded time.
func (w *Window) Reset() {
	w.next, w.n, w.sum, w.sumSq, w.adds = 0, 0, 0, 0, 0
}

// Values returns the recorded times, oldest first.
func (w *Window) Values() []float64 {
	out := make([]float64, 0, w.n)
	start := 0
	if w.n == len(w.buf) {
		start = w.next
	}
	for i := 0; i < w.n; i++ {
		out = append(out, float64(w.buf[(start+i)%len(w.buf)]))
	}
	return out
}

// Len returns how many times the window holds.
func (w *Window) Len() int { return w.n }

// Mean returns the mean of the recorded times, 0 when there are none.
func (w *Window) Mean() float64 {
	if w.n == 0 {
		return 0
	}
	return w.sum / float64(w.n)
}

// StdDev returns the population standard deviation of the recorded times,
// 0 with fewer than two.
func (w *Window) StdDev() float64 {
	if w.n < 2 {
		return 0
	}
	m := w.Mean()
	v := w.sumSq/float64(w.n) - m*m
	if v <= 0 {
		return 0
	}
	return math.Sqrt(v)
}

// Phi returns the phi accrual suspicion level (Hayashibara et al.) after
// elapsed ms of silence, for inter-arrival times with the given mean and
// standard deviation (both ms): -log10 of the probability that a heartbeat
// is still to come this late. It uses the logistic approximation of the
// normal tail that Akka uses, which is monotonic and cheap.
func Phi(elapsed, mean, stdDev float64) float64 {
	if stdDev <= 0 {
		stdDev = 1e-3
	}
	y := (elapsed - mean) / stdDev
	e := math.Exp(-y * (1.5976 + 0.070566*y*y))
	if elapsed > mean {
		return -math.Log10(e / (1 + e))
	}
	return -math.Log10(1 - 1/(1+e))
}

// PhiZ returns the number of standard deviations past the mean at which
// Phi reaches threshold: Phi(mean + z*std, mean, std) == threshold. Solving
// once lets a detector turn each heartbeat into deadlines instead of
// computing phi for every instance on every tick.
func PhiZ(threshold float64) float64 {
	// Phi(y) for y > 0 is -log10(e/(1+e)) with e = exp(-g(y)), g the cubic
	// below; so g(y) = -ln(p/(1-p)) with p = 10^-threshold. g is
	// increasing: solve by Newton from a safe start.
	p := math.Pow(10, -threshold)
	target := -math.Log(p / (1 - p))
	g := func(y float64) float64 { return y * (1.5976 + 0.070566*y*y) }
	dg := func(y float64) float64 { return 1.5976 + 3*0.070566*y*y }
	y := 1.0
	for range 50 {
		step := (g(y) - target) / dg(y)
		y -= step
		if math.Abs(step) < 1e-12 {
			break
		}
	}
	return y
}
