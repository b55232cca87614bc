package txn

import (
	"context"
	"fmt"
	"maps"
)

// Tx is one attempt of a transaction, handed to the function given to Run.
// Reads go to the stream leader and record each key's revision (absent
// keys too); writes and deletes are buffered until commit; reads see the
// transaction's own writes. A Tx is not safe for concurrent use and must
// not be kept after the function returns.
//
// Reads are not a snapshot: a function may observe keys from different
// moments, in which case its commit fails with ErrConflict and Run calls it
// again. It should therefore have no side effects besides the Tx.
type Tx struct {
	// ctx is the attempt's context: a Tx lives exactly as long as one call
	// of the function, like the context of an http.Request.
	ctx    context.Context
	store  *Store
	reads  map[string]Entry
	writes map[string][]byte
	dels   map[string]bool
	err    error
}

func newTx(ctx context.Context, s *Store) *Tx {
	return &Tx{ctx: ctx, store: s, reads: map[string]Entry{}, writes: map[string][]byte{}, dels: map[string]bool{}}
}

// Context returns the context of the attempt.
func (tx *Tx) Context() context.Context { return tx.ctx }

// Get returns key's value and the revision it was read at. A key absent
// from the bucket is not an error: Found is false. Reading a key twice
// returns the first read; reading a key the transaction wrote returns the
// written value.
func (tx *Tx) Get(key string) (Entry, error) {
	if v, ok := tx.writes[key]; ok {
		return Entry{Key: key, Value: v, Revision: tx.reads[key].Revision, Found: true}, nil
	}
	if tx.dels[key] {
		return Entry{Key: key, Revision: tx.reads[key].Revision}, nil
	}
	if e, ok := tx.reads[key]; ok {
		return e, nil
	}
	e, err := tx.store.Get(tx.ctx, key)
	if err != nil {
		return Entry{}, err
	}
	tx.reads[key] = e
	return e, nil
}

// GetAll reads several keys at once (concurrently, each through the stream
// leader) with Get's semantics.
func (tx *Tx) GetAll(keys ...string) (map[string]Entry, error) {
	out := make(map[string]Entry, len(keys))
	var missing []string
	for _, k := range keys {
		_, w := tx.writes[k]
		_, r := tx.reads[k]
		if w || r || tx.dels[k] {
			e, _ := tx.Get(k)
			out[k] = e
		} else {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		got, err := tx.store.GetMany(tx.ctx, missing)
		if err != nil {
			return nil, err
		}
		for k, e := range got {
			tx.reads[k] = e
			out[k] = e
		}
	}
	return out, nil
}

// Put buffers a write of value to key. An invalid key or an oversize value
// is returned here and also fails the commit.
func (tx *Tx) Put(key string, value []byte) error {
	if err := tx.check(key, len(value)); err != nil {
		return err
	}
	delete(tx.dels, key)
	tx.writes[key] = value
	return nil
}

// Delete buffers a delete of key (a KV delete marker).
func (tx *Tx) Delete(key string) error {
	if err := tx.check(key, 0); err != nil {
		return err
	}
	delete(tx.writes, key)
	tx.dels[key] = true
	return nil
}

func (tx *Tx) check(key string, size int) error {
	err := ValidateKey(key)
	if err == nil && size > tx.store.maxValueBytes {
		err = fmt.Errorf("%w: %q is %d bytes, the limit is %d", ErrValueTooLarge, key, size, tx.store.maxValueBytes)
	}
	if err != nil && tx.err == nil {
		tx.err = err
	}
	return err
}

// commit returns what the attempt read and wrote.
func (tx *Tx) commit() Commit {
	c := Commit{Reads: make(map[string]uint64, len(tx.reads)), Writes: maps.Clone(tx.writes)}
	for k, e := range tx.reads {
		c.Reads[k] = e.Revision
	}
	for k := range tx.dels {
		c.Deletes = append(c.Deletes, k)
	}
	return c
}
