// Package balancer spreads requests over the instances of platform
// services and RAFT leaders over the nodes of the cluster.
//
// It computes a weight per micro service instance from its heartbeats,
// its $SRV.STATS and its MEMBERS record (Table, Policy) and publishes it
// to KV WEIGHTS through one lease holder; routes requests to
// instance-addressed subjects with a Router (weighted power of two choices
// over an EWMA latency × (in-flight+1)); forwards route.<subject> for
// any client; and evens out stream and consumer leaders.
package balancer
