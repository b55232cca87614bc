package accrual

import (
	"math"
	"math/rand/v2"
	"slices"
)

// The predictor is online logistic regression over features of each
// heartbeat's load figures. It learns from the detector's own verdicts:
// the heartbeats that preceded a confirmed death are positive examples,
// heartbeats followed by PredictionHorizon more heartbeats are negative
// ones. No weight is set by hand; before the first death it answers the
// prior, priorProbability, for everyone.
//
// Features are the level of each load figure and its trend (a fast minus
// a slow moving average of the same figure for this instance), so an
// instance that always runs hot is not confused with one that is heating
// up; plus how late the heartbeat was and the path's jitter. They are
// standardized with running means and variances over the whole fleet.

// Load figures the features are built from, in order.
const (
	mCPU = iota
	mMem
	mErr
	mLatency
	mP99
	mInFlight
	mRPS
	nMetrics
)

// Feature layout: levels, trends, then timing.
const (
	fLevel    = 0
	fTrend    = nMetrics
	fLateness = 2 * nMetrics
	fJitter   = 2*nMetrics + 1
	nFeatures = 2*nMetrics + 2
)

var featureNames = [nFeatures]string{
	"cpu", "mem", "error_rate", "latency", "p99", "in_flight", "rps",
	"cpu_trend", "mem_trend", "error_rate_trend", "latency_trend", "p99_trend", "in_flight_trend", "rps_trend",
	"lateness", "jitter",
}

type features [nFeatures]float32

const (
	// fastGain and slowGain are the per-heartbeat gains of the two moving
	// averages whose difference is a figure's trend.
	fastGain = 0.2
	slowGain = 0.01
	// priorProbability is the answer before anything was learned.
	priorProbability = 0.01
	// replayProbability is the chance each negative update is followed by
	// an update on a remembered positive, so rare deaths are not drowned
	// by the healthy majority and are not forgotten.
	replayProbability = 0.5
	// maxReplay bounds the remembered positives.
	maxReplay = 4096
	// l2 is the weight decay per update.
	l2 = 1e-5
	// clipZ bounds standardized features.
	clipZ = 6
)

// trend is one instance's predictor state: the moving averages and the
// features of its last PredictionHorizon heartbeats, oldest first.
type trend struct {
	fast, slow [nMetrics]float32
	started    bool
	ring       []features
	next, n    int
}

// figures extracts the figures, compressing the unbounded ones.
func figures(l Load) [nMetrics]float32 {
	return [nMetrics]float32{
		mCPU:      float32(l.CPU),
		mMem:      float32(l.Mem),
		mErr:      float32(l.ErrorRate),
		mLatency:  float32(math.Log1p(l.LatencyMS)),
		mP99:      float32(math.Log1p(l.P99MS)),
		mInFlight: float32(math.Log1p(float64(l.InFlight))),
		mRPS:      float32(math.Log1p(l.RPS)),
	}
}

// observe folds one heartbeat into the instance's averages and returns its
// features. lateness is (gap-interval)/interval; jitter the path's.
func (t *trend) observe(l Load, lateness, jitter float64) features {
	m := figures(l)
	if !t.started {
		t.fast, t.slow, t.started = m, m, true
	}
	var f features
	for i := range nMetrics {
		t.fast[i] += (m[i] - t.fast[i]) * fastGain
		t.slow[i] += (m[i] - t.slow[i]) * slowGain
		f[fLevel+i] = m[i]
		f[fTrend+i] = t.fast[i] - t.slow[i]
	}
	f[fLateness] = float32(min(max(lateness, -1), 10))
	f[fJitter] = float32(min(jitter, 10))
	return f
}

// push remembers f as the newest of the last horizon heartbeats and
// returns the one it displaces, if the ring was full.
func (t *trend) push(f features, horizon int) (old features, evicted bool) {
	if t.ring == nil {
		t.ring = make([]features, horizon)
	}
	if t.n == len(t.ring) {
		old, evicted = t.ring[t.next], true
	} else {
		t.n++
	}
	t.ring[t.next] = f
	t.next = (t.next + 1) % len(t.ring)
	return old, evicted
}

// drain returns the remembered heartbeats, oldest first, and forgets them.
func (t *trend) drain() []features {
	out := make([]features, 0, t.n)
	start := (t.next - t.n + len(t.ring)) % max(len(t.ring), 1)
	for i := range t.n {
		out = append(out, t.ring[(start+i)%len(t.ring)])
	}
	t.n, t.next = 0, 0
	return out
}

// reset forgets the averages, as after a restart.
func (t *trend) reset() {
	t.started = false
	t.n, t.next = 0, 0
}

// scaler standardizes features with running means and variances
// (Welford's algorithm).
type scaler struct {
	n    float64
	mean [nFeatures]float64
	m2   [nFeatures]float64
}

func (s *scaler) observe(f *features) {
	s.n++
	for i, x := range f {
		d := float64(x) - s.mean[i]
		s.mean[i] += d / s.n
		s.m2[i] += d * (float64(x) - s.mean[i])
	}
}

func (s *scaler) scale(f *features) (z [nFeatures]float64) {
	if s.n < 2 {
		return z
	}
	for i, x := range f {
		sd := math.Sqrt(s.m2[i] / s.n)
		if sd < 1e-6 {
			continue
		}
		z[i] = min(max((float64(x)-s.mean[i])/sd, -clipZ), clipZ)
	}
	return z
}

// predictor is the shared model. It is not safe for concurrent use; the
// membership table that owns it serializes access.
type predictor struct {
	w, g2     [nFeatures + 1]float64 // weights (last: bias) and AdaGrad sums
	sc        scaler
	rate      float64
	sampling  float64
	rng       *rand.Rand
	replay    []features
	positives int64
	negatives int64
	// trainedPos and trainedNeg count the updates on each class,
	// replays included: the class balance the model was trained on.
	trainedPos, trainedNeg float64
}

func newPredictor(rate, sampling float64, rng *rand.Rand) *predictor {
	p := &predictor{rate: rate, sampling: sampling, rng: rng}
	p.w[nFeatures] = math.Log(priorProbability / (1 - priorProbability))
	return p
}

// clone returns a copy that shares nothing with p but draws from rng.
func (p *predictor) clone(rng *rand.Rand) *predictor {
	c := *p
	c.replay = slices.Clone(p.replay)
	c.rng = rng
	return &c
}

// probability returns the model's failure probability for f, corrected
// for the class balance it was trained on.
func (p *predictor) probability(f *features) float64 {
	z := p.sc.scale(f)
	s := p.w[nFeatures] + p.priorCorrection()
	for i, x := range z {
		s += p.w[i] * x
	}
	return 1 / (1 + math.Exp(-s))
}

// priorCorrection shifts the model's log-odds from the share of positive
// examples it was trained on to the share of heartbeats that really
// preceded a death (King and Zeng's prior correction for rare events).
// Replaying positives, so that rare deaths are not drowned by the healthy
// majority, trains the model on about one positive in three; uncorrected
// it answered about 1/3 for any heartbeat that looked like the last ones
// of a process killed without warning, and more for survivors taking
// over its load: 0.46-0.81 for healthy instances after one kill. The
// correction keeps what the features tell apart, and answers the true
// base rate, tiny, for what they do not.
func (p *predictor) priorCorrection() float64 {
	if p.positives == 0 || p.trainedPos == 0 || p.trainedNeg == 0 {
		return 0
	}
	trained := p.trainedPos / p.trainedNeg
	real := float64(p.positives) / (float64(p.negatives) / max(p.sampling, 1e-9))
	return math.Log(real) - math.Log(trained)
}

// observe updates the feature scaling with a fresh heartbeat.
func (p *predictor) observe(f *features) { p.sc.observe(f) }

// negative is called with a heartbeat that was followed by a full horizon
// of heartbeats: a healthy example, sampled.
func (p *predictor) negative(f *features) {
	if p.rng.Float64() >= p.sampling {
		return
	}
	p.update(f, 0)
	p.negatives++
	p.trainedNeg++
	if len(p.replay) > 0 && p.rng.Float64() < replayProbability {
		r := p.replay[p.rng.IntN(len(p.replay))]
		p.update(&r, 1)
		p.trainedPos++
	}
}

// positive is called with the heartbeats that preceded a confirmed death.
func (p *predictor) positive(fs []features) {
	for i := range fs {
		p.update(&fs[i], 1)
		p.positives++
		p.trainedPos++
		if len(p.replay) < maxReplay {
			p.replay = append(p.replay, fs[i])
		} else {
			p.replay[p.rng.IntN(maxReplay)] = fs[i]
		}
	}
}

// update is one AdaGrad step on the logistic loss.
func (p *predictor) update(f *features, label float64) {
	z := p.sc.scale(f)
	s := p.w[nFeatures]
	for i, x := range z {
		s += p.w[i] * x
	}
	g := 1/(1+math.Exp(-s)) - label
	for i := range nFeatures + 1 {
		x := 1.0
		if i < nFeatures {
			x = z[i]
		}
		gi := g*x + l2*p.w[i]
		p.g2[i] += gi * gi
		p.w[i] -= p.rate * gi / (math.Sqrt(p.g2[i]) + 1e-8)
	}
}

// weights returns the learned weight of each feature by name, and the bias.
func (p *predictor) weights() (map[string]float64, float64) {
	m := make(map[string]float64, nFeatures)
	for i, n := range featureNames {
		m[n] = p.w[i]
	}
	return m, p.w[nFeatures]
}
