package alerting

import _ "embed"

// DefaultRules is the rules file the service runs without --alerts-file:
// the platform's deploy/alerts.yaml.
//
//go:embed default_alerts.yaml
var DefaultRules string
