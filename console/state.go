package console

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/platform/platform/internal/jsapi"
	"github.com/platform/platform/services/txn"
	"github.com/platform/platform/streams"
)

const (
	// maxKeyBytes bounds a key, a prefix or an after.
	maxKeyBytes = 1024
	// maxListKeys bounds the key names a prefix listing reads.
	maxListKeys = 100000
	// maxHistory bounds the revisions shown for one key.
	maxHistory = 64
)

// revisionView is one revision of a key.
type revisionView struct {
	Revision  uint64    `json:"revision"`
	Created   time.Time `json:"created"`
	Operation string    `json:"operation"`
	Size      int       `json:"size"`
}

// keyView is GET /state?key=.
type keyView struct {
	Key       string         `json:"key"`
	Revision  uint64         `json:"revision"`
	Created   time.Time      `json:"created"`
	Operation string         `json:"operation"`
	Encoding  string         `json:"encoding"`
	Value     string         `json:"value"`
	Truncated bool           `json:"truncated"`
	History   []revisionView `json:"history"`
}

// entryView is one key of a prefix listing.
type entryView struct {
	Key       string    `json:"key"`
	Revision  uint64    `json:"revision"`
	Created   time.Time `json:"created"`
	Operation string    `json:"operation"`
	Size      int       `json:"size"`
	Preview   string    `json:"preview"`
}

// keysPage is GET /state?prefix=.
type keysPage struct {
	Entries []entryView `json:"entries"`
	Next    *struct {
		After string `json:"after"`
	} `json:"next,omitempty"`
	Truncated bool `json:"truncated"`
}

func (c *Console) state(ctx context.Context, r *http.Request, _ *session) (any, error) {
	q := r.URL.Query()
	key, hasKey := q.Get("key"), q.Has("key")
	prefix, hasPrefix := q.Get("prefix"), q.Has("prefix")
	after := q.Get("after")
	for name, v := range map[string]string{"key": key, "prefix": prefix, "after": after} {
		if len(v) > maxKeyBytes {
			return nil, badRequest("%s: %d bytes, at most %d", name, len(v), maxKeyBytes)
		}
	}
	limit, err := intParam(r, "limit", 100, 1, maxPage)
	if err != nil {
		return nil, err
	}
	if hasKey == hasPrefix {
		return nil, badRequest("give one of key and prefix")
	}
	kv, err := c.platform().JS.KeyValue(ctx, streams.BucketState)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, unavailable("KV %s does not exist yet", streams.BucketState)
	}
	if err != nil {
		return nil, err
	}
	if hasKey {
		if err := txn.ValidateKey(key); err != nil {
			return nil, badRequest("key: %v", err)
		}
		return c.key(ctx, kv, key)
	}
	if prefix != "" {
		if err := txn.ValidateKey(strings.TrimSuffix(prefix, ".")); err != nil {
			return nil, badRequest("prefix: %v", err)
		}
	}
	return c.keys(ctx, kv, prefix, after, int(limit))
}

func (c *Console) key(ctx context.Context, kv jetstream.KeyValue, key string) (any, error) {
	hist, err := kv.History(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, notFound("no key %q in %s", key, streams.BucketState)
	}
	if err != nil {
		return nil, err
	}
	last := hist[len(hist)-1]
	v := keyView{Key: key, Revision: last.Revision(), Created: last.Created().UTC(), Operation: last.Operation().String(), History: []revisionView{}}
	data := last.Value()
	if len(data) > maxBody {
		data, v.Truncated = data[:maxBody], true
	}
	v.Encoding, v.Value = render(data, v.Truncated)
	for _, e := range hist[max(0, len(hist)-maxHistory):] {
		v.History = append(v.History, revisionView{Revision: e.Revision(), Created: e.Created().UTC(), Operation: e.Operation().String(), Size: len(e.Value())})
	}
	return v, nil
}

// keys lists the keys under prefix after after: their names from a
// server-side filtered, headers-only listing, values only for the page.
func (c *Console) keys(ctx context.Context, kv jetstream.KeyValue, prefix, after string, limit int) (any, error) {
	filter := ">"
	if i := strings.LastIndexByte(prefix, '.'); i >= 0 {
		filter = prefix[:i+1] + ">"
	}
	lister, err := kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, err
	}
	page := keysPage{Entries: []entryView{}}
	var names []string
	for k := range lister.Keys() {
		if len(names) >= maxListKeys {
			page.Truncated = true
			break
		}
		if strings.HasPrefix(k, prefix) && k > after && txn.ValidateKey(k) == nil {
			names = append(names, k)
		}
	}
	_ = lister.Stop()
	slices.Sort(names)
	if len(names) > limit {
		names = names[:limit]
		page.Next = &struct {
			After string `json:"after"`
		}{names[limit-1]}
	}
	if len(names) == 0 {
		return page, nil
	}
	subjects := make([]string, len(names))
	for i, k := range names {
		subjects[i] = streams.KVSubject(streams.BucketState, k)
	}
	p := c.platform()
	err = jsapi.GetBatch(ctx, p.Conn, streams.KVStream(streams.BucketState), jsapi.BatchRequest{MultiLast: subjects, Batch: len(subjects), MaxBytes: batchBytes}, func(m *jsapi.Msg) bool {
		k, _ := streams.KVKey(streams.BucketState, m.Subject)
		op := "PUT"
		if o := m.Header.Get("KV-Operation"); o != "" {
			op = o
		}
		e := entryView{Key: k, Revision: m.Seq, Created: m.Time.UTC(), Operation: op, Size: len(m.Data),
			Preview: newEventView(replicatorEvent(m)).Preview}
		page.Entries = append(page.Entries, e)
		return true
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(page.Entries, func(a, b entryView) int { return strings.Compare(a.Key, b.Key) })
	return page, nil
}
