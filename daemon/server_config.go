package daemon

import (
	"fmt"
	"time"
)

// ServerLimits keep the control socket answering root while others abuse
// it: every uid may connect (a refusal names the uid), so what a
// connection may cost is bounded here. Defaults are in DefaultConfig.
type ServerLimits struct {
	// ReadTimeout bounds reading one request, headers and body.
	ReadTimeout Duration `json:"read_timeout"`
	// IdleTimeout closes a kept-alive connection that sends no request.
	IdleTimeout Duration `json:"idle_timeout"`
	// WriteStallTimeout ends a stream (logs -f, events, audit) whose
	// client has not taken a write for this long.
	WriteStallTimeout Duration `json:"write_stall_timeout"`
	// ConnMax caps the connections of every uid but root and the system
	// uid, together.
	ConnMax int `json:"conn_max"`
	// ConnMaxAdmin is root's and the system uid's own budget: nobody
	// else's connections count against it, so they cannot lock them out.
	ConnMaxAdmin int `json:"conn_max_admin"`
	// ConnMaxPerUID caps one uid's connections (the owner's apps and CLI).
	ConnMaxPerUID int `json:"conn_max_per_uid"`
	// ConnMaxStranger caps, within ConnMax, the connections of uids with
	// no role (they are only ever told 403); each is closed after
	// StrangerTimeout.
	ConnMaxStranger int      `json:"conn_max_stranger"`
	StrangerTimeout Duration `json:"stranger_timeout"`
}

func (c *Config) validateServer() error {
	s := c.Server
	for _, d := range []struct {
		name string
		v    Duration
	}{
		{"server.read_timeout", s.ReadTimeout}, {"server.idle_timeout", s.IdleTimeout},
		{"server.write_stall_timeout", s.WriteStallTimeout}, {"server.stranger_timeout", s.StrangerTimeout},
	} {
		if d.v <= 0 {
			return fmt.Errorf("%s %s: must be positive", d.name, time.Duration(d.v))
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{
		{"server.conn_max", s.ConnMax}, {"server.conn_max_admin", s.ConnMaxAdmin},
		{"server.conn_max_per_uid", s.ConnMaxPerUID}, {"server.conn_max_stranger", s.ConnMaxStranger},
	} {
		if n.v < 1 {
			return fmt.Errorf("%s %d: must be at least 1", n.name, n.v)
		}
	}
	if s.ConnMaxPerUID > s.ConnMax {
		return fmt.Errorf("server.conn_max_per_uid %d: above server.conn_max %d", s.ConnMaxPerUID, s.ConnMax)
	}
	if s.ConnMaxStranger > s.ConnMax {
		return fmt.Errorf("server.conn_max_stranger %d: above server.conn_max %d", s.ConnMaxStranger, s.ConnMax)
	}
	if c.StopTimeoutMax <= 0 {
		return fmt.Errorf("stop_timeout_max %s: must be positive", time.Duration(c.StopTimeoutMax))
	}
	if c.StopTimeout > c.StopTimeoutMax {
		return fmt.Errorf("stop_timeout %s: above stop_timeout_max %s", time.Duration(c.StopTimeout), time.Duration(c.StopTimeoutMax))
	}
	return c.Passphrase.validate()
}
