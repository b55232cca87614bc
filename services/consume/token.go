package consume

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Errors of settling a delivery by its token. Nothing is settled when
// one is returned.
var (
	// ErrBadToken means the token is not one Next hands out.
	ErrBadToken = errors.New("consume: malformed token")
	// ErrWrongGroup means the token was handed out by another group.
	ErrWrongGroup = errors.New("consume: token of another group")
	// ErrOtherMember means another member of the group handed the event
	// out: settle it there (the consume service forwards it).
	ErrOtherMember = errors.New("consume: token handed out by another member")
	// ErrStale means this member no longer owns the event's partition
	// under the token's epoch: it was reassigned, so the event is (or
	// will be) handed out again by its new owner.
	ErrStale = errors.New("consume: token of a partition this member no longer owns")
	// ErrSettled means the event was settled already (acknowledged,
	// terminated or sent to DEAD): a nak, in-progress or term comes too
	// late. An Ack of a settled event succeeds.
	ErrSettled = errors.New("consume: event already settled")
)

// Token identifies one delivered event: the group, the member that
// handed it out, the partition and the epoch under which that member
// owned it, and the event's position in EVENTS. Its String is the
// opaque token of a Delivery.
type Token struct {
	Group     string
	Member    string
	Partition int
	Epoch     uint64
	Seq       uint64
	Index     int
}

// tokenVersion starts every token, so its format can change.
const tokenVersion = "1"

// String encodes the token (URL-safe base64, no padding).
func (t Token) String() string {
	s := strings.Join([]string{tokenVersion, t.Group, t.Member, strconv.Itoa(t.Partition),
		strconv.FormatUint(t.Epoch, 10), strconv.FormatUint(t.Seq, 10), strconv.Itoa(t.Index)}, ".")
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

// ParseToken decodes a token; a string that is not one, spelled as
// Token.String spells it, is ErrBadToken.
func ParseToken(s string) (Token, error) {
	bad := func(why string) (Token, error) { return Token{}, fmt.Errorf("%w: %s", ErrBadToken, why) }
	if len(s) == 0 || len(s) > 400 {
		return bad("empty or too long")
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return bad("not base64url")
	}
	f := strings.Split(string(b), ".")
	if len(f) != 7 || f[0] != tokenVersion {
		return bad("unknown format")
	}
	var t Token
	t.Group, t.Member = f[1], f[2]
	if !validName(t.Group) || !validName(t.Member) {
		return bad("bad group or member")
	}
	p, err1 := strconv.Atoi(f[3])
	ep, err2 := strconv.ParseUint(f[4], 10, 64)
	seq, err3 := strconv.ParseUint(f[5], 10, 64)
	idx, err4 := strconv.Atoi(f[6])
	if err := errors.Join(err1, err2, err3, err4); err != nil || p < 0 || p > 4096 || seq == 0 || idx < 0 {
		return bad("bad numbers")
	}
	t.Partition, t.Epoch, t.Seq, t.Index = p, ep, seq, idx
	// A token has one spelling, the one String gives: numbers with a
	// sign or leading zeros, or base64 with stray bits, were not handed
	// out by any member.
	if t.String() != s {
		return bad("not as handed out")
	}
	return t, nil
}

func (t Token) at() cursor { return cursor{t.Seq, t.Index} }
