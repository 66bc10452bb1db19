// Package netns gives each work profile its own network: a pinned network
// namespace, a veth pair into it, an IPv4 address from a private pool and
// an IPv6 /64 from a unique-local pool (both masqueraded behind the
// uplink), and the firewall rules (nftables table inet "workcell", or
// iptables-legacy chains wc_...) that keep work and personal traffic apart
// in both directions.
//
// The wanted ruleset is computed as data from the profile's Settings and a
// few facts about the host (uplinks, directly connected networks, resolvers);
// the Linux side then applies that description in one nftables batch, so a
// change either lands whole or not at all. Where the kernel has no
// nf_tables (Android's GKI kernels), the same description goes through
// iptables-legacy instead (WithBackend): one iptables-restore run per
// address family into chains named wc_..., hooked from the OEM chains
// Android's netd leaves for this; ChooseBackend picks by probing.
//
// Uplinks are found through the policy rules the kernel routes by, not
// only the main table: on Android every network has its own table, and a
// profile's forwarded traffic gets an "iif wc-NAME lookup TABLE" rule
// (IIfRulePriority) that Watch keeps in step with the network.
//
// The Manager works in the network namespace it is given (WithHostNS) or, by
// default, the one of the calling thread at construction; tests hand it a fake
// "host" namespace so the machine's real network is never touched.
package netns
