package alerting

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/expr-lang/expr"
	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/platform/platform/streams"
)

// Config is the content of the rules file (deploy/alerts.yaml): the rules,
// and how their alerts are grouped, routed, inhibited and delivered.
type Config struct {
	// EvaluationInterval is how often rules are evaluated (default 5s).
	EvaluationInterval Duration `yaml:"evaluation_interval"`
	// Rules are the alerting rules.
	Rules []*Rule `yaml:"rules"`
	// Route is the root of the routing tree.
	Route *Route `yaml:"route"`
	// Receivers are where notifications go, by name.
	Receivers []*Receiver `yaml:"receivers"`
	// InhibitRules hold back target alerts while a source alert fires.
	InhibitRules []*InhibitRule `yaml:"inhibit_rules"`
	// Alertmanagers are base URLs (http://host:9093) of real
	// Alertmanagers every alert is forwarded to at each evaluation, as
	// Prometheus does; they group, silence and notify on their own.
	Alertmanagers []string `yaml:"alertmanagers"`
}

// Rule is one alerting rule: expr is evaluated over every series of the
// signal named by Over; a series for which it is true for For raises the
// alert named Alert, labelled with the series' labels and Labels.
type Rule struct {
	// Alert is the alert name, one subject token (letters, digits, '_').
	Alert string `yaml:"alert"`
	// Over names the signal: heartbeats, members, transitions, streams,
	// consumers, events or metrics.
	Over string `yaml:"over"`
	// Expr is a boolean expression (github.com/expr-lang/expr) over the
	// series' fields.
	Expr string `yaml:"expr"`
	// Value names the field reported as the alert's value ($value in
	// templates); default: none.
	Value string `yaml:"value"`
	// Window is the time window of counts (events, transitions; default
	// 1m).
	Window Duration `yaml:"window"`
	// Metric is the Prometheus metric name read by over: metrics.
	Metric string `yaml:"metric"`
	// For is how long the expression must hold before the alert fires.
	For Duration `yaml:"for"`
	// KeepFiringFor keeps the alert firing this long after the expression
	// stops holding, against flapping.
	KeepFiringFor Duration `yaml:"keep_firing_for"`
	// Labels are added to the alert's labels; severity belongs here.
	Labels map[string]string `yaml:"labels"`
	// Annotations are Go templates with $labels and $value, as in
	// Prometheus.
	Annotations map[string]string `yaml:"annotations"`

	line      int
	selectors map[string]string
	// programs run over map environments, typed (when not nil) over the
	// signal's typed environment.
	programs, typed *programs
	annotations     map[string]*template.Template
}

// Line returns the line of the rules file the rule starts on.
func (r *Rule) Line() int { return r.line }

// Receiver is a named set of destinations.
type Receiver struct {
	Name string `yaml:"name"`
	// Stream publishes to stream ALERTS on alerts.<severity>.<alertname>.
	Stream bool `yaml:"stream"`
	// Webhooks receive Alertmanager's webhook payload (version 4).
	Webhooks []string `yaml:"webhook_urls"`
	// MaxAlerts, when above 0, sends a group's first MaxAlerts alerts
	// and counts the rest in truncatedAlerts, as Alertmanager's
	// max_alerts does. The stream's message is also cut to what one NATS
	// message carries.
	MaxAlerts int `yaml:"max_alerts"`
}

// InhibitRule mutes target alerts while a source alert fires with the same
// values of the Equal labels.
type InhibitRule struct {
	SourceMatchers []string `yaml:"source_matchers"`
	TargetMatchers []string `yaml:"target_matchers"`
	Equal          []string `yaml:"equal"`

	source, target labels.Matchers
}

// Defaults of the route timers (Alertmanager's) and the evaluation.
const (
	DefaultGroupWait          = 30 * time.Second
	DefaultGroupInterval      = 5 * time.Minute
	DefaultRepeatInterval     = 4 * time.Hour
	DefaultEvaluationInterval = 5 * time.Second
	DefaultWindow             = time.Minute
)

// Signals rules can range over.
const (
	OverHeartbeats  = "heartbeats"
	OverMembers     = "members"
	OverTransitions = "transitions"
	OverStreams     = "streams"
	OverConsumers   = "consumers"
	OverEvents      = "events"
	OverMetrics     = "metrics"
)

var overs = []string{OverHeartbeats, OverMembers, OverTransitions, OverStreams, OverConsumers, OverEvents, OverMetrics}

// Duration is a time.Duration written as "30s", "5m" or "4h" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration, also accepting "1d".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	s := n.Value
	if days, ok := strings.CutSuffix(s, "d"); ok {
		s = days + "h"
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("line %d: bad duration %q", n.Line, n.Value)
		}
		*d = Duration(24 * v)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: bad duration %q", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// ErrConfig is wrapped by every error of LoadConfig and ParseConfig.
var ErrConfig = errors.New("bad alerting config")

// LoadConfig reads and checks the rules file at path.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrConfig, path, err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

var alertNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ParseConfig parses and checks a rules file: every expression compiles,
// every template parses, every matcher parses, and each error names the
// line it comes from.
func ParseConfig(b []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	var c Config
	if len(root.Content) > 0 {
		// Unknown keys are refused, with their line, as amtool
		// check-config does: a misspelt group_wait must not leave the
		// default in force unnoticed.
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		ruleLines(root.Content[0], c.Rules)
		if err := zeroTimers(root.Content[0]); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return &c, nil
}

// zeroTimers refuses, with its line, a zero group_interval or
// repeat_interval anywhere in the routing tree and a zero
// evaluation_interval, as Alertmanager refuses the first two: zero
// cannot mean "the default" once written.
func zeroTimers(doc *yaml.Node) error {
	var walk func(n *yaml.Node, keys ...string) error
	walk = func(n *yaml.Node, keys ...string) error {
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if slices.Contains(keys, k.Value) {
				var d Duration
				if v.Decode(&d) == nil && d == 0 {
					return fmt.Errorf("line %d: %s cannot be zero", k.Line, k.Value)
				}
			}
			switch {
			case k.Value == "route":
				if err := walk(v, "group_interval", "repeat_interval"); err != nil {
					return err
				}
			case k.Value == "routes" && v.Kind == yaml.SequenceNode:
				for _, ch := range v.Content {
					if err := walk(ch, "group_interval", "repeat_interval"); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	return walk(doc, "evaluation_interval")
}

// ruleLines records the line each rule starts on.
func ruleLines(doc *yaml.Node, rules []*Rule) {
	if doc.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value == "rules" && doc.Content[i+1].Kind == yaml.SequenceNode {
			for j, n := range doc.Content[i+1].Content {
				if j < len(rules) && rules[j] != nil {
					rules[j].line = n.Line
				}
			}
		}
	}
}

func (c *Config) check() error {
	if c.EvaluationInterval == 0 {
		c.EvaluationInterval = Duration(DefaultEvaluationInterval)
	}
	seen := map[string]int{}
	for i, r := range c.Rules {
		if r == nil {
			return fmt.Errorf("rule %d is empty", i+1)
		}
		if err := r.compile(); err != nil {
			return fmt.Errorf("line %d: rule %q: %w", r.line, r.Alert, err)
		}
		key := r.Alert + "/" + r.Over + "/" + r.Expr
		if l, ok := seen[key]; ok {
			return fmt.Errorf("line %d: rule %q repeats the rule of line %d", r.line, r.Alert, l)
		}
		seen[key] = r.line
	}
	if len(c.Receivers) == 0 {
		c.Receivers = []*Receiver{{Name: "platform", Stream: true}}
	}
	names := map[string]bool{}
	for _, rc := range c.Receivers {
		if rc.Name == "" || names[rc.Name] {
			return fmt.Errorf("receiver %q: empty or repeated name", rc.Name)
		}
		if rc.MaxAlerts < 0 {
			return fmt.Errorf("receiver %q: max_alerts must be 0 (no limit) or more, got %d", rc.Name, rc.MaxAlerts)
		}
		names[rc.Name] = true
	}
	if c.Route == nil {
		c.Route = &Route{}
	}
	if c.Route.Receiver == "" {
		c.Route.Receiver = c.Receivers[0].Name
	}
	if len(c.Route.Matchers) > 0 {
		return errors.New("route: the root route matches every alert; it takes no matchers")
	}
	if err := c.Route.fill(nil, names); err != nil {
		return err
	}
	for i, ir := range c.InhibitRules {
		var err error
		if ir.source, err = parseMatchers(ir.SourceMatchers); err != nil {
			return fmt.Errorf("inhibit rule %d: source: %w", i+1, err)
		}
		if ir.target, err = parseMatchers(ir.TargetMatchers); err != nil {
			return fmt.Errorf("inhibit rule %d: target: %w", i+1, err)
		}
	}
	return nil
}

func (r *Rule) compile() error {
	if !alertNameRE.MatchString(r.Alert) {
		return errors.New(`"alert" must be a name of letters, digits and '_'`)
	}
	if !slices.Contains(overs, r.Over) {
		return fmt.Errorf(`"over" must be one of %s, got %q`, strings.Join(overs, ", "), r.Over)
	}
	if r.Over == OverMetrics && r.Metric == "" {
		return errors.New(`over: metrics needs "metric"`)
	}
	if r.Window == 0 {
		r.Window = Duration(DefaultWindow)
	}
	if r.Expr == "" {
		return errors.New(`"expr" is empty`)
	}
	if sev := r.Labels["severity"]; !streams.ValidAlertSeverity(sev) {
		return fmt.Errorf("labels.severity must be one of %s, got %q", strings.Join(streams.AlertSeverities(), ", "), sev)
	}
	r.selectors = selectorsOf(r.Expr)
	p, err := compilePrograms(r.Expr, nil, exprOptions())
	if err != nil {
		return fmt.Errorf("expr: %w", err)
	}
	r.programs = p
	r.typed = typedPrograms(r.Over, r.Expr, r.selectors)
	if r.typed == nil {
		// Signals give typed environments to every series of a rule
		// compiled for them, so the narrower map programs are for the
		// other rules only.
		r.programs.narrow(r.Expr, r.selectors, exprOptions())
	}
	r.annotations = make(map[string]*template.Template, len(r.Annotations))
	for k, v := range r.Annotations {
		t, err := template.New(k).Option("missingkey=zero").Parse(templatePrelude + v)
		if err != nil {
			return fmt.Errorf("annotation %s: %w", k, err)
		}
		r.annotations[k] = t
	}
	return nil
}

// exprOptions are the options every rule's expression is compiled with:
// series environments are maps, a name no series has reads as nil.
func exprOptions() []expr.Option {
	return []expr.Option{expr.Env(map[string]any{}), expr.AllowUndefinedVariables(), expr.AsBool()}
}

// templatePrelude gives annotation templates Prometheus's $labels and
// $value.
const templatePrelude = `{{$labels := .Labels}}{{$value := .Value}}`

// expand renders the rule's annotations for one alert.
func (r *Rule) expand(lbls map[string]string, value any) map[string]string {
	out := make(map[string]string, len(r.annotations))
	data := struct {
		Labels map[string]string
		Value  any
	}{lbls, value}
	for k, t := range r.annotations {
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			out[k] = fmt.Sprintf("template error: %v", err)
			continue
		}
		out[k] = b.String()
	}
	return out
}

// AlertmanagerConfig returns the routing part of the configuration —
// route, receivers and inhibit rules — in Alertmanager's configuration
// format, as GET /api/v2/status serves it in config.original for
// `amtool config show` and `amtool config routes`. A receiver's stream
// has no Alertmanager equivalent and is left out; its webhooks are
// webhook_configs.
func (c *Config) AlertmanagerConfig() ([]byte, error) {
	type amRoute struct {
		Receiver       string     `yaml:"receiver,omitempty"`
		GroupBy        []string   `yaml:"group_by,omitempty"`
		Continue       bool       `yaml:"continue,omitempty"`
		Matchers       []string   `yaml:"matchers,omitempty"`
		GroupWait      string     `yaml:"group_wait,omitempty"`
		GroupInterval  string     `yaml:"group_interval,omitempty"`
		RepeatInterval string     `yaml:"repeat_interval,omitempty"`
		Routes         []*amRoute `yaml:"routes,omitempty"`
	}
	type amWebhook struct {
		URL       string `yaml:"url"`
		MaxAlerts int    `yaml:"max_alerts,omitempty"`
	}
	type amReceiver struct {
		Name     string      `yaml:"name"`
		Webhooks []amWebhook `yaml:"webhook_configs,omitempty"`
	}
	type amInhibit struct {
		Source []string `yaml:"source_matchers,omitempty"`
		Target []string `yaml:"target_matchers,omitempty"`
		Equal  []string `yaml:"equal,omitempty"`
	}
	dur := func(d *Duration) string {
		if d == nil {
			return ""
		}
		return model.Duration(*d).String()
	}
	var conv func(rt *Route, root bool) *amRoute
	conv = func(rt *Route, root bool) *amRoute {
		out := &amRoute{Receiver: rt.Receiver, Continue: rt.Continue, Matchers: rt.Matchers,
			GroupWait: dur(rt.GroupWait), GroupInterval: dur(rt.GroupInterval), RepeatInterval: dur(rt.RepeatInterval)}
		if root || rt.parent == nil || !slices.Equal(rt.GroupBy, rt.parent.GroupBy) {
			out.GroupBy = rt.GroupBy
		}
		if !root && rt.parent != nil && rt.Receiver == rt.parent.Receiver {
			out.Receiver = "" // inherited, as written
		}
		for _, ch := range rt.Routes {
			out.Routes = append(out.Routes, conv(ch, false))
		}
		return out
	}
	doc := struct {
		Route        *amRoute     `yaml:"route"`
		Receivers    []amReceiver `yaml:"receivers"`
		InhibitRules []amInhibit  `yaml:"inhibit_rules,omitempty"`
	}{Route: conv(c.Route, true)}
	for _, rc := range c.Receivers {
		r := amReceiver{Name: rc.Name}
		for _, u := range rc.Webhooks {
			r.Webhooks = append(r.Webhooks, amWebhook{URL: u, MaxAlerts: rc.MaxAlerts})
		}
		doc.Receivers = append(doc.Receivers, r)
	}
	for _, ir := range c.InhibitRules {
		doc.InhibitRules = append(doc.InhibitRules, amInhibit{Source: ir.SourceMatchers, Target: ir.TargetMatchers, Equal: ir.Equal})
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode alertmanager config: %w", err)
	}
	return b, nil
}
