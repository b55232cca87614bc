package replicator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
)

// TailOptions configure Tail.
type TailOptions struct {
	// From is the first position to print; zero prints only new events.
	From Position
	// All prints from the start of the stream.
	All bool
	// Count stops after that many events (0: until ctx ends).
	Count int
	// Headers prints each event's own headers too.
	Headers bool
}

// Tail prints the events stored under subject (wildcards allowed), one per
// line as "<seq>[:<index>] <subject> <payload>", decoding envelopes and
// compression, until ctx ends or o.Count events were printed.
func Tail(ctx context.Context, js jetstream.JetStream, subject string, w io.Writer, o TailOptions) error {
	opts := []ReaderOption{WithFilter(subject)}
	switch {
	case o.From.Seq > 0:
		opts = append(opts, WithStartAt(o.From))
	case !o.All:
		opts = append(opts, WithNewOnly())
	}
	r, err := NewReader(ctx, js, opts...)
	if err != nil {
		return fmt.Errorf("tail %s: %w", subject, err)
	}
	defer r.Close()
	for n := 0; o.Count == 0 || n < o.Count; n++ {
		ev, err := r.Next(ctx)
		switch {
		case errors.Is(err, ErrMalformed):
			fmt.Fprintf(w, "# %v\n", err)
			continue
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			return fmt.Errorf("tail %s: %w", subject, err)
		}
		if _, err := io.WriteString(w, FormatEvent(ev, o.Headers)+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// FormatEvent renders an event on one line: position, subject, optional
// headers, and the payload as text when it is printable UTF-8, else quoted.
func FormatEvent(ev Event, headers bool) string {
	var b strings.Builder
	pos := fmt.Sprint(ev.Pos.Seq)
	if ev.Pos.Count > 1 {
		pos = fmt.Sprintf("%d:%d", ev.Pos.Seq, ev.Pos.Index)
	}
	b.WriteString(pos)
	b.WriteByte(' ')
	b.WriteString(ev.Subject)
	if headers && len(ev.Header) > 0 {
		keys := make([]string, 0, len(ev.Header))
		for k := range ev.Header {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%s", k, strings.Join(ev.Header[k], ","))
		}
	}
	b.WriteByte(' ')
	if utf8.Valid(ev.Data) && !strings.ContainsAny(string(ev.Data), "\x00\r\n") {
		b.Write(ev.Data)
	} else {
		fmt.Fprintf(&b, "%q", ev.Data)
	}
	return b.String()
}
