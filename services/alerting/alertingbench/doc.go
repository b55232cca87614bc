// Package alertingbench measures the alerting service: an alert storm
// (thousands of instances dying within seconds) against the grouping
// targets, alerts posted through Alertmanager's API v2 side by side with a
// real Alertmanager, and the cost of one evaluation of many rules over
// many series. It is what `platform bench alerting` runs.
package alertingbench
