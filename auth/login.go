package auth

import (
	"crypto/subtle"
	"errors"
	"strings"

	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"
)

// ErrBadLogin is returned by Authenticate for an unknown user and for a
// wrong secret alike, so a caller cannot tell which.
var ErrBadLogin = errors.New("unknown user or wrong password")

// dummyHash is compared against when the user is unknown, so that a
// login for a name that does not exist costs what a wrong password for a
// bcrypt user costs.
var dummyHash = []byte("$2a$10$CwTycUXWue0Thq9StjUM0uJ8.0eXm5xdRqTzKTUIl6dtL0d7Jr6u6")

// Authenticate checks a user's secret as the NATS servers would: the
// password of a password user (plain, compared in constant time, or
// bcrypt-hashed), or, for an nkey user, the nkey's seed, whose public key
// must be the user's. It returns the user, or ErrBadLogin.
func (f *File) Authenticate(name, secret string) (User, error) {
	for _, u := range f.Users {
		if u.Name != name {
			continue
		}
		switch {
		case u.Password != "" && strings.HasPrefix(u.Password, "$2"):
			if bcrypt.CompareHashAndPassword([]byte(u.Password), []byte(secret)) == nil {
				return u, nil
			}
		case u.Password != "":
			if subtle.ConstantTimeCompare([]byte(u.Password), []byte(secret)) == 1 {
				return u, nil
			}
		case u.Nkey != "":
			if kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(secret))); err == nil {
				pub, err := kp.PublicKey()
				kp.Wipe()
				if err == nil && subtle.ConstantTimeCompare([]byte(pub), []byte(u.Nkey)) == 1 {
					return u, nil
				}
			}
		}
		return User{}, ErrBadLogin
	}
	_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(secret))
	return User{}, ErrBadLogin
}
