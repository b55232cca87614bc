package streams

import (
	"errors"
	"fmt"
	"strings"

	"github.com/platform/platform/membership"
)

// Subject prefixes of the platform. Each builder and parser below is the
// one place its scheme is spelled out.
const (
	// EventsPrefix starts every stored event: events.<topic>.
	EventsPrefix = "events."
	// DeadPrefix starts every dead letter: dead.<group>.<topic>.
	DeadPrefix = "dead."
	// ConsumePrefix starts every request to the consume service:
	// consume.<group>.<verb>.
	ConsumePrefix = "consume."
	// IngestPrefix starts every ingest subject: ingest.<topic>.
	IngestPrefix = "ingest."
	// HeartbeatPrefix starts every heartbeat: hb.<service>.<instance>.
	HeartbeatPrefix = "hb."
	// DetectorPrefix starts every detector transition:
	// detector.<state>.<service>.<instance>.
	DetectorPrefix = "detector."
	// AlertsPrefix starts every alert notification:
	// alerts.<severity>.<alertname>.
	AlertsPrefix = "alerts."
	// KVPrefix starts every KV bucket's subjects: $KV.<bucket>.<key>.
	KVPrefix = "$KV."
	// InstancePrefix starts every instance-addressed request subject:
	// inst.<service>.<instance>.<subject> reaches the one instance
	// <instance> of micro service <service> on its endpoint <subject>.
	InstancePrefix = "inst."
	// RoutePrefix starts every request the balancer forwards:
	// route.<subject> goes to the best instance serving <subject>.
	RoutePrefix = "route."
)

// Request subjects of the services' own endpoints, one spelling each.
const (
	// AdminStatusSubject answers the platform's status.
	AdminStatusSubject = "admin.status"

	// TxnGetSubject reads keys with their revisions.
	TxnGetSubject = "txn.get"
	// TxnCommitSubject commits a transaction.
	TxnCommitSubject = "txn.commit"

	// MembersListSubject and MembersStatusSubject are the detector's
	// endpoints. They cannot live under detector.>, which stream DETECTOR
	// captures.
	MembersListSubject   = "members.list"
	MembersStatusSubject = "members.status"
	// MembersGetSubject is the detector's view of one instance with its
	// heartbeat intervals.
	MembersGetSubject = "members.get"

	// BalancerStatusSubject and BalancerBalanceSubject are the balancer's
	// endpoints.
	BalancerStatusSubject  = "balancer.status"
	BalancerBalanceSubject = "balancer.balance"

	// The alerting service's subjects share the prefix alerts. with the
	// notifications (alerts.<severity>.<alertname>), which stream ALERTS
	// captures by severity only, so requests here are not stored.
	AlertsPostSubject          = AlertsPrefix + "post"
	AlertsListSubject          = AlertsPrefix + "list"
	AlertsStatusSubject        = AlertsPrefix + "status"
	AlertsGroupsSubject        = AlertsPrefix + "groups"
	AlertsPendingSubject       = AlertsPrefix + "pending"
	AlertsReloadSubject        = AlertsPrefix + "reload"
	AlertsSilenceAddSubject    = AlertsPrefix + "silence.add"
	AlertsSilenceListSubject   = AlertsPrefix + "silence.list"
	AlertsSilenceExpireSubject = AlertsPrefix + "silence.expire"
	// AlertsFanoutSubject carries accepted posted alerts to every
	// alerting instance.
	AlertsFanoutSubject = AlertsPrefix + "fanout"
)

// Topic limits: 1 to MaxTopicTokens tokens of 1 to MaxTokenBytes bytes each.
const (
	MaxTopicTokens = 16
	MaxTokenBytes  = 64
)

// ErrBadSubject is wrapped by every parse error of this file.
var ErrBadSubject = errors.New("bad subject")

func badSubject(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadSubject, fmt.Sprintf(format, args...))
}

// EventSubject returns events.<topic>.
func EventSubject(topic string) string { return EventsPrefix + topic }

// ConsumeSubject returns consume.<group>.<verb>, the consume service's
// subject for verb (next, ack, status, create) of group; group "*" makes
// the subject every group's.
func ConsumeSubject(group, verb string) string { return ConsumePrefix + group + "." + verb }

// DeadSubject returns dead.<group>.<topic>, where a group's dead letter
// of an event of topic is stored.
func DeadSubject(group, topic string) string { return DeadPrefix + group + "." + topic }

// IngestSubject returns ingest.<topic>.
func IngestSubject(topic string) string { return IngestPrefix + topic }

// IngestTopic returns the topic of ingest.<topic>, checked with CheckTopic.
func IngestTopic(subject string) (string, error) {
	topic, ok := strings.CutPrefix(subject, IngestPrefix)
	if !ok {
		return "", badSubject("%q does not start with %q", subject, IngestPrefix)
	}
	if err := CheckTopic(topic); err != nil {
		return "", err
	}
	return topic, nil
}

// CheckTopic accepts 1 to 16 tokens of 1 to 64 letters, digits, '-', '_',
// '~', '=', ':' or '@': what every NATS tool can type and no wildcard.
func CheckTopic(topic string) error {
	if topic == "" {
		return badSubject(`no topic after %q`, IngestPrefix)
	}
	toks := strings.Split(topic, ".")
	if len(toks) > MaxTopicTokens {
		return badSubject("%d tokens, at most %d", len(toks), MaxTopicTokens)
	}
	for _, t := range toks {
		if t == "" {
			return badSubject("empty token")
		}
		if len(t) > MaxTokenBytes {
			return badSubject("token of %d bytes, at most %d", len(t), MaxTokenBytes)
		}
		for i := 0; i < len(t); i++ {
			c := t[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
				c == '-' || c == '_' || c == '~' || c == '=' || c == ':' || c == '@') {
				return badSubject("character %q not allowed in token %q", c, t)
			}
		}
	}
	return nil
}

// HeartbeatSubject returns hb.<service>.<instance>.
func HeartbeatSubject(service, instance string) string {
	return HeartbeatPrefix + service + "." + instance
}

// ParseHeartbeatSubject splits hb.<service>.<instance> into its service and
// instance. Both must be valid member tokens (see ValidMemberToken),
// because together they name the member's MEMBERS key.
func ParseHeartbeatSubject(subject string) (service, instance string, err error) {
	rest, ok := strings.CutPrefix(subject, HeartbeatPrefix)
	if !ok {
		return "", "", badSubject("%q does not start with %q", subject, HeartbeatPrefix)
	}
	service, instance, ok = strings.Cut(rest, ".")
	if !ok || strings.Contains(instance, ".") {
		return "", "", badSubject("%q: want hb.<service>.<instance>", subject)
	}
	if !ValidMemberToken(service) || !ValidMemberToken(instance) {
		return "", "", badSubject("%q: service and instance must be non-empty and use only letters, digits, '-', '_', '=' or '/'", subject)
	}
	return service, instance, nil
}

// ValidMemberToken reports whether s can be a service or instance name in
// a heartbeat subject and a MEMBERS key: 1 to 256 letters, digits, '-',
// '_', '=' or '/' (membership.ValidToken, which readers of MEMBERS use
// without linking NATS).
func ValidMemberToken(s string) bool { return membership.ValidToken(s) }

// MemberKey returns <service>.<instance>, the key of an instance in the
// MEMBERS and WEIGHTS buckets.
func MemberKey(service, instance string) string { return service + "." + instance }

// DetectorSubject returns detector.<state>.<service>.<instance>.
func DetectorSubject(state, service, instance string) string {
	return DetectorPrefix + state + "." + service + "." + instance
}

// Alert severities: the fixed set a notification subject carries, so that
// stream ALERTS captures notifications (alerts.<severity>.>) and nothing
// else under alerts. (the alerting service's requests live there too).
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
	SeverityInfo     = "info"
)

// AlertSeverities returns the severities in order of urgency.
func AlertSeverities() []string {
	return []string{SeverityCritical, SeverityWarning, SeverityInfo}
}

// ValidAlertSeverity reports whether s is one of AlertSeverities.
func ValidAlertSeverity(s string) bool {
	return s == SeverityCritical || s == SeverityWarning || s == SeverityInfo
}

// AlertStreamSubjects returns the subjects of stream ALERTS:
// alerts.<severity>.> for every severity.
func AlertStreamSubjects() []string {
	out := make([]string, 0, 3)
	for _, s := range AlertSeverities() {
		out = append(out, all(AlertsPrefix+s+"."))
	}
	return out
}

// AlertSubject returns alerts.<severity>.<alertname>. severity must be one
// of AlertSeverities; alertname is made one token: a character a subject
// token cannot hold ('.', '*', '>', white space, control) becomes '_'.
func AlertSubject(severity, alertname string) string {
	return AlertsPrefix + severity + "." + alertToken(alertname)
}

func alertToken(name string) string {
	if name == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f {
			return '_'
		}
		return r
	}, name)
}

// KVSubjectPrefix returns $KV.<bucket>., the prefix of every key's subject.
func KVSubjectPrefix(bucket string) string { return KVPrefix + bucket + "." }

// KVSubject returns $KV.<bucket>.<key>, the subject a key is stored on.
func KVSubject(bucket, key string) string { return KVPrefix + bucket + "." + key }

// KVKey returns the key of $KV.<bucket>.<key>, and false when subject is
// not in bucket.
func KVKey(bucket, subject string) (string, bool) {
	key, ok := strings.CutPrefix(subject, KVSubjectPrefix(bucket))
	return key, ok && key != ""
}

// InstanceSubject returns inst.<service>.<instance>.<subject>, the subject
// on which instance <instance> of micro service <service> (its full micro
// name, as in heartbeats) answers its endpoint <subject>. A wildcard
// endpoint subject gives a wildcard instance subject.
func InstanceSubject(service, instance, subject string) string {
	return InstancePrefix + service + "." + instance + "." + subject
}

// ParseInstanceSubject splits inst.<service>.<instance>.<subject>. Service
// and instance must be valid member tokens and subject non-empty.
func ParseInstanceSubject(s string) (service, instance, subject string, err error) {
	rest, ok := strings.CutPrefix(s, InstancePrefix)
	if !ok {
		return "", "", "", badSubject("%q does not start with %q", s, InstancePrefix)
	}
	service, rest, ok1 := strings.Cut(rest, ".")
	instance, subject, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || subject == "" {
		return "", "", "", badSubject("%q: want inst.<service>.<instance>.<subject>", s)
	}
	if !ValidMemberToken(service) || !ValidMemberToken(instance) {
		return "", "", "", badSubject("%q: service and instance must be non-empty and use only letters, digits, '-', '_', '=' or '/'", s)
	}
	return service, instance, subject, nil
}

// RouteSubject returns route.<subject>.
func RouteSubject(subject string) string { return RoutePrefix + subject }

// RouteTarget returns the subject of route.<subject>: non-empty, without
// empty tokens or wildcards, since a request goes to one concrete subject.
func RouteTarget(s string) (string, error) {
	subject, ok := strings.CutPrefix(s, RoutePrefix)
	if !ok {
		return "", badSubject("%q does not start with %q", s, RoutePrefix)
	}
	if subject == "" {
		return "", badSubject("no subject after %q", RoutePrefix)
	}
	for _, t := range strings.Split(subject, ".") {
		if t == "" || t == "*" || t == ">" {
			return "", badSubject("%q: a routed subject needs non-empty tokens and no wildcards", subject)
		}
	}
	return subject, nil
}

// SubjectMatches reports whether the literal subject matches filter, a
// subject that may hold the wildcards '*' (one token) and '>' (one or more
// trailing tokens).
func SubjectMatches(filter, subject string) bool {
	for {
		ft, frest, fmore := strings.Cut(filter, ".")
		st, srest, smore := strings.Cut(subject, ".")
		switch {
		case ft == ">":
			return st != ""
		case ft != "*" && ft != st:
			return false
		case !fmore || !smore:
			return fmore == smore
		}
		filter, subject = frest, srest
	}
}

// all returns prefix + ">", the wildcard of a whole scheme.
func all(prefix string) string { return prefix + ">" }
