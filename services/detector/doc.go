// Package detector is the platform's failure detector: it listens to every
// instance's heartbeats (hb.<service>.<instance>), decides which instances
// are alive, suspect, dead or left, classifies each one's network path and
// predicts which are about to fail, and publishes the view to KV MEMBERS
// and every change to stream DETECTOR.
//
// # Detection
//
// Per instance, phi accrual over a window of inter-arrival times (phi.go),
// with Akka's formulation: the mean is shifted by a tolerated pause and the
// standard deviation has a floor. Both are relative to the instance's
// heartbeat interval. The pause widens with a worse network quality class
// (quality.go: jitter, loss from sequence gaps, $SRV.PING round trips) and
// with the longest silence the instance recently recovered from, so an
// instance that stalls for GC is not declared dead for doing it again,
// while a quiet, regular one is declared dead in well under a second at
// 100 ms heartbeats (membership.go, schedule).
//
// # Prediction
//
// Online logistic regression (predictor.go) over the level and trend of
// each heartbeat's load figures, trained from the detector's own verdicts:
// the heartbeats before a confirmed death are positive examples, those
// followed by a full horizon of heartbeats negative ones.
//
// # Horizontal scale: one active detector, chosen by a lease
//
// Every detector instance receives every heartbeat and keeps the whole
// table warm, but only the holder of the LEASES key "detector" publishes
// transitions and writes MEMBERS (lease.go). The lease is a
// compare-and-set on the key's revision, renewed every 250 ms; a standby
// takes over once it has seen no renewal for the 1 s TTL, so a crashed
// active one is replaced within 1.5 s, and a stopped one at once (it
// releases the lease). On taking over, the new active detector publishes
// the difference between its table and what MEMBERS holds, which it has
// been following, so no change is lost or repeated; transition messages
// carry ids so JetStream drops duplicates from any brief overlap.
//
// We chose this over partitioning instances across detectors because one
// detector handles 10,000 instances at one heartbeat a second with a few
// percent of a core (see the scale measurement), so partitioning would buy
// capacity nobody needs at the price of rebalancing, split views and a
// handover per partition. Standbys cost only the decoding of heartbeats.
// Past about 100,000 instances, partition by hashing <service>.<instance>
// onto lease keys detector.0..N-1.
package detector
