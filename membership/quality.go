package membership

import (
	"encoding/json"
	"fmt"
)

// Quality is the class of an instance's network path, judged by the
// detector from the jitter of its heartbeats, the heartbeats lost on the
// way (gaps in seq) and the round trip of probes. A worse class widens the
// pause the instance may show before it is declared dead.
type Quality uint8

// Quality classes, best first.
const (
	Excellent Quality = iota
	Good
	Fair
	Poor
	VeryPoor
)

var qualityNames = [...]string{"excellent", "good", "fair", "poor", "very_poor"}

// String returns the class as written in MEMBERS: excellent, good, fair,
// poor or very_poor.
func (q Quality) String() string {
	if int(q) < len(qualityNames) {
		return qualityNames[q]
	}
	return fmt.Sprintf("quality(%d)", q)
}

// MarshalJSON writes the class name.
func (q Quality) MarshalJSON() ([]byte, error) { return json.Marshal(q.String()) }

// UnmarshalJSON reads a class name.
func (q *Quality) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	for i, n := range qualityNames {
		if n == s {
			*q = Quality(i)
			return nil
		}
	}
	return fmt.Errorf("unknown quality %q", s)
}
