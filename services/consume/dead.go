package consume

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/streams"
)

// deadLetter stores event s of partition p in DEAD under
// dead.<group>.<topic>: its data and own headers, and headers for the
// reason, the deliveries, the group, and its original subject and
// position. Its message id makes a second try after an unknown outcome
// store it once.
func (m *Member) deadLetter(ctx context.Context, s *slot, p int, reason string) error {
	ev := s.ev
	topic := strings.TrimPrefix(ev.Subject, streams.EventsPrefix)
	msg := nats.NewMsg(streams.DeadSubject(m.opts.Group, topic))
	for k, v := range ev.Header {
		msg.Header[k] = v
	}
	msg.Data = ev.Data
	msg.Header.Set(streams.DeadReasonHeader, reason)
	msg.Header.Set(streams.DeadAttemptsHeader, strconv.Itoa(s.attempts))
	msg.Header.Set(streams.DeadGroupHeader, m.opts.Group)
	msg.Header.Set(streams.DeadSubjectHeader, ev.Subject)
	msg.Header.Set(streams.DeadPositionHeader, positionText(ev.Pos))
	msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dead.%s.%d.%d", m.opts.Group, ev.Pos.Seq, ev.Pos.Index))
	if _, err := m.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("consume: store dead letter of %s in %s: %w", positionText(ev.Pos), streams.Dead, err)
	}
	m.log.Info("event sent to DEAD", "partition", p, "pos", positionText(ev.Pos), "reason", reason, "attempts", s.attempts)
	return nil
}

// ReplayDead puts the dead letters of group back into EVENTS and removes
// them from DEAD; it returns how many it replayed. Each goes back as one
// message under its original subject, with its own headers (so its
// partition key is the same) and the header Platform-Replay-Group naming
// group: that group consumes it again, at a new position after every
// event it has consumed, and every other group skips it. The letters
// stored in DEAD after ReplayDead started are left for the next replay.
// A letter whose message cannot be replayed (no original subject) is
// left in DEAD and counted in the error.
//
// Removing letters needs the JetStream API's message delete on DEAD,
// which only the admin role may call under --auth.
func ReplayDead(ctx context.Context, js jetstream.JetStream, group string) (int, error) {
	if !validName(group) {
		return 0, fmt.Errorf("consume: group %q: want letters, digits, - and _", group)
	}
	s, err := js.Stream(ctx, streams.Dead)
	if err != nil {
		return 0, fmt.Errorf("consume: replay %s: stream %s: %w", group, streams.Dead, err)
	}
	// An ephemeral consumer without acks: its pending count says where
	// the letters stored before now end, and it vanishes if this process
	// dies midway.
	cons, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     streams.DeadPrefix + group + ".>",
		AckPolicy:         jetstream.AckNonePolicy,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: 30 * time.Second,
		MemoryStorage:     true,
	})
	if err != nil {
		return 0, fmt.Errorf("consume: replay %s: %w", group, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.DeleteConsumer(dctx, cons.CachedInfo().Name) // else it ends after its inactive threshold
	}()
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("consume: replay %s: %w", group, err)
	}
	left := info.NumPending
	n := 0
	var skipped int
	for left > 0 {
		batch, err := cons.Fetch(int(min(left, 256)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return n, fmt.Errorf("consume: replay %s: %w", group, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			left--
			md, err := msg.Metadata()
			if err != nil {
				return n, fmt.Errorf("consume: replay %s: %w", group, err)
			}
			subject := msg.Headers().Get(streams.DeadSubjectHeader)
			if !strings.HasPrefix(subject, streams.EventsPrefix) {
				skipped++
				continue
			}
			out := nats.NewMsg(subject)
			for k, v := range msg.Headers() {
				if strings.HasPrefix(k, "Platform-Dead-") || strings.HasPrefix(k, "Nats-") {
					continue
				}
				out.Header[k] = v
			}
			out.Data = msg.Data()
			out.Header.Set(streams.ReplayGroupHeader, group)
			out.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("replay.%s.%d", group, md.Sequence.Stream))
			if _, err := js.PublishMsg(ctx, out); err != nil {
				return n, fmt.Errorf("consume: replay %s: put back dead letter %d: %w", group, md.Sequence.Stream, err)
			}
			if err := s.DeleteMsg(ctx, md.Sequence.Stream); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
				return n, fmt.Errorf("consume: replay %s: remove dead letter %d: %w", group, md.Sequence.Stream, err)
			}
			n++
		}
		if err := batch.Error(); err != nil {
			return n, fmt.Errorf("consume: replay %s: %w", group, err)
		}
		if got == 0 {
			break // the rest expired or was removed meanwhile
		}
	}
	if skipped > 0 {
		return n, fmt.Errorf("consume: replay %s: %d letters without an original subject left in %s", group, skipped, streams.Dead)
	}
	return n, nil
}
