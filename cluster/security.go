package cluster

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/platform/platform/auth"
)

// TLS names the PEM files of the nodes' TLS, for client connections and
// for the route links between nodes alike.
type TLS struct {
	// Cert and Key are the nodes' certificate and key.
	Cert, Key string
	// CA verifies peers: the other nodes on routes, and clients when
	// Verify is set.
	CA string
	// Verify requires clients to present a certificate signed by CA
	// (mutual TLS). Routes always verify each other against CA.
	Verify bool
}

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.Cert != "" || t.Key != "" }

func (t TLS) validate() error {
	if !t.Enabled() {
		if t.CA != "" || t.Verify {
			return errors.New("tls: a CA or verify needs a certificate and key")
		}
		return nil
	}
	if t.Cert == "" || t.Key == "" {
		return errors.New("tls: give both a certificate and a key")
	}
	if t.Verify && t.CA == "" {
		return errors.New("tls: verifying client certificates needs a CA")
	}
	return nil
}

// applySecurity sets TLS and users on a node's server options.
func applySecurity(o Options, so *server.Options) error {
	if o.TLS.Enabled() {
		client, err := server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: o.TLS.Cert, KeyFile: o.TLS.Key, CaFile: o.TLS.CA, Verify: o.TLS.Verify,
		})
		if err != nil {
			return fmt.Errorf("client tls: %w", err)
		}
		so.TLSConfig, so.TLS, so.TLSVerify, so.TLSTimeout = client, true, o.TLS.Verify, 2
		if so.Cluster.Port > 0 {
			// Routes present the node certificate and verify the peer's
			// against the CA: a node of another CA cannot join.
			route, err := server.GenTLSConfig(&server.TLSConfigOpts{
				CertFile: o.TLS.Cert, KeyFile: o.TLS.Key, CaFile: o.TLS.CA, Verify: o.TLS.CA != "",
			})
			if err != nil {
				return fmt.Errorf("route tls: %w", err)
			}
			// A node is client and server on routes: it verifies the
			// peer it dials against the same CA, as nats-server does
			// for a config file's cluster tls block.
			route.RootCAs = route.ClientCAs
			// Nodes of one process handshake with each other while it
			// starts them all at once: allow more than the server's 2 s
			// default, so a loaded machine does not drop route links.
			so.Cluster.TLSConfig, so.Cluster.TLSTimeout = route, 5
		}
	}
	for _, u := range o.Users {
		p, err := auth.RolePermissions(u.Role, u.Name)
		if err != nil {
			return fmt.Errorf("user %q: %w", u.Name, err)
		}
		perms := serverPermissions(p)
		if u.Nkey != "" {
			so.Nkeys = append(so.Nkeys, &server.NkeyUser{Nkey: u.Nkey, Permissions: perms})
		} else {
			so.Users = append(so.Users, &server.User{Username: u.Name, Password: u.Password, Permissions: perms})
		}
	}
	return nil
}

func serverPermissions(p auth.Permissions) *server.Permissions {
	if len(p.PublishAllow)+len(p.PublishDeny)+len(p.SubscribeAllow)+len(p.SubscribeDeny) == 0 {
		return nil
	}
	sp := &server.Permissions{}
	if len(p.PublishAllow)+len(p.PublishDeny) > 0 {
		sp.Publish = &server.SubjectPermission{Allow: p.PublishAllow, Deny: p.PublishDeny}
	}
	if len(p.SubscribeAllow)+len(p.SubscribeDeny) > 0 {
		sp.Subscribe = &server.SubjectPermission{Allow: p.SubscribeAllow, Deny: p.SubscribeDeny}
	}
	return sp
}
