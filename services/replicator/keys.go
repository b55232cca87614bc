package replicator

import (
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/platform/platform/streams"
)

// Consumer groups partition events by key: an event's Platform-Key
// header, or its topic. So that a group member can tell which partitions
// an envelope holds without decoding it, the Publisher stamps each
// envelope with the header Platform-Envelope-Keys: the distinct FNV-1a
// (32-bit) hashes of its events' keys, as 8 lowercase hex digits each,
// separated by commas, at most MaxEnvelopeKeys of them; an envelope of
// more distinct keys carries "*" (decode to learn them). Partition p of
// P holds the events whose hash modulo P is p, whatever P is.
//
// The header is only a summary: EnvelopeKeys refuses anything but the
// exact format, and a message without it (an envelope stored before
// summaries existed, or a "*") is decoded. EVENTS is written by the
// replicator (the service role); producers only reach it through ingest,
// which cannot set Platform-Envelope headers (ErrReservedHeader), so the
// summary is trusted as the envelope's own writer's word.
const MaxEnvelopeKeys = 16

// manyKeys is the summary of an envelope of more than MaxEnvelopeKeys
// distinct keys.
const manyKeys = "*"

// EventKey returns the partition key of an event stored under subject
// with header h: its Platform-Key header, or its topic (the subject
// without events.).
func EventKey(subject string, h nats.Header) string {
	if k := h.Get(streams.KeyHeader); k != "" {
		return k
	}
	return strings.TrimPrefix(subject, streams.EventsPrefix)
}

// KeyHash is FNV-1a (32-bit) of key, without allocating.
func KeyHash(key string) uint32 {
	const offset, prime = 2166136261, 16777619
	h := uint32(offset)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= prime
	}
	return h
}

// keySummary returns the Platform-Envelope-Keys value of events stored
// under subj.
func keySummary(subj string, evs []*pending) string {
	var hashes []uint32
	topic, topicDone := uint32(0), false
	for _, e := range evs {
		var h uint32
		if k := e.msg.Header.Get(streams.KeyHeader); k != "" {
			h = KeyHash(k)
		} else {
			if !topicDone {
				topic, topicDone = KeyHash(EventKey(subj, nil)), true
			}
			h = topic
		}
		if !containsHash(hashes, h) {
			if len(hashes) == MaxEnvelopeKeys {
				return manyKeys
			}
			hashes = append(hashes, h)
		}
	}
	b := make([]byte, 0, len(hashes)*9)
	for i, h := range hashes {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendHex8(b, h)
	}
	return string(b)
}

func containsHash(hs []uint32, h uint32) bool {
	for _, x := range hs {
		if x == h {
			return true
		}
	}
	return false
}

func appendHex8(b []byte, h uint32) []byte {
	const digits = "0123456789abcdef"
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, digits[(h>>uint(shift))&0xf])
	}
	return b
}

// EnvelopeKeys returns the key hashes a stream message's headers announce
// for the envelope it holds, appended to buf. ok is false when the
// headers do not tell: no summary (not an envelope, or one stored before
// summaries), an envelope of too many keys, or a summary that is not in
// the exact format (more than one value, too long, not hex); decode the
// message then. It reads nothing but h and allocates nothing beyond buf.
func EnvelopeKeys(h nats.Header, buf []uint32) (hashes []uint32, ok bool) {
	vs := h[streams.EnvelopeKeysHeader]
	if len(vs) != 1 || h.Get(streams.EnvelopeHeader) != envelopeVersion {
		return buf, false
	}
	v := vs[0]
	if len(v) < 8 || len(v) > MaxEnvelopeKeys*9-1 || (len(v)+1)%9 != 0 {
		return buf, false
	}
	out := buf
	for i := 0; i < len(v); i += 9 {
		if i > 0 && v[i-1] != ',' {
			return buf, false
		}
		x, err := strconv.ParseUint(v[i:i+8], 16, 32)
		if err != nil || !lowerHex(v[i:i+8]) {
			return buf, false
		}
		out = append(out, uint32(x))
	}
	return out, true
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
