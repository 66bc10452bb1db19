package daemon

import (
	"github.com/workcell/workcell/api"
)

// role is what a peer may do, decided from its uid as the kernel reports
// it (SO_PEERCRED), never from anything the client says.
type role int

const (
	roleNone  role = iota
	roleOwner      // the employee: status, stats, logs, start, stop, off, on, exec
	roleAdmin      // root or the system uid: everything
)

func (r role) String() string {
	switch r {
	case roleAdmin:
		return "admin"
	case roleOwner:
		return "owner"
	}
	return "none"
}

// roleOf maps a peer uid to its role; uid -1 means the credentials could
// not be read, which grants nothing.
func roleOf(uid int, cfg Config) role {
	switch {
	case uid < 0:
		return roleNone
	case uid == 0 || (cfg.SystemUID >= 0 && uid == cfg.SystemUID):
		return roleAdmin
	case cfg.OwnerUID >= 0 && uid == cfg.OwnerUID:
		return roleOwner
	}
	return roleNone
}

// authorize says whether uid may do what needs role want, with a message
// that names the uid when it may not.
func authorize(uid int, cfg Config, want role, what string) error {
	have := roleOf(uid, cfg)
	if have >= want {
		return nil
	}
	if uid < 0 {
		return api.Errorf(api.ErrPermission, "cannot read the caller's credentials: refused")
	}
	if have == roleNone {
		return api.Errorf(api.ErrPermission, "uid %d is not allowed to use workcelld", uid)
	}
	return api.Errorf(api.ErrPermission, "uid %d may not %s: only root or the system uid may", uid, what)
}
