package console

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/membership"
	"github.com/platform/platform/services/detector/accrual"
	"github.com/platform/platform/streams"
)

const (
	// phiHistory is how many MEMBERS records' phi are kept per member.
	phiHistory = 32
	// maxTransitions is how many transitions one member's page shows.
	maxTransitions = 100
	// maxMembersPage bounds a members page.
	maxMembersPage = 1000
)

// phiPoint is a member's phi as of one MEMBERS record.
type phiPoint struct {
	At  time.Time `json:"at"`
	Phi float64   `json:"phi"`
}

// tracked is one member of the view.
type tracked struct {
	m    membership.Member
	hist [phiHistory]phiPoint
	n    int // points in hist, at most phiHistory
	next int
}

// putMember keeps a MEMBERS record in the view, with its phi.
func putMember(v *kvView[*tracked]) func(e jetstream.KeyValueEntry) {
	return func(e jetstream.KeyValueEntry) {
		m, err := membership.Decode(e.Key(), e.Value())
		if err != nil {
			return
		}
		v.set(e.Key(), func(t *tracked, _ bool) *tracked {
			if t == nil {
				t = &tracked{}
			}
			t.m = m
			t.hist[t.next] = phiPoint{At: e.Created().UTC(), Phi: m.Phi}
			t.next = (t.next + 1) % phiHistory
			t.n = min(t.n+1, phiHistory)
			return t
		})
	}
}

// membersPage is GET /members.
type membersPage struct {
	Total   int                      `json:"total"`
	Matched int                      `json:"matched"`
	Counts  map[membership.State]int `json:"counts"`
	Members []membership.Member      `json:"members"`
}

// memberSorts are the sort keys of /members, the default first.
var memberSorts = []sortKey[*membership.Member]{
	{"key", func(a, b *membership.Member) int { return 0 }},
	{"service", func(a, b *membership.Member) int { return strings.Compare(a.Service, b.Service) }},
	{"state", func(a, b *membership.Member) int { return strings.Compare(string(a.State), string(b.State)) }},
	{"phi", func(a, b *membership.Member) int { return cmp.Compare(a.Phi, b.Phi) }},
	{"quality", func(a, b *membership.Member) int { return cmp.Compare(a.Quality, b.Quality) }},
	{"failure_probability", func(a, b *membership.Member) int { return cmp.Compare(a.FailureProbability, b.FailureProbability) }},
	{"last_seen", func(a, b *membership.Member) int { return a.LastSeen.Compare(b.LastSeen) }},
}

// byMemberKey orders members by <service>.<instance> without building it.
func byMemberKey(a, b *membership.Member) int {
	return cmp.Or(strings.Compare(a.Service, b.Service), strings.Compare(a.Instance, b.Instance))
}

func (c *Console) membersAPI(_ context.Context, r *http.Request, _ *session) (any, error) {
	q := r.URL.Query()
	svc := q.Get("service")
	if svc != "" && !membership.ValidToken(svc) {
		return nil, badRequest("service %q is not a valid service name", svc)
	}
	state := membership.State(q.Get("state"))
	switch state {
	case "", membership.Alive, membership.Suspect, membership.Dead, membership.Left:
	default:
		return nil, badRequest("state %q: want alive, suspect, dead or left", state)
	}
	text, err := strParam(r, "q", maxParam)
	if err != nil {
		return nil, err
	}
	pq, err := readPage(r, memberSorts, maxMembersPage)
	if err != nil {
		return nil, err
	}
	v := c.members
	if err := v.ready(); err != nil {
		return nil, err
	}
	page := membersPage{Counts: map[membership.State]int{membership.Alive: 0, membership.Suspect: 0, membership.Dead: 0, membership.Left: 0}}
	v.mu.RLock()
	page.Total = len(v.all)
	list := make([]membership.Member, 0, len(v.all))
	for key, t := range v.all {
		page.Counts[t.m.State]++
		if (svc == "" || t.m.Service == svc) && (state == "" || t.m.State == state) && (text == "" || strings.Contains(key, text)) {
			list = append(list, t.m)
		}
	}
	v.mu.RUnlock()
	page.Matched = len(list)
	// Sort pointers: comparing copies through a func value would put two
	// copies on the heap per comparison.
	ptrs := make([]*membership.Member, len(list))
	for i := range list {
		ptrs[i] = &list[i]
	}
	shown := pq.page(ptrs, byMemberKey)
	page.Members = make([]membership.Member, len(shown))
	for i, m := range shown {
		page.Members[i] = *m
	}
	return page, nil
}

// memberDetail is GET /members/{service}/{instance}.
type memberDetail struct {
	Member          membership.Member `json:"member"`
	IntervalsMS     []float64         `json:"intervals_ms"`
	IntervalsSource string            `json:"intervals_source"`
	MeanMS          float64           `json:"mean_ms"`
	StdDevMS        float64           `json:"stddev_ms"`
	PhiHistory      []phiPoint        `json:"phi_history"`
	Transitions     []transitionView  `json:"transitions"`
}

// transitionView is one transition of stream DETECTOR.
type transitionView struct {
	State    membership.State `json:"state"`
	Previous membership.State `json:"previous"`
	At       time.Time        `json:"at"`
	Phi      float64          `json:"phi"`
	Seq      uint64           `json:"seq"`
}

func (c *Console) member(ctx context.Context, r *http.Request, _ *session) (any, error) {
	svc, inst := r.PathValue("service"), r.PathValue("instance")
	if !membership.ValidToken(svc) || !membership.ValidToken(inst) {
		return nil, badRequest("service %q or instance %q is not a valid name", svc, inst)
	}
	v := c.members
	if err := v.ready(); err != nil {
		return nil, err
	}
	key := membership.Key(svc, inst)
	d := memberDetail{IntervalsMS: []float64{}, IntervalsSource: "none", PhiHistory: []phiPoint{}, Transitions: []transitionView{}}
	v.mu.RLock()
	t := v.all[key]
	if t != nil {
		d.Member = t.m
		start := (t.next - t.n + phiHistory) % phiHistory
		for i := range t.n {
			d.PhiHistory = append(d.PhiHistory, t.hist[(start+i)%phiHistory])
		}
	}
	v.mu.RUnlock()
	if t == nil {
		return nil, notFound("no member %s in %s", key, streams.BucketMembers)
	}
	p := c.platform()
	var det accrual.Detail
	if err := call(ctx, p.Conn, streams.MembersGetSubject, map[string]string{"service": svc, "instance": inst}, &det); err == nil {
		d.IntervalsMS, d.IntervalsSource, d.MeanMS, d.StdDevMS = det.IntervalsMS, "detector", det.MeanMS, det.StdDevMS
		if d.IntervalsMS == nil {
			d.IntervalsMS = []float64{}
		}
	}
	msgs, err := lastN(ctx, p, streams.Detector, streams.DetectorSubject("*", svc, inst), maxTransitions)
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		var tr membership.Transition
		if json.Unmarshal(m.Data, &tr) != nil {
			continue
		}
		d.Transitions = append(d.Transitions, transitionView{State: tr.State, Previous: tr.Previous, At: tr.At.UTC(), Phi: tr.Phi, Seq: m.Seq})
	}
	return d, nil
}

// lastN returns the last n messages of stream on subject, oldest first,
// reading windows backward from the stream's end that grow four times
// over, at most maxScan messages in all.
func lastN(ctx context.Context, p *Platform, stream, subject string, n int) ([]*jsapi.Msg, error) {
	info, err := streamInfo(ctx, p.JS, stream)
	if err != nil {
		return nil, err
	}
	first, end := info.State.FirstSeq, info.State.LastSeq+1
	var out []*jsapi.Msg // newest first
	window, scanned := uint64(256), 0
	for len(out) < n && end > first && scanned < maxScan {
		lo := first
		if end > first+window {
			lo = end - window
		}
		var got []*jsapi.Msg
		err := jsapi.GetBatch(ctx, p.Conn, stream, jsapi.BatchRequest{Seq: lo, NextBySubject: subject, Batch: int(min(end-lo, uint64(maxScan-scanned))), MaxBytes: batchBytes}, func(m *jsapi.Msg) bool {
			if m.Seq >= end {
				return false
			}
			got = append(got, m)
			return true
		})
		if err != nil {
			return nil, err
		}
		scanned += len(got)
		for i := len(got) - 1; i >= 0 && len(out) < n; i-- {
			out = append(out, got[i])
		}
		end = lo
		window *= 4
	}
	slices.Reverse(out)
	return out, nil
}
