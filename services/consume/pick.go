package consume

import (
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/streams"
)

// picker takes the events of a member's partitions out of stream
// messages. A message whose headers show that it holds none of them is
// not decoded: a single event's partition follows from its subject and
// Platform-Key header, an envelope's from its key summary
// (replicator.EnvelopeKeys). An envelope without a usable summary (stored
// before summaries existed, of too many keys, or with a malformed one) is
// decoded, as every message was before.
//
// The summary is not checked for envelopes it lets a member skip: that
// would take the decoding it saves. EVENTS is written by the replicator
// and the consume service's replays only (producers go through ingest,
// which refuses Platform-Envelope headers), so a summary is as trusted as
// the events themselves. Envelopes that are decoded are checked: an
// event whose key the summary leaves out is logged (and still applied).
type picker struct {
	group      string
	partitions int
	// own reports whether the member owns partition p.
	own  func(p int) bool
	warn func(msg string, args ...any)
	// hashes is scratch space for an envelope's key summary.
	hashes []uint32
	// skipped and decoded count the messages left undecoded by their
	// headers and those decoded.
	skipped, decoded atomic.Int64
}

// pick returns the events of msg (whose metadata is md) in owned
// partitions, in stream order, with the partition of each. Events
// replayed from DEAD for another group are left out, and so is a message
// that cannot be decoded (logged).
func (pk *picker) pick(msg jetstream.Msg, md *jetstream.MsgMetadata) ([]replicator.Event, []int) {
	h := msg.Headers()
	var summary []uint32
	if h.Get(streams.EnvelopeHeader) == "" {
		if !pk.own(Partition(replicator.EventKey(msg.Subject(), h), pk.partitions)) {
			pk.skipped.Add(1)
			return nil, nil
		}
	} else if hs, ok := replicator.EnvelopeKeys(h, pk.hashes[:0]); ok {
		pk.hashes = hs
		mine := false
		for _, x := range hs {
			if pk.own(int(x % uint32(pk.partitions))) {
				mine = true
				break
			}
		}
		if !mine {
			pk.skipped.Add(1)
			return nil, nil
		}
		summary = hs
	}
	pk.decoded.Add(1)
	evs, err := replicator.Decode(msg.Subject(), md.Sequence.Stream, md.Timestamp, h, msg.Data())
	if err != nil {
		// Not an event of any partition: skipping it loses nothing a
		// handler could apply.
		pk.warn("skipping undecodable message", "seq", md.Sequence.Stream, "err", err)
		return nil, nil
	}
	kept := evs[:0] // filtered in place: Decode's slice is this call's own
	var parts []int
	missing := 0
	for _, ev := range evs {
		hash := replicator.KeyHash(Key(ev))
		if summary != nil && !hasHash(summary, hash) {
			missing++
		}
		if g := ev.Header.Get(streams.ReplayGroupHeader); g != "" && g != pk.group {
			continue // replayed from DEAD for another group
		}
		p := int(hash % uint32(pk.partitions))
		if !pk.own(p) {
			continue
		}
		kept = append(kept, ev)
		parts = append(parts, p)
	}
	if missing > 0 {
		pk.warn("envelope's key summary leaves out keys of its events; members that skipped it by the summary missed them",
			"seq", md.Sequence.Stream, "events", missing, "summary", h.Get(streams.EnvelopeKeysHeader))
	}
	return kept, parts
}

func hasHash(hs []uint32, h uint32) bool {
	for _, x := range hs {
		if x == h {
			return true
		}
	}
	return false
}
