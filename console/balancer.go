package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/services/balancer"
	"github.com/platform/platform/streams"
)

// maxWeights bounds the WEIGHTS records one request reads:
const maxWeights = 1024 // what one multi_last direct get answers at most

// weightView is one instance of GET /balancer: its WEIGHTS record and
// its shares of its service.
type weightView struct {
	balancer.Record
	WeightShare float64 `json:"weight_share"`
	ServedShare float64 `json:"served_share"`
}

// balancerView is GET /balancer.
type balancerView struct {
	Instances []weightView `json:"instances"`
}

func (c *Console) balancerAPI(ctx context.Context, _ *http.Request, _ *session) (any, error) {
	p := c.platform()
	recs, err := lastValues(ctx, p, streams.BucketWeights, maxWeights)
	if err != nil {
		return nil, err
	}
	v := balancerView{Instances: []weightView{}}
	weights, rates := map[string]float64{}, map[string]float64{}
	for _, m := range recs {
		var r balancer.Record
		if json.Unmarshal(m.Data, &r) != nil {
			continue
		}
		v.Instances = append(v.Instances, weightView{Record: r})
		weights[r.Service] += r.Weight
		rates[r.Service] += r.Inputs.RPS
	}
	for i := range v.Instances {
		in := &v.Instances[i]
		if w := weights[in.Service]; w > 0 {
			in.WeightShare = in.Weight / w
		}
		if r := rates[in.Service]; r > 0 {
			in.ServedShare = in.Inputs.RPS / r
		}
	}
	slices.SortFunc(v.Instances, func(a, b weightView) int { return strings.Compare(a.Key(), b.Key()) })
	return v, nil
}

// lastValues returns the current value of every key of bucket (deleted
// and purged keys left out) with one direct get of the last message of
// each subject: no watcher, no consumer.
func lastValues(ctx context.Context, p *Platform, bucket string, limit int) ([]*jsapi.Msg, error) {
	var out []*jsapi.Msg
	err := jsapi.GetBatch(ctx, p.Conn, streams.KVStream(bucket), jsapi.BatchRequest{
		MultiLast: []string{streams.KVSubjectPrefix(bucket) + ">"}, Batch: limit, MaxBytes: 64 << 20,
	}, func(m *jsapi.Msg) bool {
		if op := m.Header.Get("KV-Operation"); op != "" {
			return true // DEL or PURGE
		}
		out = append(out, m)
		return true
	})
	var apiErr *jetstream.APIError
	if err != nil && errors.As(err, &apiErr) && apiErr.Code == http.StatusRequestEntityTooLarge {
		return nil, unavailable("KV %s holds more than %d keys", bucket, limit)
	}
	return out, err
}
