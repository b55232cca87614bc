package app

import (
	"fmt"

	"github.com/platform/platform/auth"
	"github.com/platform/platform/cluster"
	"github.com/platform/platform/natsconn"
)

// security applies TLS and the users file to the embedded cluster's
// options and returns how this process connects: its services with the
// same TLS files and, under --auth, as the users file's service user; and
// stream provisioning, which the service role may not do, as its admin.
// With --nats or --config both are the flags' (--provision-nkey or
// --provision-creds for provisioning, when given).
func (o *Options) security() (conn, provision natsconn.Options, err error) {
	conn = natsconn.Options{
		CA: o.TLSCA, Cert: o.TLSCert, Key: o.TLSKey,
		Creds: o.Creds, NkeySeed: o.NkeySeed, InboxPrefix: o.InboxPrefix,
	}
	provision = conn
	if o.ProvisionNkey != "" || o.ProvisionCreds != "" {
		provision.Creds, provision.NkeySeed = o.ProvisionCreds, o.ProvisionNkey
	}
	if o.NATS != "" || o.Cluster.ConfigFile != "" {
		return conn, provision, nil
	}
	o.Cluster.TLS = cluster.TLS{Cert: o.TLSCert, Key: o.TLSKey, CA: o.TLSCA, Verify: o.TLSVerify}
	if o.Auth != "" {
		f, err := auth.Load(o.Auth)
		if err != nil {
			return conn, provision, err
		}
		svc, err := f.ServiceCredentials()
		if err != nil {
			return conn, provision, fmt.Errorf("--auth %s: %w", o.Auth, err)
		}
		adm, err := f.AdminCredentials()
		if err != nil {
			return conn, provision, fmt.Errorf("--auth %s: %w", o.Auth, err)
		}
		o.Cluster.Users = f.Users
		conn.NkeySeed, conn.User, conn.Password, conn.InboxPrefix = svc.SeedFile, svc.User, svc.Password, auth.InboxPrefix(svc.Name)
		provision.NkeySeed, provision.User, provision.Password, provision.InboxPrefix = adm.SeedFile, adm.User, adm.Password, auth.InboxPrefix(adm.Name)
	}
	return conn, provision, nil
}
