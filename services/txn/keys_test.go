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
