package console

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/platform/platform/services/admin"
)

// overviewView is GET /overview: admin.status's nodes and streams, and
// /readyz's verdict with every reason it gives.
type overviewView struct {
	Time           time.Time    `json:"time"`
	Embedded       bool         `json:"embedded"`
	MetaLeader     string       `json:"meta_leader"`
	MetaLeaderNote string       `json:"meta_leader_note"`
	Ready          bool         `json:"ready"`
	Problems       []string     `json:"problems"`
	Nodes          []admin.Node `json:"nodes"`
	Streams        []streamView `json:"streams"`
}

// streamView is admin.Stream with what kind of stream it is.
type streamView struct {
	admin.Stream
	// Kind is "kv" for a KV bucket's stream, else "stream".
	Kind string `json:"kind"`
	// Bucket is the KV bucket's name (kind "kv").
	Bucket string `json:"bucket,omitempty"`
}

func (c *Console) overview(ctx context.Context, _ *http.Request, _ *session) (any, error) {
	p := c.platform()
	// Readiness asks JetStream about every platform stream too: both at
	// once, so the answer takes the longer of the two, not their sum.
	ready := make(chan error, 1)
	go func() { ready <- c.opts.Ready(ctx) }()
	st, err := admin.Gather(ctx, p.Conn, p.JS, p.Cluster, false)
	problems := readyProblems(<-ready)
	if err != nil {
		return nil, err
	}
	v := overviewView{
		Time: time.Now().UTC(), Embedded: st.Embedded, MetaLeader: st.MetaLeader, MetaLeaderNote: st.MetaLeaderNote,
		Nodes: st.Nodes, Streams: make([]streamView, len(st.Streams)), Problems: problems,
	}
	v.Ready = len(v.Problems) == 0
	for i, s := range st.Streams {
		v.Streams[i] = streamView{Stream: s, Kind: "stream"}
		if b, ok := strings.CutPrefix(s.Name, "KV_"); ok {
			v.Streams[i].Kind, v.Streams[i].Bucket = "kv", b
		}
	}
	return v, nil
}

// readyProblems splits /readyz's error into its reasons.
func readyProblems(err error) []string {
	out := []string{}
	if err == nil {
		return out
	}
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			out = append(out, readyProblems(e)...)
		}
		return out
	}
	return append(out, err.Error())
}

// servicesView is GET /services.
type servicesView struct {
	Services []admin.Instance `json:"services"`
}

func (c *Console) services(ctx context.Context, _ *http.Request, _ *session) (any, error) {
	p := c.platform()
	st, err := admin.Gather(ctx, p.Conn, p.JS, nil, true)
	if err != nil {
		return nil, err
	}
	return servicesView{Services: st.Services}, nil
}
