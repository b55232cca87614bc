// Package detector is the platform's failure detector service: it listens
// to every instance's heartbeats (hb.<service>.<instance>), feeds them to
// the detection core (package accrual: phi accrual, network quality,
// failure prediction, the membership table), probes round trips, and
// publishes the view to KV MEMBERS and every change to stream DETECTOR,
// as the records of package membership.
//
// # Horizontal scale: one active detector, chosen by a lease
//
// Every detector instance receives every heartbeat and keeps the whole
// table warm, but only the holder of the LEASES key "detector" publishes
// transitions and writes MEMBERS (package lease). The lease is a
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
// percent of a core (see the scale measurement in detectorbench), so
// partitioning would buy capacity nobody needs at the price of
// rebalancing, split views and a handover per partition. Standbys cost
// only the decoding of heartbeats. Past about 100,000 instances, partition
// by hashing <service>.<instance> onto lease keys detector.0..N-1.
package detector
