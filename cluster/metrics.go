package cluster

import (
	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the embedded servers' key figures to Prometheus at
// scrape time, labelled by node: connections, messages and bytes in and
// out, slow consumers, JetStream storage, streams, consumers, and how many
// stream and consumer RAFT groups each node leads.
type Collector struct {
	c *Cluster

	up, conns, inMsgs, outMsgs, inBytes, outBytes, slow *prometheus.Desc
	jsMem, jsStore, streams, consumers                  *prometheus.Desc
	streamLeaders, consumerLeaders, metaLeader          *prometheus.Desc
	// Per stream, reported by the stream's leader only.
	streamMsgs, streamBytes, streamLeader, replicaLag *prometheus.Desc
}

// NewCollector returns a collector over c's nodes.
func NewCollector(c *Cluster) *Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("platform_nats_"+name, help, []string{"node"}, nil)
	}
	return &Collector{
		c:               c,
		up:              d("up", "1 when the embedded node is running."),
		conns:           d("connections", "Current client connections."),
		inMsgs:          d("in_msgs_total", "Messages received by the node."),
		outMsgs:         d("out_msgs_total", "Messages sent by the node."),
		inBytes:         d("in_bytes_total", "Bytes received by the node."),
		outBytes:        d("out_bytes_total", "Bytes sent by the node."),
		slow:            d("slow_consumers_total", "Slow consumers detected by the node."),
		jsMem:           d("jetstream_memory_bytes", "JetStream memory storage used."),
		jsStore:         d("jetstream_storage_bytes", "JetStream file storage used."),
		streams:         d("jetstream_streams", "Streams with a replica on the node."),
		consumers:       d("jetstream_consumers", "Consumers with a replica on the node."),
		streamLeaders:   d("jetstream_stream_leaders", "Stream RAFT groups the node leads."),
		consumerLeaders: d("jetstream_consumer_leaders", "Consumer RAFT groups the node leads."),
		metaLeader:      d("jetstream_meta_leader", "1 when the node is the JetStream meta leader."),
		streamMsgs: prometheus.NewDesc("platform_nats_stream_messages",
			"Messages stored in the stream, as its leader reports.", []string{"stream"}, nil),
		streamBytes: prometheus.NewDesc("platform_nats_stream_bytes",
			"Bytes stored in the stream, as its leader reports.", []string{"stream"}, nil),
		streamLeader: prometheus.NewDesc("platform_nats_stream_leader",
			"1 for the node that leads the stream.", []string{"stream", "node"}, nil),
		replicaLag: prometheus.NewDesc("platform_nats_stream_replica_lag_ops",
			"RAFT operations a follower replica is behind the stream's leader.", []string{"stream", "replica"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (m *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.up, m.conns, m.inMsgs, m.outMsgs, m.inBytes, m.outBytes, m.slow,
		m.jsMem, m.jsStore, m.streams, m.consumers, m.streamLeaders, m.consumerLeaders, m.metaLeader,
		m.streamMsgs, m.streamBytes, m.streamLeader, m.replicaLag} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, node string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, node)
	}
	counter := func(d *prometheus.Desc, v float64, node string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, node)
	}
	for _, n := range m.c.Nodes() {
		s := n.Server()
		name := n.Name()
		if s == nil {
			gauge(m.up, 0, name)
			continue
		}
		gauge(m.up, 1, name)
		if v, err := s.Varz(nil); err == nil {
			gauge(m.conns, float64(v.Connections), name)
			counter(m.inMsgs, float64(v.InMsgs), name)
			counter(m.outMsgs, float64(v.OutMsgs), name)
			counter(m.inBytes, float64(v.InBytes), name)
			counter(m.outBytes, float64(v.OutBytes), name)
			counter(m.slow, float64(v.SlowConsumers), name)
		}
		if js, err := s.Jsz(&server.JSzOptions{RaftGroups: true}); err == nil && !js.Disabled {
			gauge(m.jsMem, float64(js.Memory), name)
			gauge(m.jsStore, float64(js.Store), name)
			gauge(m.streams, float64(js.Streams), name)
			gauge(m.consumers, float64(js.Consumers), name)
			gauge(m.streamLeaders, float64(js.StreamsLeader), name)
			gauge(m.consumerLeaders, float64(js.ConsumersLeader), name)
		}
		leader := 0.0
		if s.JetStreamIsLeader() {
			leader = 1
		}
		gauge(m.metaLeader, leader, name)
		m.collectStreams(ch, s, name)
	}
}

// collectStreams reports the streams node s leads: their size, their
// leader and how far each follower is behind.
func (m *Collector) collectStreams(ch chan<- prometheus.Metric, s *server.Server, node string) {
	js, err := s.Jsz(&server.JSzOptions{Accounts: true, Streams: true, StreamLeaderOnly: true})
	if err != nil || js.Disabled {
		return
	}
	for _, acc := range js.AccountDetails {
		for _, st := range acc.Streams {
			if st.Cluster != nil && st.Cluster.Leader != "" && st.Cluster.Leader != node {
				continue
			}
			ch <- prometheus.MustNewConstMetric(m.streamMsgs, prometheus.GaugeValue, float64(st.State.Msgs), st.Name)
			ch <- prometheus.MustNewConstMetric(m.streamBytes, prometheus.GaugeValue, float64(st.State.Bytes), st.Name)
			ch <- prometheus.MustNewConstMetric(m.streamLeader, prometheus.GaugeValue, 1, st.Name, node)
			if st.Cluster == nil {
				continue
			}
			for _, r := range st.Cluster.Replicas {
				ch <- prometheus.MustNewConstMetric(m.replicaLag, prometheus.GaugeValue, float64(r.Lag), st.Name, r.Name)
			}
		}
	}
}
