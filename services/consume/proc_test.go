package consume

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/platform/platform/cluster/clustertest"
	"github.com/platform/platform/services/replicator"
	"github.com/platform/platform/services/txn"
)

// Handlers a member process can run (memberSpec.Mode).
const (
	// modeAtLeastOnce commits each event's counter in a transaction of its
	// own, before and apart from the position: what a handler does when
	// its effect cannot join the position's batch (the classic "process,
	// then commit the offset"). A member that dies or is fenced between
	// the two applies the events again.
	modeAtLeastOnce = "at-least-once"
	// modeGate makes the handler, at its first event, print gateReached
	// and wait for a line on stdin: the test pauses the process there,
	// inside the transaction, with its position read and not committed.
	modeGate = "gate"
)

// gateReached is what a modeGate member prints when its handler waits.
const gateReached = "gate reached"

// memberReport is what a member process prints when it stops on SIGTERM.
type memberReport struct {
	Applied int64 `json:"applied"`
	Fenced  int64 `json:"fenced"`
}

// handler returns the Handler of the spec's mode.
func (s memberSpec) handler(ctx context.Context, store *txn.Store) Handler {
	switch s.Mode {
	case modeAtLeastOnce:
		return func(_ *txn.Tx, ev replicator.Event) error {
			return txn.Run(ctx, store, func(tx *txn.Tx) error { return count(tx, ev) })
		}
	case modeGate:
		var once sync.Once
		return func(tx *txn.Tx, ev replicator.Event) error {
			once.Do(func() {
				fmt.Println(gateReached)
				_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
			})
			return count(tx, ev)
		}
	}
	return count
}

// proc is a member running in a process of its own, its output kept.
type proc struct {
	id    string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   clustertest.Buffer // stdout: the gate and the final report
	logs  clustertest.Buffer // stderr: the member's logs when spec.Log
	done  chan struct{}      // closed when the process has exited
}

// spawn starts a member process for spec (its URLs filled in here); the
// test's cleanup kills it if it still runs.
func (e *groupEnv) spawn(t *testing.T, spec memberSpec) *proc {
	t.Helper()
	spec.URLs = strings.Join(e.c.ClientURLs(), ",")
	b, err := json.Marshal(spec)
	require.NoError(t, err)
	p := &proc{id: spec.ID, done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), memberEnv+"="+string(b))
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.logs
	dieWithTest(p.cmd)
	p.stdin, err = p.cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// signal sends sig to the process.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig), "signal %s to member %s", sig, p.id)
}

// kill ends the process with SIGKILL and waits until it is gone.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	p.signal(t, syscall.SIGKILL)
	<-p.done
}

// terminate stops the member with SIGTERM (it leaves the group) and
// returns its report.
func (p *proc) terminate(t *testing.T) memberReport {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // if it was paused
	p.signal(t, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("member %s did not stop on SIGTERM; its logs:\n%s", p.id, tail(p.logs.String(), 40))
	}
	var r memberReport
	lines := strings.Split(strings.TrimSpace(p.out.String()), "\n")
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &r), "member %s's report: %q", p.id, p.out.String())
	return r
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
