package app_test

import (
	"fmt"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/platform/platform/app"
)

func TestServiceList(t *testing.T) {
	list := app.Services()
	want := []string{"admin", "detector", "replicator", "txn", "balancer", "alerting", "consume"} // start order; stop is the reverse
	require.Equal(t, want, app.ServiceNames(), "start order")

	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	seen := map[string]bool{}
	for i, s := range list {
		if s.Name != want[i] {
			t.Errorf("entry %d = %q, want %q", i, s.Name, want[i])
		}
		require.False(t, seen[s.Name], "service %q listed twice", s.Name)
		seen[s.Name] = true
		require.NotNil(t, s.New, "service %q has no constructor", s.Name)
		if s.Flags != nil {
			require.NotPanics(t, func() { s.Flags(fs) }, "flags of %q collide with an earlier entry's", s.Name)
		}
	}
	for _, name := range []string{"ingest-per-event", "ingest-topic-rate", "ingest-client-rate", "ingest-buffer", "alerts-file", "alerts-http"} {
		require.NotNil(t, fs.Lookup(name), "--%s declared by a service's entry", name)
	}
}

func TestServiceSelectionAndValidation(t *testing.T) {
	tests := []struct {
		name     string
		services []string
		flags    []string
		wantErr  string
	}{
		{"all", []string{"all"}, nil, ""},
		{"subset", []string{"txn", "admin"}, nil, ""},
		{"unknown", []string{"nope"}, nil, `unknown service "nope" (known: [admin detector replicator txn balancer alerting consume])`},
		{"unknown among known", []string{"admin", "nope"}, nil, `unknown service "nope"`},
		{"rates", nil, []string{"--ingest-topic-rate", "100", "--ingest-client-rate", "5"}, ""},
		{"negative topic rate", nil, []string{"--ingest-topic-rate", "-1"}, "ingest rates must not be negative"},
		{"negative client rate", nil, []string{"--ingest-client-rate", "-0.5"}, "ingest rates must not be negative"},
		// The replicator's flags are checked even when it is not selected.
		{"negative rate unselected", []string{"admin"}, []string{"--ingest-topic-rate", "-1"}, "ingest rates must not be negative"},
		{"negative request timeout", nil, []string{"--ingest-request-timeout", "-1s"}, "--ingest-request-timeout -1s must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list := app.Services()
			fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
			for _, s := range list {
				if s.Flags != nil {
					s.Flags(fs)
				}
			}
			require.NoError(t, fs.Parse(tt.flags))
			_, err := app.New(app.Options{Catalog: list, Services: tt.services})
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestServiceListsShareNothing(t *testing.T) {
	a := app.Services()
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	for _, s := range a {
		if s.Flags != nil {
			s.Flags(fs)
		}
	}
	require.NoError(t, fs.Parse([]string{"--ingest-topic-rate", "-1"}))
	_, err := app.New(app.Options{Catalog: a})
	require.Error(t, err, "the list whose flags were set")
	_, err = app.New(app.Options{})
	require.NoError(t, err, "a fresh list keeps its defaults")
}

func TestServiceListRefusesDuplicates(t *testing.T) {
	list := app.Services()
	_, err := app.New(app.Options{Catalog: append(list, list[0])})
	require.ErrorContains(t, err, fmt.Sprintf("%q listed twice", list[0].Name))
}

func TestIngestBufferFlag(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{"default", "", "1GiB", false},
		{"bytes", "4096", "4KiB", false},
		{"GiB", "2GiB", "2GiB", false},
		{"MiB lower case", "512mib", "512MiB", false},
		{"short unit", "3G", "3GiB", false},
		{"odd bytes", "1000000", "1000000", false},
		{"fraction", "1.5GiB", "", true},
		{"unknown unit", "1TB", "", true},
		{"no number", "GiB", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			for _, s := range app.Services() {
				if s.Name == "replicator" {
					s.Flags(fs)
				}
			}
			if tt.in != "" {
				err := fs.Set("ingest-buffer", tt.in)
				if tt.wantErr {
					if err == nil {
						t.Errorf("--ingest-buffer %s accepted as %s, want an error", tt.in, fs.Lookup("ingest-buffer").Value)
					}
					return
				}
				require.NoError(t, err)
			}
			if got := fs.Lookup("ingest-buffer").Value.String(); got != tt.want {
				t.Errorf("--ingest-buffer %q = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}
