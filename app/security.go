package app

import (
	"fmt"

	"github.com/platform/platform/auth"
	"github.com/platform/platform/cluster"
	"github.com/platform/platform/natsconn"
)

// security applies TLS and the users file to the embedded cluster's
// options and returns how this process connects: with the same TLS files
// and, under --auth, as the users file's service user.
func (o *Options) security() (natsconn.Options, error) {
	c := natsconn.Options{
		CA: o.TLSCA, Cert: o.TLSCert, Key: o.TLSKey,
		Creds: o.Creds, NkeySeed: o.NkeySeed,
	}
	if o.NATS != "" || o.Cluster.ConfigFile != "" {
		return c, nil
	}
	o.Cluster.TLS = cluster.TLS{Cert: o.TLSCert, Key: o.TLSKey, CA: o.TLSCA, Verify: o.TLSVerify}
	if o.Auth != "" {
		f, err := auth.Load(o.Auth)
		if err != nil {
			return c, err
		}
		creds, err := f.ServiceCredentials()
		if err != nil {
			return c, fmt.Errorf("--auth %s: %w", o.Auth, err)
		}
		o.Cluster.Users = f.Users
		c.NkeySeed, c.User, c.Password = creds.SeedFile, creds.User, creds.Password
	}
	return c, nil
}
