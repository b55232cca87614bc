package txn

import (
	"reflect"
	"strings"
	"testing"

	"github.com/platform/platform/service"
	"github.com/platform/platform/service/servicetest"
	"github.com/platform/platform/streams"
)

// FuzzCommitRequest reads arbitrary txn.commit bodies as handleCommit
// and Store.Commit do, up to the batch: every refusal is a bad_request
// or too_large, and an accepted body plans at most the store's keys, each
// a valid key outside the reserved prefixes, once, in key order, writing
// exactly the values sent; sent again as a CommitRequest it plans the
// same batch. `go test -fuzz FuzzCommitRequest` explores.
func FuzzCommitRequest(f *testing.F) {
	for _, s := range []string{
		`{"reads":{"acct.alice":3,"acct.bob":0},"writes":{"acct.alice":"90","acct.bob":"10"},"deletes":[]}`,
		`{"reads":{"gone":7},"deletes":["gone"]}`,
		`{"reads":{"a":1,"b":2}}`, `{"deletes":["a","a"]}`, `{"writes":{"a":""}}`,
		`{"writes":`, `{"writes":{"a":"1"},"bogus":1}`, `{"reads":{},"writes":{},"deletes":[]}`, `{"reads":{"a":-1},"writes":{"a":"1"}}`,
		`{"writes":{"a b":"1"}}`, `{"writes":{"a.>":"1"}}`, `{"writes":{"_txn.marker":"1"}}`, `{"writes":{"_consume.g.pos.0":"{}"}}`,
		`{"writes":{"a":"1"},"deletes":["_consume.g.assign"]}`, `{"writes":{"a":null}}`, `{"writes":{"a":"1","b":null}}`,
		`{"writes":{"a":"1"},"deletes":["a"]}`, `{"writes":{"a":"` + strings.Repeat("x", 65) + `"}}`, `null`, ``,
	} {
		f.Add([]byte(s), false)
	}
	good, _ := service.Msgpack.Encode(CommitRequest{Reads: map[string]uint64{"a": 1}, Writes: map[string]string{"a": "v", "b": "w"}, Deletes: []string{"c"}})
	f.Add(good, true)
	store := &Store{maxKeys: 8, maxValueBytes: 64}
	f.Fuzz(func(t *testing.T, body []byte, asMsgpack bool) {
		c := service.JSON
		if asMsgpack {
			c = service.Msgpack
		}
		var req commitBody
		if err := c.Decode(body, &req); err != nil {
			servicetest.RequireCode(t, "decode", err, service.CodeBadRequest, service.CodeTooLarge)
			return
		}
		commit, err := commitOf(req)
		if err != nil {
			servicetest.RequireCode(t, "commitOf", err, service.CodeBadRequest)
			return
		}
		ops, err := store.plan(commit)
		if err != nil {
			servicetest.RequireCode(t, "plan", serviceError(err), service.CodeBadRequest, service.CodeTooLarge)
			return
		}
		if len(ops) == 0 || len(ops) > store.maxKeys {
			t.Fatalf("%d ops planned, want 1 to %d", len(ops), store.maxKeys)
		}
		for i, o := range ops {
			if err := ValidateKey(o.key); err != nil {
				t.Fatalf("planned an invalid key: %v", err)
			}
			if i > 0 && ops[i-1].key >= o.key {
				t.Fatalf("ops not in strict key order: %q then %q", ops[i-1].key, o.key)
			}
			if o.kind != opCheck && strings.HasPrefix(o.key, streams.ConsumeKeyPrefix) {
				t.Fatalf("planned a change of %q, under the consumer groups' prefix", o.key)
			}
			if o.kind == opPut && (req.Writes[o.key] == nil || string(o.value) != *req.Writes[o.key] || len(o.value) > store.maxValueBytes) {
				t.Fatalf("write of %q planned as %q", o.key, o.value)
			}
			if rev, read := req.Reads[o.key]; read != o.hasExpect || rev != o.expect {
				t.Fatalf("%q planned expecting %d (%v), read at %d (%v)", o.key, o.expect, o.hasExpect, rev, read)
			}
		}
		again := CommitRequest{Reads: commit.Reads, Deletes: commit.Deletes}
		if commit.Writes != nil {
			again.Writes = map[string]string{}
			for k, v := range commit.Writes {
				again.Writes[k] = string(v)
			}
		}
		b, err := c.Encode(again)
		if err != nil {
			t.Fatalf("encode %+v: %v", again, err)
		}
		var req2 commitBody
		if err := c.Decode(b, &req2); err != nil {
			t.Fatalf("re-sent commit %q does not decode: %v", b, err)
		}
		commit2, err := commitOf(req2)
		if err != nil {
			t.Fatalf("re-sent commit %q refused: %v", b, err)
		}
		ops2, err := store.plan(commit2)
		if err != nil || !reflect.DeepEqual(ops2, ops) {
			t.Fatalf("re-sent commit %q plans %+v (%v), want %+v", b, ops2, err, ops)
		}
	})
}
