// Package txn gives serializable multi-key transactions on a NATS KV bucket
// (STATE): optimistic reads that record each key's revision, buffered
// writes, and a commit that is one JetStream atomic batch in which every
// key carries the revision it was read at, so either everything is written
// or, when any key moved, nothing is. Run retries conflicting transactions
// with backoff; Scheduler commits concurrent requesters' transactions by
// dependency level; Service is the platform-txn micro service (txn.get,
// txn.commit).
package txn
