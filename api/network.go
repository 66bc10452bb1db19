package api

import (
	"context"
	"net/http"
)

// The network modes of a profile (see DESIGN.md, "Network").
const (
	NetworkDirect      = "direct"
	NetworkVPNLockdown = "vpn-lockdown"
	NetworkOffline     = "offline"
)

// NetworkSettings is everything that shapes a profile's network: the body
// of PUT /v1/profiles/{name}/network, which replaces them whole. Values are
// text so that the daemon, not the wire format, names a bad one.
type NetworkSettings struct {
	// Mode is direct, vpn-lockdown or offline.
	Mode string `json:"mode"`
	// Allow lists "CIDR[/PROTO:PORT]" destinations (direct mode); empty
	// allows every public destination.
	Allow []string `json:"allow,omitempty"`
	// VPNEndpoints are "IP:PORT" (tcp and udp) or "IP" (any protocol) that
	// eth0 may reach in vpn-lockdown mode.
	VPNEndpoints []string `json:"vpn_endpoints,omitempty"`
	// DNS resolvers; empty means the uplink's upstream resolvers.
	DNS []string `json:"dns,omitempty"`
	// Uplinks are the host interfaces work may leave through; empty means
	// those of the host's default routes.
	Uplinks []string `json:"uplinks,omitempty"`
}

// NetworkCounters are a profile's traffic as the host forwarded it: In is
// into the profile, Out is from it.
type NetworkCounters struct {
	InBytes    uint64 `json:"in_bytes"`
	InPackets  uint64 `json:"in_packets"`
	OutBytes   uint64 `json:"out_bytes"`
	OutPackets uint64 `json:"out_packets"`
}

// Network is the answer of GET /v1/profiles/{name}/network.
type Network struct {
	Name     string          `json:"name"`
	Settings NetworkSettings `json:"settings"`
	// Present says whether the profile has a network namespace now (it
	// gets one at its first start and keeps it until removed).
	Present bool `json:"present"`
	// Address is the work side (eth0), Gateway the host side, as CIDR.
	Address       string `json:"address,omitempty"`
	Gateway       string `json:"gateway,omitempty"`
	HostInterface string `json:"host_interface,omitempty"`
	// Address6 and Gateway6 are the IPv6 pair, when the profile has IPv6.
	Address6 string `json:"address6,omitempty"`
	Gateway6 string `json:"gateway6,omitempty"`
	// DNS are the resolvers the profile's /etc/resolv.conf names.
	DNS      []string        `json:"dns,omitempty"`
	Counters NetworkCounters `json:"counters"`
	// Pending, in the answer to a change of a running profile, says what of
	// it reaches the container only at its next start (the tunnel device
	// and CAP_NET_ADMIN of vpn-lockdown); the rules apply at once.
	Pending string `json:"pending,omitempty"`
}

// Network returns a profile's network: addresses, settings and counters.
func (c *Client) Network(ctx context.Context, name string) (Network, error) {
	var n Network
	err := c.do(ctx, http.MethodGet, profilePath(name, "network"), nil, &n)
	return n, err
}

// SetNetwork replaces a profile's network settings; a running profile
// gets them at once. A bad value is refused and the rules stay as they were.
func (c *Client) SetNetwork(ctx context.Context, name string, s NetworkSettings) (Network, error) {
	var n Network
	err := c.do(ctx, http.MethodPut, profilePath(name, "network"), s, &n)
	return n, err
}
