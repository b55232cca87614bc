// Package membership holds the records the failure detector publishes and
// other services read: an instance's Member record in KV MEMBERS, the
// Transition published to stream DETECTOR when its State changes, and the
// Quality class of its network path. It links neither NATS nor the
// detector, so a reader of MEMBERS or DETECTOR needs only this package and
// encoding/json.
package membership

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// State is what the detector believes of an instance.
type State string

// States. An instance is alive while its heartbeats arrive as expected,
// suspect once it has been silent for part of the pause it is allowed,
// dead once its phi passes the threshold, and left after a goodbye
// heartbeat ("leaving":true). Dead and left instances come back alive
// with their next heartbeat.
const (
	Alive   State = "alive"
	Suspect State = "suspect"
	Dead    State = "dead"
	Left    State = "left"
)

// Member is an instance's record in KV MEMBERS under <service>.<instance>.
type Member struct {
	Service  string `json:"service"`
	Instance string `json:"instance"`
	State    State  `json:"state"`
	// Phi is the suspicion level: it passes the detector's threshold
	// (8 by default) when the instance is declared dead.
	Phi float64 `json:"phi"`
	// LastSeen is when the detector last received a heartbeat.
	LastSeen time.Time `json:"last_seen"`
	// Quality is the class of the instance's network path.
	Quality Quality `json:"quality"`
	// FailureProbability is the predictor's probability that the instance
	// dies within the prediction horizon.
	FailureProbability float64 `json:"failure_probability"`
}

// Key returns the member's MEMBERS key, <service>.<instance>.
func (m Member) Key() string { return Key(m.Service, m.Instance) }

// Key returns <service>.<instance>, an instance's key in MEMBERS. It is
// streams.MemberKey, spelled here so that this package links no NATS
// (streams provisions buckets through JetStream).
func Key(service, instance string) string { return service + "." + instance }

// ErrBadRecord is wrapped by every Decode failure.
var ErrBadRecord = errors.New("bad MEMBERS record")

// Decode reads the MEMBERS record stored under key, as every reader of
// MEMBERS does: a JSON Member (fields it does not know are ignored, so a
// newer detector's records still read) whose service and instance are
// valid tokens, whose key is key and whose state is one of the four. Any
// other value was not written by a detector; the error wraps ErrBadRecord.
func Decode(key string, value []byte) (Member, error) {
	var m Member
	if err := json.Unmarshal(value, &m); err != nil {
		return Member{}, fmt.Errorf("%w %s: %v", ErrBadRecord, key, err)
	}
	switch {
	case !ValidToken(m.Service) || !ValidToken(m.Instance):
		return Member{}, fmt.Errorf("%w %s: service %q or instance %q is not a valid name", ErrBadRecord, key, m.Service, m.Instance)
	case m.Key() != key:
		return Member{}, fmt.Errorf("%w %s: it describes %s", ErrBadRecord, key, m.Key())
	}
	switch m.State {
	case Alive, Suspect, Dead, Left:
	default:
		return Member{}, fmt.Errorf("%w %s: unknown state %q", ErrBadRecord, key, m.State)
	}
	return m, nil
}

// ValidToken reports whether s can be a service or instance name in a
// heartbeat subject and a MEMBERS key: 1 to 256 letters, digits, '-',
// '_', '=' or '/' (streams.ValidMemberToken).
func ValidToken(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '=' || c == '/':
		default:
			return false
		}
	}
	return true
}

// Transition is a change of state, published to stream DETECTOR on
// detector.<state>.<service>.<instance> (streams.DetectorSubject): the
// member's record as of the change, the state it left (empty for an
// instance seen for the first time) and when the change happened.
type Transition struct {
	Member
	Previous State     `json:"previous"`
	At       time.Time `json:"at"`
}
