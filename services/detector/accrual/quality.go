package accrual

import "github.com/platform/platform/membership"

// multiplier is how much a network quality class widens the tolerated
// pause (the reference design's AdaptiveFailureDetector multipliers).
func multiplier(q membership.Quality) float64 {
	switch q {
	case membership.Excellent:
		return 1.0
	case membership.Good:
		return 1.2
	case membership.Fair:
		return 1.5
	case membership.Poor:
		return 2.0
	default:
		return 3.0
	}
}

// qualityLimits are the upper bounds of each class but the last, for each
// signal. Jitter and round trip are relative to the heartbeat interval, so
// a path is judged by what it does to this instance's heartbeats: 20 ms of
// jitter is excellent for 1 s heartbeats and fair for 100 ms ones.
var qualityLimits = struct {
	jitter [4]float64 // mean |deviation| of inter-arrival / interval
	loss   [4]float64 // fraction of heartbeats lost
	rtt    [4]float64 // probe round trip / interval
}{
	jitter: [4]float64{0.10, 0.20, 0.35, 0.60},
	loss:   [4]float64{0.01, 0.03, 0.08, 0.20},
	rtt:    [4]float64{0.02, 0.05, 0.10, 0.25},
}

// hysteresis: a path must be this much better than a class's bound before
// it is promoted back into the class, so it does not flap on a boundary.
const hysteresis = 0.8

// classify returns the class for one signal's value against its limits,
// given the current class (for hysteresis).
func classify(v float64, limits [4]float64, cur membership.Quality) membership.Quality {
	for i, lim := range limits {
		q := membership.Quality(i)
		if q < cur {
			lim *= hysteresis
		}
		if v < lim {
			return q
		}
	}
	return membership.VeryPoor
}

// pathStats are the running estimates behind an instance's class.
type pathStats struct {
	jitter  float64 // EWMA of |gap - interval| / interval (RFC 3550 style, gain 1/16)
	loss    float64 // EWMA of the fraction of heartbeats lost per received one
	rtt     float64 // EWMA of probe round trips / interval; 0: never probed
	quality membership.Quality
}

const (
	jitterGain = 1.0 / 16
	lossGain   = 1.0 / 32
	rttGain    = 1.0 / 4
)

// observeGap updates the jitter estimate with one inter-arrival gap.
func (p *pathStats) observeGap(gap, interval float64) {
	if interval <= 0 {
		return
	}
	d := gap - interval
	if d < 0 {
		d = -d
	}
	p.jitter += (d/interval - p.jitter) * jitterGain
}

// observeLoss updates the loss estimate: lost heartbeats went missing
// before the one just received.
func (p *pathStats) observeLoss(lost uint64) {
	x := float64(lost) / float64(lost+1)
	p.loss += (x - p.loss) * lossGain
}

// observeRTT updates the round-trip estimate with one probe.
func (p *pathStats) observeRTT(rtt, interval float64) {
	if interval <= 0 {
		return
	}
	r := rtt / interval
	if p.rtt == 0 {
		p.rtt = r
		return
	}
	p.rtt += (r - p.rtt) * rttGain
}

// classify recomputes the class: the worst of the three signals.
func (p *pathStats) classify() membership.Quality {
	q := classify(p.jitter, qualityLimits.jitter, p.quality)
	q = max(q, classify(p.loss, qualityLimits.loss, p.quality))
	if p.rtt > 0 {
		q = max(q, classify(p.rtt, qualityLimits.rtt, p.quality))
	}
	p.quality = q
	return q
}
