package txn

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidateKey(t *testing.T) {
	tests := []struct {
		name string
		key  string
		want error
	}{
		{"simple", "acct.alice", nil},
		{"all allowed characters", "a-b/c_d=e.F9", nil},
		{"empty", "", ErrInvalidKey},
		{"leading dot", ".a", ErrInvalidKey},
		{"trailing dot", "a.", ErrInvalidKey},
		{"empty token", "a..b", ErrInvalidKey},
		{"space", "a b", ErrInvalidKey},
		{"wildcard star", "a.*", ErrInvalidKey},
		{"wildcard gt", "a.>", ErrInvalidKey},
		{"unicode", "café", ErrInvalidKey},
		{"reserved root", "_txn", ErrReservedKey},
		{"reserved marker", MarkerKey, ErrReservedKey},
		{"reserved prefix", "_txn.anything", ErrReservedKey},
		{"similar but allowed", "_txnx", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateKey(tt.key)
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.want)
		})
	}
}

func TestLevels(t *testing.T) {
	mk := func(keys ...string) *job {
		j := &job{}
		for _, k := range keys {
			j.ops = append(j.ops, op{key: k})
		}
		return j
	}
	tests := []struct {
		name  string
		batch [][]string
		want  []int // level of each job
	}{
		{"disjoint", [][]string{{"a"}, {"b"}, {"c"}}, []int{0, 0, 0}},
		{"chain", [][]string{{"a"}, {"a", "b"}, {"b"}}, []int{0, 1, 2}},
		{"same key", [][]string{{"a"}, {"a"}, {"a"}}, []int{0, 1, 2}},
		{"fan in", [][]string{{"a"}, {"b"}, {"a", "b"}, {"c"}}, []int{0, 0, 1, 0}},
		{"late independent", [][]string{{"a"}, {"a"}, {"x"}, {"a", "x"}}, []int{0, 1, 0, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var batch []*job
			for _, keys := range tt.batch {
				batch = append(batch, mk(keys...))
			}
			lv := levels(batch)
			for i, j := range batch {
				require.Equal(t, tt.want[i], j.level, "job %d", i)
			}
			// Jobs of one level share no key and keep arrival order.
			for l, jobs := range lv {
				seen := map[string]bool{}
				for _, j := range jobs {
					require.Equal(t, l, j.level)
					for _, o := range j.ops {
						require.False(t, seen[o.key], "level %d has key %s twice", l, o.key)
						seen[o.key] = true
					}
				}
			}
		})
	}
}
