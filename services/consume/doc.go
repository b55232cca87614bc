// Package consume runs partitioned consumer groups over stream EVENTS with
// exactly-once processing: each member of a group owns a share of the
// group's partitions, fenced by an epoch, and applies each event of its
// partitions through a txn transaction that commits the handler's STATE
// writes and the partition's new position in one atomic batch.
package consume
