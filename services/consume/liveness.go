package consume

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/kvfollow"
	"github.com/platform/platform/membership"
	"github.com/platform/platform/service"
	"github.com/platform/platform/streams"
)

// HeartbeatService is the service name under which a group's members
// heartbeat to the detector (hb.<HeartbeatService>.<instance>), and so
// their records' prefix in KV MEMBERS: consume-<group>.
func HeartbeatService(group string) string { return "consume-" + group }

// newInstance names one run of member: its name and a random suffix, so
// a detector's record of an earlier run under the same member name
// (dead, left) never speaks for this one.
func newInstance(member string) string {
	return member + "_" + strings.ToLower(crand.Text()[:8])
}

// heartbeats publishes the member's heartbeat every Heartbeat until ctx
// ends, then a last one saying it leaves. A member paused by a test
// (pauseKeeper) sends none, as a stopped process would not.
func (m *Member) heartbeats(ctx context.Context) {
	subject := streams.HeartbeatSubject(HeartbeatService(m.opts.Group), m.instance)
	send := func(l service.Load) {
		b, _ := json.Marshal(l)
		if err := m.opts.Conn.Publish(subject, b); err != nil && ctx.Err() == nil {
			m.log.Debug("heartbeat", "err", err)
		}
	}
	t := time.NewTicker(m.opts.Heartbeat)
	defer t.Stop()
	seq := uint64(1)
	send(service.Load{Seq: seq, IntervalMS: m.opts.Heartbeat.Milliseconds()})
	for {
		select {
		case <-ctx.Done():
			seq++
			send(service.Load{Seq: seq, IntervalMS: m.opts.Heartbeat.Milliseconds(), Leaving: true})
			_ = m.opts.Conn.Flush()
			return
		case <-t.C:
		}
		if m.pauseKeeper.Load() {
			continue
		}
		seq++
		send(service.Load{Seq: seq, IntervalMS: m.opts.Heartbeat.Milliseconds()})
	}
}

// followDetector feeds the view the detector's records of the group's
// members from KV MEMBERS. Without that bucket (no detector in this
// deployment) the member keys' TTL alone decides, and it returns nil.
func (m *Member) followDetector(ctx context.Context, v *view) *kvfollow.Follower {
	kv, err := m.js.KeyValue(ctx, streams.BucketMembers)
	if err != nil {
		if !errors.Is(err, jetstream.ErrBucketNotFound) {
			m.log.Warn("follow the detector's view; membership judged by TTL alone", "err", err)
		}
		return nil
	}
	keys := []string{membership.Key(HeartbeatService(m.opts.Group), "*")}
	f, err := kvfollow.Start(ctx, filtered{KeyValue: kv, keys: keys}, kvfollow.Options{Put: v.detected, Delete: v.undetected, Logger: m.log})
	if err != nil {
		m.log.Warn("follow the detector's view; membership judged by TTL alone", "err", err)
		return nil
	}
	return f
}

// detected records what the detector says of one run of a member: a run
// declared dead or left is out of the group whatever its key says.
func (v *view) detected(e jetstream.KeyValueEntry) {
	rec, err := membership.Decode(e.Key(), e.Value())
	if err != nil {
		return // not a detector's record; the TTL still decides
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	switch rec.State {
	case membership.Dead, membership.Left:
		if !v.down[rec.Instance] {
			v.down[rec.Instance] = true
			kick(v.lost)
		}
	default:
		delete(v.down, rec.Instance)
	}
}

func (v *view) undetected(e jetstream.KeyValueEntry) {
	_, inst, ok := strings.Cut(e.Key(), ".")
	if !ok {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.down, inst)
}
