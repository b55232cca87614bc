package detectorbench

import (
	"math"
	"slices"
)

// evaluatePredictor trains ours on one slow-deaths trace, then freezes the
// model and scores it on a trace from another seed.
func evaluatePredictor(opts EvalOptions) (PredictorScore, error) {
	train := generateSlowDeaths(opts.Trace)
	learner, err := newOurs(opts, len(train.instances), nil)
	if err != nil {
		return PredictorScore{}, err
	}
	play(train, learner, opts.Tick, nil)

	heldOpts := opts
	heldOpts.Trace.Seed = opts.Trace.Seed + 7919
	held := generateSlowDeaths(heldOpts.Trace)
	model := learner.tab.Model()
	scorer, err := newOurs(heldOpts, len(held.instances), &model)
	if err != nil {
		return PredictorScore{}, err
	}

	probs := make([][]float64, len(held.instances))
	for i, in := range held.instances {
		probs[i] = make([]float64, len(in.beats))
	}
	play(held, scorer, opts.Tick, func(i, beat int) {
		probs[i][beat] = scorer.tab.Probability(scorer.keys[i])
	})

	horizon := learner.tab.Options().PredictionHorizon
	var pos, neg []float64
	var leads []float64
	healthyAlarms, healthyBeats := 0, 0
	for i, in := range held.instances {
		p := probs[i]
		switch {
		case in.slow && len(in.lives) == 1 && in.lives[0].end >= 0 && len(p) > 0:
			pos = append(pos, p[max(0, len(p)-horizon):]...)
			lead := 0
			for k := len(p) - 1; k >= 0 && p[k] >= 0.5; k-- {
				lead++
			}
			leads = append(leads, float64(lead))
		case !in.slow && in.lives[0].end < 0:
			for k, x := range p {
				if k < 50 {
					continue // the instance's averages are still settling
				}
				healthyBeats++
				if x >= 0.5 {
					healthyAlarms++
				}
				if k%5 == 0 {
					neg = append(neg, x)
				}
			}
		}
	}
	ps := PredictorScore{
		AUC:        auc(pos, neg),
		LeadP50:    percentile(leads, 50),
		LeadP10:    percentile(leads, 10),
		SlowDeaths: len(leads),
	}
	ge10 := 0
	for _, l := range leads {
		if l >= 10 {
			ge10++
		}
	}
	if len(leads) > 0 {
		ps.Lead10 = float64(ge10) / float64(len(leads))
	}
	if healthyBeats > 0 {
		ps.HealthyAlarm = float64(healthyAlarms) / float64(healthyBeats)
	}
	st := learner.tab.Stats()
	ps.TrainedPositives, ps.TrainedNegatives = st.Positives, st.Negatives
	return ps, nil
}

// auc is the ROC AUC by the Mann-Whitney statistic, ties counted half.
func auc(pos, neg []float64) float64 {
	if len(pos) == 0 || len(neg) == 0 {
		return math.NaN()
	}
	type sample struct {
		v   float64
		pos bool
	}
	all := make([]sample, 0, len(pos)+len(neg))
	for _, v := range pos {
		all = append(all, sample{v, true})
	}
	for _, v := range neg {
		all = append(all, sample{v, false})
	}
	slices.SortFunc(all, func(a, b sample) int {
		switch {
		case a.v < b.v:
			return -1
		case a.v > b.v:
			return 1
		}
		return 0
	})
	var rankSum float64
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		rank := float64(i+j+1) / 2 // average of ranks i+1..j
		for k := i; k < j; k++ {
			if all[k].pos {
				rankSum += rank
			}
		}
		i = j
	}
	np, nn := float64(len(pos)), float64(len(neg))
	return (rankSum - np*(np+1)/2) / (np * nn)
}
