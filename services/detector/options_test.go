package detector

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Options)
	}{
		{"window too small", func(o *Options) { o.WindowSize = 1 }},
		{"suspect fraction above one", func(o *Options) { o.SuspectFraction = 2 }},
		{"lease ttl below renew", func(o *Options) { o.LeaseTTL = 100 * time.Millisecond }},
		{"pause margin below one", func(o *Options) { o.PauseMemoryMargin = 0.5 }},
		{"negative lease renew", func(o *Options) { o.LeaseRenew = -time.Second }},
		{"negative probe timeout", func(o *Options) { o.ProbeTimeout = -time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOptions()
			tt.mutate(&o)
			_, err := newService(o)
			require.Error(t, err)
		})
	}
	for _, o := range []Options{{}, DefaultOptions(), LocalOptions()} {
		_, err := newService(o)
		require.NoError(t, err)
	}
	_, err := New(DefaultOptions())
	require.Error(t, err, "New needs a connection")
}
