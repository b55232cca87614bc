// Package accrual is the failure detector's pure core: per-instance phi
// accrual over heartbeat inter-arrival times, the network quality class
// of each instance's path, an online failure predictor, and the membership
// table that turns heartbeats and the clock into states, transitions and
// the records to write. It does no I/O and reads no clock: time is passed
// in, so simulations replay it exactly. The detector service feeds it from
// NATS and publishes what it derives.
//
// # Detection
//
// Per instance, phi accrual over a window of inter-arrival times (phi.go),
// with Akka's formulation: the mean is shifted by a tolerated pause and the
// standard deviation has a floor. Both are relative to the instance's
// heartbeat interval. The pause widens with a worse network quality class
// (quality.go: jitter, loss from sequence gaps, probe round trips). An
// instance that stalls (it came back from a silence of two intervals or
// more), or is too young to have shown whether it does, is allowed the
// longest silence any instance of the fleet recovered from: one instance
// sees too few of its own pauses to know its next, the fleet sees many.
// A quiet instance with a clean record is declared dead in well under a
// second at 100 ms heartbeats (table.go, schedule). A late instance that
// answered probes before is probed at once: "no responders" means its
// connection closed, and it is dead without waiting out any pause
// (probe.go, LateTargets and Gone).
//
// # Prediction
//
// Online logistic regression (predictor.go) over the level and trend of
// each heartbeat's load figures, trained from the table's own verdicts:
// the heartbeats before a confirmed death are positive examples, those
// followed by a full horizon of heartbeats negative ones.
package accrual
