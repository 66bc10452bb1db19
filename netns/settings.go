package netns

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Error classes; callers test them with errors.Is.
var (
	// ErrInvalid marks bad input: a value that can never be applied.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound marks an operation on a profile the Manager does not know.
	ErrNotFound = errors.New("not found")
)

// Mode is a profile's network mode.
type Mode string

const (
	// ModeDirect lets work leave through the host's uplinks, NATed, to the
	// destinations its allow-list permits.
	ModeDirect Mode = "direct"
	// ModeVPNLockdown lets eth0 talk only to the VPN endpoints; everything else
	// must go through a tunnel inside the profile.
	ModeVPNLockdown Mode = "vpn-lockdown"
	// ModeOffline lets nothing in or out.
	ModeOffline Mode = "offline"
)

// Rule is one allow-list entry: a destination prefix and, optionally, a
// protocol and port. Its text form is "CIDR[/PROTO:PORT]".
type Rule struct {
	Prefix netip.Prefix
	Proto  string // "", "tcp" or "udp"; "" means any protocol and port
	Port   uint16 // set exactly when Proto is
}

// ParseRule parses "CIDR[/PROTO:PORT]", for example "203.0.113.0/24",
// "198.51.100.7" (a single host) or "10.0.0.0/8/tcp:443".
func ParseRule(s string) (Rule, error) {
	bad := func(why string) (Rule, error) {
		return Rule{}, fmt.Errorf("allow rule %q: %s: %w", s, why, ErrInvalid)
	}
	addrPart, pp := s, ""
	if i := strings.LastIndexByte(s, '/'); i >= 0 && strings.Contains(s[i+1:], ":") {
		addrPart, pp = s[:i], s[i+1:]
	}
	var r Rule
	if strings.Contains(addrPart, "/") {
		p, err := netip.ParsePrefix(addrPart)
		if err != nil {
			return bad(fmt.Sprintf("bad CIDR %q", addrPart))
		}
		if p.Masked() != p {
			return bad(fmt.Sprintf("%s has host bits set (network is %s)", p, p.Masked()))
		}
		r.Prefix = p
	} else {
		a, err := netip.ParseAddr(addrPart)
		if err != nil {
			return bad(fmt.Sprintf("bad address %q", addrPart))
		}
		r.Prefix = netip.PrefixFrom(a, a.BitLen())
	}
	if pp != "" {
		proto, port, _ := strings.Cut(pp, ":")
		if proto != "tcp" && proto != "udp" {
			return bad(fmt.Sprintf("protocol %q is not tcp or udp", proto))
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return bad(fmt.Sprintf("port %q is not 1-65535", port))
		}
		r.Proto, r.Port = proto, uint16(n)
	}
	return r, nil
}

// String gives the text form ParseRule reads.
func (r Rule) String() string {
	s := r.Prefix.String()
	if r.Prefix.IsSingleIP() {
		s = r.Prefix.Addr().String()
	}
	if r.Proto != "" {
		s += "/" + r.Proto + ":" + strconv.Itoa(int(r.Port))
	}
	return s
}

// MarshalText makes a Rule a JSON string.
func (r Rule) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads the form ParseRule accepts.
func (r *Rule) UnmarshalText(b []byte) error {
	v, err := ParseRule(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

func (r Rule) validate() error {
	if !r.Prefix.IsValid() {
		return fmt.Errorf("allow rule %q: no prefix: %w", r, ErrInvalid)
	}
	if a := r.Prefix.Addr(); a.Zone() != "" || a.Is4In6() {
		return fmt.Errorf("allow rule %q: want a plain IPv4 or IPv6 network (no zone, no IPv4-mapped form): %w", r, ErrInvalid)
	}
	if r.Prefix.Masked() != r.Prefix {
		return fmt.Errorf("allow rule %q: host bits set: %w", r, ErrInvalid)
	}
	switch {
	case r.Proto == "" && r.Port != 0:
		return fmt.Errorf("allow rule %q: port %d without protocol: %w", r, r.Port, ErrInvalid)
	case r.Proto != "" && r.Proto != "tcp" && r.Proto != "udp":
		return fmt.Errorf("allow rule %q: protocol %q is not tcp or udp: %w", r, r.Proto, ErrInvalid)
	case r.Proto != "" && r.Port == 0:
		return fmt.Errorf("allow rule %q: protocol without port: %w", r, ErrInvalid)
	}
	return nil
}

// Settings is everything that shapes one profile's network. The zero value
// is not valid: Mode is required.
type Settings struct {
	Mode  Mode   `json:"mode"`
	Allow []Rule `json:"allow,omitempty"`
	// VPNEndpoints are where eth0 may send in vpn-lockdown mode: tcp and udp
	// to ADDR:PORT, or any protocol (ipip, gre, esp...) to ADDR when PORT is 0.
	VPNEndpoints []netip.AddrPort `json:"vpn_endpoints,omitempty"`
	// DNS resolvers for the profile; empty means the host's upstream resolvers.
	DNS []netip.Addr `json:"dns,omitempty"`
	// Uplinks are the host interfaces work may leave through; empty means the
	// interfaces of the host's default routes.
	Uplinks []string `json:"uplinks,omitempty"`
}

// Validate reports the first bad field, naming it and its value.
func (s Settings) Validate() error {
	switch s.Mode {
	case ModeDirect, ModeVPNLockdown, ModeOffline:
	default:
		return fmt.Errorf("mode %q: want direct, vpn-lockdown or offline: %w", s.Mode, ErrInvalid)
	}
	for i, r := range s.Allow {
		if err := r.validate(); err != nil {
			return fmt.Errorf("allow[%d]: %w", i, err)
		}
	}
	for i, ep := range s.VPNEndpoints {
		if !ep.IsValid() || !routableUnicast(ep.Addr()) {
			return fmt.Errorf("vpn_endpoints[%d] %q: want a routable unicast ADDR:PORT (IPv6 as [ADDR]:PORT): %w", i, ep, ErrInvalid)
		}
	}
	if s.Mode == ModeVPNLockdown && len(s.VPNEndpoints) == 0 {
		return fmt.Errorf("vpn_endpoints: vpn-lockdown mode needs at least one endpoint: %w", ErrInvalid)
	}
	for i, a := range s.DNS {
		if !a.IsValid() || !routableUnicast(a) {
			return fmt.Errorf("dns[%d] %q: want a routable unicast address (not loopback or link-local): %w", i, a, ErrInvalid)
		}
	}
	for i, u := range s.Uplinks {
		if u == "" || len(u) > 15 || strings.ContainsAny(u, "/ \t\n\x00") || u == "." || u == ".." {
			return fmt.Errorf("uplinks[%d] %q: not an interface name: %w", i, u, ErrInvalid)
		}
		if strings.HasPrefix(u, hostIfPrefix) {
			return fmt.Errorf("uplinks[%d] %q: a profile's own interface cannot be an uplink: %w", i, u, ErrInvalid)
		}
	}
	return nil
}

// routableUnicast reports whether work could ever send to a: unicast, not
// loopback, unspecified or link-local, no zone, not IPv4-mapped.
func routableUnicast(a netip.Addr) bool {
	return a.IsValid() && a.Zone() == "" && !a.Is4In6() && !a.IsUnspecified() && !a.IsLoopback() &&
		!a.IsMulticast() && !a.IsLinkLocalUnicast()
}

// Info describes a profile's network after Ensure.
type Info struct {
	NSPath  string       // pinned namespace: the container joins it
	Addr    netip.Prefix // work side (eth0)
	Gateway netip.Prefix // host side (HostIf)
	// Addr6 and Gateway6 are the IPv6 pair (a /64 of the ULA pool); zero
	// when the host has IPv6 off or the Manager was made WithoutIPv6.
	Addr6, Gateway6 netip.Prefix
	HostIf          string
	DNS             []netip.Addr
	// ResolvConf is the content to bind-mount as the profile's /etc/resolv.conf.
	ResolvConf []byte
}

// Counters are a profile's traffic as nftables counted it. In is traffic
// into the profile, Out traffic from it, as forwarded by the host.
type Counters struct {
	InBytes, InPackets   uint64
	OutBytes, OutPackets uint64
}

// Status is what Show reports.
type Status struct {
	Profile  string
	Info     Info
	Settings Settings
	Counters Counters
}

const (
	hostIfPrefix = "wc-"
	maxProfile   = 64
)

// ValidProfile reports whether name can name a profile: 1-64 bytes of
// [a-z0-9_-], starting with a letter or digit.
func ValidProfile(name string) error {
	if name == "" || len(name) > maxProfile {
		return fmt.Errorf("profile name %q: want 1-%d bytes: %w", name, maxProfile, ErrInvalid)
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '-' || c == '_')
		if !ok {
			return fmt.Errorf("profile name %q: only a-z, 0-9, '-' and '_' (not first): %w", name, ErrInvalid)
		}
	}
	return nil
}
