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
// (quality.go: jitter, loss from sequence gaps, probe round trips) and
// with the longest silence the instance recently recovered from, so an
// instance that stalls for GC is not declared dead for doing it again,
// while a quiet, regular one is declared dead in well under a second at
// 100 ms heartbeats (table.go, schedule).
//
// # Prediction
//
// Online logistic regression (predictor.go) over the level and trend of
// each heartbeat's load figures, trained from the table's own verdicts:
// the heartbeats before a confirmed death are positive examples, those
// followed by a full horizon of heartbeats negative ones.
package accrual
