package txn

import (
	"fmt"
	"strings"
)

// ReservedPrefix is the key prefix the txn service keeps for itself inside
// the bucket. User keys may not start with it (nor be "_txn"). The only key
// under it is MarkerKey.
const ReservedPrefix = "_txn."

// MarkerKey is the key read-validation markers are written to. A marker is
// an empty message with the KV-Operation DEL header (so `nats kv ls` and
// `nats kv get` treat it as a deleted key) and a one-second message TTL; it
// carries Nats-Expected-Last-Subject-Sequence for a key the transaction only
// read, with Nats-Expected-Last-Subject-Sequence-Subject naming that key.
const MarkerKey = ReservedPrefix + "marker"

// ValidateKey reports whether key is a valid KV key that users may write:
// letters, digits and - / _ = . only, no empty token (no leading, trailing
// or double dot) and not under ReservedPrefix. The error wraps
// ErrInvalidKey or ErrReservedKey.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if key[0] == '.' || key[len(key)-1] == '.' || strings.Contains(key, "..") {
		return fmt.Errorf("%w: %q has an empty token (leading, trailing or double dot)", ErrInvalidKey, key)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '/', c == '_', c == '=', c == '.':
		default:
			return fmt.Errorf("%w: %q contains %q (allowed: letters, digits and - / _ = .)", ErrInvalidKey, key, c)
		}
	}
	if key == strings.TrimSuffix(ReservedPrefix, ".") || strings.HasPrefix(key, ReservedPrefix) {
		return fmt.Errorf("%w: %q is under the prefix %q the txn service reserves", ErrReservedKey, key, ReservedPrefix)
	}
	return nil
}
