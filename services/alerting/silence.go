package alerting

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"
)

// Matcher is one silence matcher in Alertmanager's API v2 form.
type Matcher struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	IsRegex bool   `json:"isRegex"`
	// IsEqual is false for != and !~ (default true).
	IsEqual *bool `json:"isEqual,omitempty"`
}

// matchType returns the matcher's operator.
func (m Matcher) matchType() labels.MatchType {
	eq := m.IsEqual == nil || *m.IsEqual
	switch {
	case m.IsRegex && eq:
		return labels.MatchRegexp
	case m.IsRegex:
		return labels.MatchNotRegexp
	case !eq:
		return labels.MatchNotEqual
	}
	return labels.MatchEqual
}

// Silence mutes the alerts its matchers all match between StartsAt and
// EndsAt. Silences live in KV SILENCES under their ID.
type Silence struct {
	ID        string    `json:"id"`
	Matchers  []Matcher `json:"matchers"`
	StartsAt  time.Time `json:"startsAt"`
	EndsAt    time.Time `json:"endsAt"`
	CreatedBy string    `json:"createdBy"`
	Comment   string    `json:"comment"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Silence states, as Alertmanager reports them.
const (
	SilencePending = "pending"
	SilenceActive  = "active"
	SilenceExpired = "expired"
)

// State returns the silence's state at now.
func (s *Silence) State(now time.Time) string {
	switch {
	case !now.Before(s.EndsAt):
		return SilenceExpired
	case now.Before(s.StartsAt):
		return SilencePending
	default:
		return SilenceActive
	}
}

// compile checks the silence and returns its matchers.
func (s *Silence) compile() (labels.Matchers, error) {
	if len(s.Matchers) == 0 {
		return nil, errors.New("a silence needs at least one matcher")
	}
	if s.EndsAt.IsZero() || !s.EndsAt.After(s.StartsAt) {
		return nil, errors.New("endsAt must be after startsAt")
	}
	if !storable(s.StartsAt) || !storable(s.EndsAt) {
		return nil, errors.New("startsAt and endsAt must be within the years 0 to 9999")
	}
	ms := make(labels.Matchers, 0, len(s.Matchers))
	matchesEmpty := true
	for _, m := range s.Matchers {
		lm, err := labels.NewMatcher(m.matchType(), m.Name, m.Value)
		if err != nil {
			return nil, fmt.Errorf("matcher %s: %w", m.Name, err)
		}
		if m.Name == "" {
			return nil, errors.New("a matcher needs a label name")
		}
		// Stored as JSON, which would replace the bytes that are not
		// UTF-8: the other instances would read another matcher.
		if !utf8.ValidString(m.Name) || !utf8.ValidString(m.Value) {
			return nil, fmt.Errorf("matcher %q: names and values must be UTF-8", m.Name)
		}
		matchesEmpty = matchesEmpty && lm.Matches("")
		ms = append(ms, lm)
	}
	if matchesEmpty {
		return nil, errors.New("at least one matcher must not match the empty string (it would silence everything)")
	}
	return ms, nil
}

// storable reports whether t can be written as JSON (RFC 3339 has
// four-digit years); msgpack bodies can carry any time.
func storable(t time.Time) bool { return t.Year() >= 0 && t.Year() <= 9999 }

// MatchersFromStrings parses matchers written as amtool does
// (alertname="X", instance=~"a.*") into silence matchers.
func MatchersFromStrings(ss []string) ([]Matcher, error) {
	lms, err := parseMatchers(ss)
	if err != nil {
		return nil, err
	}
	out := make([]Matcher, len(lms))
	for i, m := range lms {
		eq := m.Type == labels.MatchEqual || m.Type == labels.MatchRegexp
		out[i] = Matcher{Name: m.Name, Value: m.Value,
			IsRegex: m.Type == labels.MatchRegexp || m.Type == labels.MatchNotRegexp, IsEqual: &eq}
	}
	return out, nil
}

// Silences is the set of silences followed from KV SILENCES. It is safe
// for concurrent use.
type Silences struct {
	mu  sync.RWMutex
	all map[string]silenceEntry
}

type silenceEntry struct {
	s  Silence
	ms labels.Matchers
}

// NewSilences returns an empty set.
func NewSilences() *Silences { return &Silences{all: map[string]silenceEntry{}} }

// Set adds or replaces a silence; a silence that does not compile is
// refused.
func (ss *Silences) Set(s Silence) error {
	ms, err := s.compile()
	if err != nil {
		return err
	}
	ss.mu.Lock()
	ss.all[s.ID] = silenceEntry{s: s, ms: ms}
	ss.mu.Unlock()
	return nil
}

// Delete forgets a silence.
func (ss *Silences) Delete(id string) {
	ss.mu.Lock()
	delete(ss.all, id)
	ss.mu.Unlock()
}

// Get returns a silence by id.
func (ss *Silences) Get(id string) (Silence, bool) {
	ss.mu.RLock()
	defer ss.mu.RUnlock()
	e, ok := ss.all[id]
	return e.s, ok
}

// List returns every silence, sorted by id.
func (ss *Silences) List() []Silence {
	ss.mu.RLock()
	defer ss.mu.RUnlock()
	out := make([]Silence, 0, len(ss.all))
	for _, id := range slices.Sorted(maps.Keys(ss.all)) {
		out = append(out, ss.all[id].s)
	}
	return out
}

// Mutes reports whether an active silence matches lbls at now.
func (ss *Silences) Mutes(lbls map[string]string, now time.Time) bool {
	return len(ss.Silencing(lbls, now)) > 0
}

// Silencing returns the ids of the active silences matching lbls at now.
func (ss *Silences) Silencing(lbls map[string]string, now time.Time) []string {
	ss.mu.RLock()
	defer ss.mu.RUnlock()
	var ids []string
	for id, e := range ss.all {
		if e.s.State(now) == SilenceActive && matchAll(e.ms, lbls) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// Expired returns the ids of silences that ended more than retention
// before now, to be removed.
func (ss *Silences) Expired(now time.Time, retention time.Duration) []string {
	ss.mu.RLock()
	defer ss.mu.RUnlock()
	var ids []string
	for id, e := range ss.all {
		if now.Sub(e.s.EndsAt) > retention {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// Inhibitor mutes target alerts while a source alert fires with the same
// values of the rule's equal labels, as Alertmanager's inhibitor does. It
// is rebuilt from the firing alerts at each evaluation and told of posted
// alerts as they arrive.
type Inhibitor struct {
	mu      sync.RWMutex
	rules   []*InhibitRule
	sources []map[model.Fingerprint]Alert // per rule, its firing sources
}

// NewInhibitor returns an inhibitor with rules.
func NewInhibitor(rules []*InhibitRule) *Inhibitor { return &Inhibitor{rules: rules} }

// SetRules replaces the rules.
func (in *Inhibitor) SetRules(rules []*InhibitRule) {
	in.mu.Lock()
	in.rules, in.sources = rules, nil
	in.mu.Unlock()
}

// Update records the alerts firing at now as the possible sources.
func (in *Inhibitor) Update(alerts []Alert, now time.Time) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.sources = make([]map[model.Fingerprint]Alert, len(in.rules))
	in.add(alerts, now)
}

// Add records alerts received at now: a firing source is added or
// updated, a resolved one removed.
func (in *Inhibitor) Add(alerts []Alert, now time.Time) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.sources) != len(in.rules) {
		in.sources = make([]map[model.Fingerprint]Alert, len(in.rules))
	}
	in.add(alerts, now)
}

func (in *Inhibitor) add(alerts []Alert, now time.Time) {
	for i, r := range in.rules {
		for _, a := range alerts {
			if !matchAll(r.source, a.Labels) {
				continue
			}
			if in.sources[i] == nil {
				in.sources[i] = map[model.Fingerprint]Alert{}
			}
			if a.Resolved(now) {
				delete(in.sources[i], a.Fingerprint())
			} else {
				in.sources[i][a.Fingerprint()] = a
			}
		}
	}
}

// Mutes reports whether a firing source inhibits an alert with lbls.
func (in *Inhibitor) Mutes(lbls map[string]string, now time.Time) bool {
	return in.InhibitedBy(lbls, now) != ""
}

// InhibitedBy returns the fingerprint of the firing source that inhibits
// an alert with lbls, "" if none does; of several, the lowest, where
// Alertmanager names one it happens to find first. An alert never
// inhibits itself.
func (in *Inhibitor) InhibitedBy(lbls map[string]string, _ time.Time) string {
	in.mu.RLock()
	defer in.mu.RUnlock()
	found := false
	var best model.Fingerprint
	for i, r := range in.rules {
		if i >= len(in.sources) || !matchAll(r.target, lbls) {
			continue
		}
	next:
		for fp, src := range in.sources[i] {
			if found && fp >= best {
				continue
			}
			if maps.Equal(src.Labels, lbls) {
				continue
			}
			for _, n := range r.Equal {
				if src.Labels[n] != lbls[n] {
					continue next
				}
			}
			found, best = true, fp
		}
	}
	if !found {
		return ""
	}
	return best.String()
}

// muters mutes what any of its muters mutes.
type muters []Muter

func (ms muters) Mutes(lbls map[string]string, now time.Time) bool {
	for _, m := range ms {
		if m.Mutes(lbls, now) {
			return true
		}
	}
	return false
}
