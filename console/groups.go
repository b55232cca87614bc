package console

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/platform/platform/membership"
	"github.com/platform/platform/services/consume"
	"github.com/platform/platform/services/txn"
)

// maxGroups bounds the consumer groups one request reads the status of.
const maxGroups = 50

// groupView is one consumer group of GET /groups.
type groupView struct {
	consume.GroupStatus
	// Error says why the group's status could not be read.
	Error string `json:"error,omitempty"`
}

// groupsView is GET /groups.
type groupsView struct {
	Groups    []groupView `json:"groups"`
	Truncated bool        `json:"truncated"`
}

// groups answers every consumer group's status as consume.Status reads
// it (what platform status prints), or one group's with ?group=.
func (c *Console) groups(ctx context.Context, r *http.Request, _ *session) (any, error) {
	one := r.URL.Query().Get("group")
	if one != "" && !membership.ValidToken(one) {
		return nil, badRequest("group %q is not a valid group name", one)
	}
	p := c.platform()
	store, err := txn.NewStore(p.Conn, txn.WithOpTimeout(2*time.Second))
	if err != nil {
		return nil, err
	}
	names := []string{one}
	if one == "" {
		if names, err = consume.Groups(ctx, store); err != nil {
			return nil, err
		}
	}
	v := groupsView{Groups: []groupView{}}
	if len(names) > maxGroups {
		names, v.Truncated = names[:maxGroups], true
	}
	for _, g := range names {
		st, err := consume.Status(ctx, p.JS, store, g)
		switch {
		case errors.Is(err, consume.ErrUnknownGroup) && one != "":
			return nil, notFound("no consumer group %q", g)
		case err != nil:
			v.Groups = append(v.Groups, groupView{GroupStatus: consume.GroupStatus{Group: g}, Error: err.Error()})
		default:
			v.Groups = append(v.Groups, groupView{GroupStatus: st})
		}
	}
	return v, nil
}
