package netns

import "fmt"

// Backend is the kernel interface a Manager puts its rules through.
type Backend string

const (
	// BackendNFTables applies the rules as one nftables table (family inet)
	// per namespace, in one netlink batch.
	BackendNFTables Backend = "nftables"
	// BackendIPTables applies the same rules through iptables-legacy, in one
	// iptables-restore batch per address family, into chains named wc_...
	// hooked from the OEM chains Android's netd leaves for this (oem_fwd,
	// oem_out) or from the built-in chains. GKI kernels have no nf_tables.
	BackendIPTables Backend = "iptables-legacy"
)

// ParseBackend reads a firewall setting: "nftables" or "iptables-legacy"
// (the daemon resolves "auto" by probing the kernel first).
func ParseBackend(s string) (Backend, error) {
	switch b := Backend(s); b {
	case BackendNFTables, BackendIPTables:
		return b, nil
	}
	return "", fmt.Errorf("firewall backend %q: want %q or %q: %w", s, BackendNFTables, BackendIPTables, ErrInvalid)
}

// PolicyRouting is how the host routes profiles' traffic (see
// Manager.PolicyRouting). Table 254 is the kernel's main table; Android
// keeps one table per network (wlan0's, rmnet_data0's), looked up by
// netd's rules.
type PolicyRouting struct {
	Table4, Table6     int      // where the uplinks' default routes are (0: none)
	Uplinks4, Uplinks6 []string // their interfaces
	// Rule4 and Rule6 say forwarded traffic needs an "iif wc-NAME lookup
	// TABLE" rule to get there (and has one per profile).
	Rule4, Rule6 bool
	Priority     int // of those rules
}
