package streams

// Headers of the platform's wire format, one spelling each. The NATS and
// JetStream headers that nats.go's jetstream package exports
// (jetstream.MsgIDHeader, jetstream.MsgTTLHeader, the Expected ones) are
// used from there; these are the rest.
const (
	// ConsistencyHeader asks the ingest service for a level: async, quorum
	// (default) or all.
	ConsistencyHeader = "Platform-Consistency"
	// ClientHeader names the producer for per-client rate limiting. Without
	// it a request's client is the inbox prefix of its reply subject (one
	// per NATS connection); fire-and-forget events without it share the
	// client "anonymous".
	ClientHeader = "Platform-Client"
	// KeyHeader is an event's partition key for consumer groups; without
	// it an event's key is its topic.
	KeyHeader = "Platform-Key"
	// ReplayGroupHeader marks an event put back into EVENTS from DEAD for
	// one consumer group: that group consumes it again, every other group
	// skips it.
	ReplayGroupHeader = "Platform-Replay-Group"
	// DeadReasonHeader, DeadAttemptsHeader, DeadGroupHeader,
	// DeadSubjectHeader and DeadPositionHeader describe a dead letter: why
	// its group gave up, after how many deliveries, which group, and the
	// event's original subject and position (seq or seq:index) in EVENTS.
	DeadReasonHeader   = "Platform-Dead-Reason"
	DeadAttemptsHeader = "Platform-Dead-Attempts"
	DeadGroupHeader    = "Platform-Dead-Group"
	DeadSubjectHeader  = "Platform-Dead-Subject"
	DeadPositionHeader = "Platform-Dead-Position"
	// TimeoutHeader lets an ingest requester shorten the wait for its
	// answer (a Go duration such as "500ms"), never beyond the service's
	// request timeout.
	TimeoutHeader = "Platform-Timeout"

	// EnvelopeHeader (the format version) and EnvelopeCountHeader (the
	// number of events) mark a stream message that holds an envelope of
	// events; see the replicator's envelope.go for the format.
	EnvelopeHeader      = "Platform-Envelope"
	EnvelopeCountHeader = "Platform-Envelope-Count"
	// EnvelopeKeysHeader summarises the partition keys of an envelope's
	// events, so a consumer group member can skip an envelope without
	// decoding it; see the replicator's keys.go for the format.
	EnvelopeKeysHeader = "Platform-Envelope-Keys"

	// ContentEncodingHeader names the codec a stream message's payload is
	// compressed with: "s2" (S2 block format), "zstd" or "gzip". A message
	// without it is stored as given.
	ContentEncodingHeader = "Content-Encoding"

	// TxnIDHeader names the transaction that wrote a value. Every value a
	// commit writes carries it, so a commit whose acknowledgement was lost
	// can find out whether it was applied.
	TxnIDHeader = "Platform-Txn-Id"

	// KVOperationHeader marks a KV delete (KVOperationDelete) or purge
	// (KVOperationPurge), as nats.go's KeyValue writes them; nats.go keeps
	// these names unexported.
	KVOperationHeader = "KV-Operation"
	KVOperationDelete = "DEL"
	KVOperationPurge  = "PURGE"

	// BatchIDHeader, BatchSequenceHeader and BatchCommitHeader make
	// messages one atomic batch (JetStream 2.12's atomic batch publish,
	// ADR-50), which nats.go v1.55 does not name.
	BatchIDHeader       = "Nats-Batch-Id"
	BatchSequenceHeader = "Nats-Batch-Sequence"
	BatchCommitHeader   = "Nats-Batch-Commit"
)
