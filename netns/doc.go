// Package netns gives each work profile its own network: a pinned network
// namespace, a veth pair into it, an IPv4 address from a private pool and
// an IPv6 /64 from a unique-local pool (both masqueraded behind the
// uplink), and the nftables rules (table inet "workcell", every set and
// rule in both families) that keep work and personal traffic apart in both
// directions.
//
// The wanted ruleset is computed as data from the profile's Settings and a
// few facts about the host (uplinks, directly connected networks, resolvers);
// the Linux side then applies that description in one nftables batch, so a
// change either lands whole or not at all.
//
// The Manager works in the network namespace it is given (WithHostNS) or, by
// default, the one of the calling thread at construction; tests hand it a fake
// "host" namespace so the machine's real network is never touched.
package netns
