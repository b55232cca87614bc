package alerting

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDefaultRulesAreTheDeployedFile(t *testing.T) {
	b, err := os.ReadFile("../../deploy/alerts.yaml")
	require.NoError(t, err)
	require.Equal(t, string(b), DefaultRules, "deploy/alerts.yaml and default_alerts.yaml must stay the same file")
	c, err := ParseConfig(b)
	require.NoError(t, err)
	require.NotEmpty(t, c.Rules)
}

func TestBadRuleNamesItsLine(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"bad expr", "rules:\n  - alert: A\n    over: members\n    expr: state ==\n    labels: {severity: critical}\n", "line 2: rule \"A\": expr"},
		{"unknown signal", "rules:\n  - alert: A\n    over: members\n    expr: 'true'\n    labels: {severity: info}\n  - alert: B\n    over: nope\n    expr: 'true'\n    labels: {severity: info}\n", `line 6: rule "B": "over" must be one of`},
		{"no severity", "rules:\n  - alert: A\n    over: members\n    expr: 'true'\n", "line 2: rule \"A\": labels.severity"},
		{"unknown severity", "rules:\n  - alert: A\n    over: members\n    expr: 'true'\n    labels: {severity: info}\n  - alert: B\n    over: members\n    expr: 'true'\n    labels: {severity: page}\n",
			`line 6: rule "B": labels.severity must be one of critical, warning, info, got "page"`},
		{"bad duration", "rules:\n  - alert: A\n    over: members\n    expr: 'true'\n    for: soon\n", "line 5: bad duration"},
		{"bad template", "rules:\n  - alert: A\n    over: members\n    expr: 'true'\n    labels: {severity: info}\n    annotations: {summary: '{{ .Nope'}\n", "line 2: rule \"A\": annotation summary"},
		{"bad matcher", "route: {routes: [{matchers: ['a=~(']}]}\n", "route"},
		{"unknown receiver", "route: {receiver: nobody}\n", `unknown receiver "nobody"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml))
			require.Error(t, err)
			require.ErrorIs(t, err, ErrConfig)
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestRouteDefaultsAndMatch(t *testing.T) {
	c, err := ParseConfig([]byte(`
receivers: [{name: a, stream: true}, {name: b}]
route:
  receiver: a
  group_wait: 1s
  routes:
    - matchers: ['severity="critical"']
      receiver: b
      continue: true
    - matchers: ['service=~"platform-.*"']
`))
	require.NoError(t, err)
	require.Equal(t, time.Second, c.Route.Wait())
	require.Equal(t, DefaultGroupInterval, c.Route.Routes[0].Interval())
	got := c.Route.match(map[string]string{"severity": "critical", "service": "platform-txn"})
	require.Len(t, got, 2)
	require.Equal(t, "b", got[0].Receiver)
	require.Equal(t, "a", got[1].Receiver)
	got = c.Route.match(map[string]string{"severity": "warning", "service": "other"})
	require.Len(t, got, 1)
	require.Same(t, c.Route, got[0])
}

func TestSendHoldCoversOnlyInhibitingRules(t *testing.T) {
	rules := `rules:
  - {alert: Dead, over: members, expr: 'true', labels: {severity: critical}}
  - {alert: Slow, over: heartbeats, expr: 'true', for: 2m, labels: {severity: warning}}
  - {alert: Lagging, over: consumers, expr: 'true', for: 5m, labels: {severity: warning}}
  - {alert: Down, over: members, expr: 'true', for: 1m, labels: {severity: critical}}
`
	tests := []struct {
		name, inhibit string
		want          time.Duration
	}{
		{"no inhibit rules", "", 0},
		{"source by a name of a rule without for", `inhibit_rules: [{source_matchers: ['alertname="Dead"'], target_matchers: ['severity="warning"']}]`, 0},
		{"source by a fixed label", `inhibit_rules: [{source_matchers: ['severity="critical"'], target_matchers: ['severity="warning"']}]`, time.Minute},
		{"source by a name regexp", `inhibit_rules: [{source_matchers: ['alertname=~"Slow|Dead"'], target_matchers: ['severity="info"']}]`, 2 * time.Minute},
		{"source by a series label: any rule may raise it", `inhibit_rules: [{source_matchers: ['service="txn"'], target_matchers: ['severity="info"']}]`, 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(rules + tt.inhibit + "\n"))
			require.NoError(t, err)
			require.Equal(t, tt.want, SendHold(c))
		})
	}

	b, err := os.ReadFile("../../deploy/alerts.yaml")
	require.NoError(t, err)
	c, err := ParseConfig(b)
	require.NoError(t, err)
	require.Zero(t, SendHold(c), "the default rules' only inhibiting alert, InstanceDead, has no for: nothing to hold after a start")
}

func TestNegativeMaxAlertsRefused(t *testing.T) {
	_, err := ParseConfig([]byte("receivers: [{name: r, stream: true, max_alerts: -1}]\n"))
	require.ErrorContains(t, err, `receiver "r": max_alerts must be 0 (no limit) or more, got -1`)
}
