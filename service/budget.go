package service

import (
	"reflect"
	"sync"
)

// MaxDecodeBytes bounds the memory decoding one body may take, estimated
// before decoding from the body's element counts and the target type. A
// body within the size limit can still be costly: 4 MiB of msgpack nils
// decoded as alerts are four million structs, 640 MiB allocated; the same
// in JSON nulls, 330 MiB. The estimate counts every array element at
// twice the largest slice element the target type can hold and every map
// entry at its largest map entry, so it errs high, yet 4 MiB of real
// alerts (small ones: 28,000 in 3.9 MiB of JSON) stay well under it.
const MaxDecodeBytes = 64 << 20

// cost is what one element of a body can cost once decoded into a type.
type cost struct {
	// elem is the largest slice element reachable from the type.
	elem uintptr
	// entry is the largest map entry (key, value and the map's own
	// bookkeeping) reachable from the type.
	entry uintptr
}

// Sizes of what a decoder makes for a value of type any: an interface
// holds an array as []any and a map as map[string]any.
const (
	ifaceSize      = 16
	stringSize     = 16
	mapEntryExtra  = 16 // a Go map's per-entry overhead (tophash, load factor), roughly
	anyEntryLength = stringSize + ifaceSize + mapEntryExtra
)

var costs sync.Map // reflect.Type -> cost

// costOf returns the per-element costs of decoding into a value of t.
func costOf(t reflect.Type) cost {
	if c, ok := costs.Load(t); ok {
		return c.(cost)
	}
	var c cost
	walkCost(t, &c, map[reflect.Type]bool{})
	costs.Store(t, c)
	return c
}

func walkCost(t reflect.Type, c *cost, seen map[reflect.Type]bool) {
	if seen[t] {
		return
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Array:
		walkCost(t.Elem(), c, seen)
	case reflect.Slice:
		// Twice the element: a slice grows by copying (JSON appends;
		// msgpack allocates the announced length, then copies it), and
		// the old and new arrays live together for a while.
		c.elem = max(c.elem, 2*t.Elem().Size())
		walkCost(t.Elem(), c, seen)
	case reflect.Map:
		c.entry = max(c.entry, t.Key().Size()+t.Elem().Size()+mapEntryExtra)
		walkCost(t.Key(), c, seen)
		walkCost(t.Elem(), c, seen)
	case reflect.Struct:
		for i := range t.NumField() {
			walkCost(t.Field(i).Type, c, seen)
		}
	case reflect.Interface:
		c.elem = max(c.elem, 2*ifaceSize)
		c.entry = max(c.entry, anyEntryLength)
	}
}

// checkBudget refuses a body whose elements and entries, decoded into v,
// could take more than MaxDecodeBytes. count returns the body's counts;
// it is called only when the body is large enough for that to matter.
func checkBudget(v any, size int, count func() (elements, entries int)) error {
	if v == nil {
		return nil
	}
	c := costOf(reflect.TypeOf(v))
	worst := max(c.elem, c.entry)
	// Every element takes at least one byte of the body.
	if worst == 0 || uint64(size)*uint64(worst) <= MaxDecodeBytes {
		return nil
	}
	elements, entries := count()
	need := uint64(elements)*uint64(c.elem) + uint64(entries)*uint64(c.entry)
	if need > MaxDecodeBytes {
		return Errorf(CodeTooLarge, "body of %d bytes holds %d array elements and %d map entries: decoding it would take about %d MiB, more than the %d MiB a request may",
			size, elements, entries, need>>20, MaxDecodeBytes>>20)
	}
	return nil
}

// countJSON counts the array elements and object members of a JSON
// document (of a well-formed one; for others the counts are what the
// bytes suggest, and the decoder refuses them anyway).
func countJSON(b []byte) (elements, entries int) {
	var stack []byte // open containers, '[' or '{'
	inString, escaped := false, false
	for i := 0; i < len(b); i++ {
		ch := b[i]
		if inString {
			switch {
			case escaped:
				escaped = false
			case ch == '\\':
				escaped = true
			case ch == '"':
				inString = false
			}
			continue
		}
		switch ch {
		case '"':
			inString = true
		case '[', '{':
			stack = append(stack, ch)
			j := i + 1
			for j < len(b) && (b[j] == ' ' || b[j] == '\t' || b[j] == '\n' || b[j] == '\r') {
				j++
			}
			if j < len(b) && b[j] != ']' && b[j] != '}' {
				if ch == '[' {
					elements++
				} else {
					entries++
				}
			}
		case ']', '}':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case ',':
			if len(stack) > 0 {
				if stack[len(stack)-1] == '[' {
					elements++
				} else {
					entries++
				}
			}
		}
	}
	return elements, entries
}
