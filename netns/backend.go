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
