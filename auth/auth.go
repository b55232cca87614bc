// Package auth says who may do what on the platform: four roles (admin,
// service, producer, reader) as NATS publish/subscribe permissions, and the
// users file of `platform run --auth` that gives each user a role and an
// nkey or a password. It links no server; package cluster turns users into
// server options.
package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/platform/platform/streams"
)

// Roles.
const (
	// RoleAdmin may do anything.
	RoleAdmin = "admin"
	// RoleService is what the platform's services need: their streams and
	// buckets, the JetStream API, heartbeats, micro service subjects.
	RoleService = "service"
	// RoleProducer may publish ingest.> and txn.> requests and receive the
	// replies, and nothing else: it may not read EVENTS, write KV buckets
	// directly, publish heartbeats or call the JetStream API.
	RoleProducer = "producer"
	// RoleReader may consume EVENTS (and the DETECTOR, ALERTS and DEAD
	// streams), read the KV buckets, and take and settle the events of
	// consumer groups (consume.<group>.next, .ack, .status): read-only
	// JetStream, no other publishing.
	RoleReader = "reader"
)

// Roles lists every role.
var Roles = []string{RoleAdmin, RoleService, RoleProducer, RoleReader}

// Permissions are NATS publish and subscribe permissions; an empty allow
// list allows everything not denied.
type Permissions struct {
	PublishAllow, PublishDeny     []string
	SubscribeAllow, SubscribeDeny []string
}

// InboxPrefix is the inbox prefix of user under --auth: its clients set
// it (nats.CustomInboxPrefix, the nats CLI's --inbox-prefix) so replies to
// its requests arrive under it, and producers and readers may subscribe to
// no other inbox, so no one reads another user's replies.
func InboxPrefix(user string) string { return "_INBOX_" + user }

// streamAdmin are the JetStream API calls that change or destroy streams
// or the account, which only admin may make: stream provisioning runs with
// an admin credential (platform run --auth uses the users file's admin).
var streamAdmin = []string{
	"$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>",
	"$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.MSG.DELETE.>",
	"$JS.API.STREAM.RESTORE.>", "$JS.API.STREAM.SNAPSHOT.>",
	"$JS.API.ACCOUNT.>", "$JS.API.SERVER.>", "$SYS.>",
}

// RolePermissions returns the permissions of user with role.
func RolePermissions(role, user string) (Permissions, error) {
	inbox := InboxPrefix(user) + ".>"
	switch role {
	case RoleAdmin:
		return Permissions{}, nil
	case RoleService:
		// Everything but changing streams: services read and write their
		// streams and buckets and run consumers, but cannot add a subject
		// to a stream (and so take over ingest.> or alerts.>), shrink one
		// or delete one. Publishing is open, so services answer requests
		// on any user's inbox; subscribing is open too, for the services
		// read every stream and bucket anyway.
		return Permissions{PublishDeny: slices.Clone(streamAdmin)}, nil
	case RoleProducer:
		// Publishing only ingest and txn requests keeps the alerting
		// service's internal subjects (alerts.fanout) out of reach too.
		return Permissions{
			// What it may call directly it may call through the
			// balancer's route.<subject>, which forwards only to
			// services' endpoints.
			PublishAllow: []string{streams.IngestPrefix + ">", "txn.>",
				streams.RouteSubject(streams.IngestPrefix + ">"), streams.RouteSubject("txn.>")},
			SubscribeAllow: []string{inbox},
		}, nil
	case RoleReader:
		// Read-only JetStream: stream info, message gets and its own
		// consumers on any stream (the platform's streams keep messages
		// by limits, so a consumer removes nothing). It may not delete
		// consumers, nor list them: the platform's consumers (KV
		// watchers, ordered readers) have random names it cannot learn,
		// so it cannot touch them. Core subscriptions are its own inbox
		// and the stored subjects, not the services' request subjects.
		sub := []string{inbox, streams.EventsPrefix + ">", streams.DetectorPrefix + ">", streams.DeadPrefix + ">"}
		sub = append(sub, streams.AlertStreamSubjects()...)
		return Permissions{
			// Consumer groups through the consume service: it may take
			// and settle events and read a group's status, but not
			// create a group, which fixes its partitions and filter.
			PublishAllow: []string{
				streams.ConsumeSubject("*", "next"), streams.ConsumeSubject("*", "ack"), streams.ConsumeSubject("*", "status"),
				"$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST",
				"$JS.API.STREAM.INFO.*", "$JS.API.STREAM.MSG.GET.*", "$JS.API.DIRECT.GET.>",
				"$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.INFO.>", "$JS.API.CONSUMER.MSG.NEXT.>",
				"$JS.FC.>", "$JS.ACK.>",
			},
			SubscribeAllow: sub,
		}, nil
	}
	return Permissions{}, fmt.Errorf("unknown role %q (want %s)", role, strings.Join(Roles, ", "))
}

// User is one entry of the users file: a name, a role and one way to
// authenticate (an nkey or a password).
type User struct {
	// Name identifies the user in logs (and is the user name of a
	// password user).
	Name string `json:"name"`
	// Role is one of Roles.
	Role string `json:"role"`
	// Nkey is the user's public nkey (starts with U); the client holds
	// the seed.
	Nkey string `json:"nkey,omitempty"`
	// Password is a password, plain or bcrypt-hashed ($2a$...).
	Password string `json:"password,omitempty"`
	// SeedFile is where the seed of this user's nkey is, relative to the
	// users file; the platform's own connection uses the first service
	// user that has one.
	SeedFile string `json:"seed_file,omitempty"`
}

// File is the users file of `platform run --auth`.
type File struct {
	// Users are the users the servers accept.
	Users []User `json:"users"`

	dir string
}

// Load reads and checks a users file.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load users file: %w", err)
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("load users file %s: %w", path, err)
	}
	f.dir = filepath.Dir(path)
	if err := f.validate(); err != nil {
		return nil, fmt.Errorf("load users file %s: %w", path, err)
	}
	return &f, nil
}

func (f *File) validate() error {
	if len(f.Users) == 0 {
		return errors.New("no users")
	}
	seen := map[string]bool{}
	for i, u := range f.Users {
		if u.Name == "" {
			return fmt.Errorf("user %d: no name", i+1)
		}
		if strings.ContainsAny(u.Name, ".*> \t\r\n") {
			return fmt.Errorf("user %q: a name is one subject token (it names the user's inbox %s): no '.', '*', '>' or white space", u.Name, InboxPrefix(u.Name))
		}
		if seen[u.Name] {
			return fmt.Errorf("user %q listed twice", u.Name)
		}
		seen[u.Name] = true
		if !slices.Contains(Roles, u.Role) {
			return fmt.Errorf("user %q: unknown role %q (want %s)", u.Name, u.Role, strings.Join(Roles, ", "))
		}
		if (u.Nkey == "") == (u.Password == "") {
			return fmt.Errorf("user %q: give exactly one of nkey and password", u.Name)
		}
		if u.Nkey != "" && !nkeys.IsValidPublicUserKey(u.Nkey) {
			return fmt.Errorf("user %q: %q is not a user public nkey", u.Name, u.Nkey)
		}
	}
	return nil
}

// Credentials say how one of the platform's own connections logs in.
type Credentials struct {
	// Name is the user's name; its inbox prefix is InboxPrefix(Name).
	Name string
	// User and Password for a password user.
	User, Password string
	// SeedFile is an nkey seed file for an nkey user.
	SeedFile string
}

// ServiceCredentials returns how the platform's own connection logs in:
// the first service user with a seed file, else with a plain password.
func (f *File) ServiceCredentials() (Credentials, error) {
	c, ok := f.credentials(RoleService)
	if !ok {
		return Credentials{}, errors.New("users file: no service user with a seed_file or a plain password for the platform's own connection")
	}
	return c, nil
}

// AdminCredentials returns how the platform provisions its streams, which
// the service role may not change: the first admin user with a seed file,
// else with a plain password.
func (f *File) AdminCredentials() (Credentials, error) {
	c, ok := f.credentials(RoleAdmin)
	if !ok {
		return Credentials{}, errors.New("users file: no admin user with a seed_file or a plain password to provision the streams with")
	}
	return c, nil
}

func (f *File) credentials(role string) (Credentials, bool) {
	for _, u := range f.Users {
		if u.Role != role {
			continue
		}
		if u.Nkey != "" && u.SeedFile != "" {
			p := u.SeedFile
			if !filepath.IsAbs(p) {
				p = filepath.Join(f.dir, p)
			}
			return Credentials{Name: u.Name, SeedFile: p}, true
		}
		if u.Password != "" && !strings.HasPrefix(u.Password, "$2") {
			return Credentials{Name: u.Name, User: u.Name, Password: u.Password}, true
		}
	}
	return Credentials{}, false
}

// Init writes a starter users file to dir/users.json with one user per
// role, each with a fresh nkey whose seed goes to dir/<name>.nk (mode
// 0600), and returns its path. It refuses to overwrite an existing file.
func Init(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("auth init: %w", err)
	}
	path := filepath.Join(dir, "users.json")
	if _, err := os.Stat(path); err == nil {
		return "", fmt.Errorf("auth init: %s already exists", path)
	}
	f := File{}
	for _, u := range []struct{ name, role string }{
		{"platform", RoleService}, {"admin", RoleAdmin}, {"producer", RoleProducer}, {"reader", RoleReader},
	} {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return "", fmt.Errorf("auth init: %w", err)
		}
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		seedFile := u.name + ".nk"
		if err := os.WriteFile(filepath.Join(dir, seedFile), append(seed, '\n'), 0o600); err != nil {
			return "", fmt.Errorf("auth init: %w", err)
		}
		f.Users = append(f.Users, User{Name: u.name, Role: u.role, Nkey: pub, SeedFile: seedFile})
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("auth init: %w", err)
	}
	return path, nil
}
