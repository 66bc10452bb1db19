package netns

import (
	"context"
	"fmt"

	"github.com/google/nftables"
	vns "github.com/vishvananda/netns"
)

// firewall is what the Manager needs of a backend: the wanted rules as
// data go in, the kernel's state comes out. Each method does its work in as
// few kernel transactions as the backend allows.
type firewall interface {
	// applyHost puts in place the shared hooks for all profiles, the rules
	// of the profiles in full, an empty (fail-closed) chain pair for every
	// other profile of all that has none, and removes the objects of the
	// profiles in gone.
	applyHost(ctx context.Context, pl pools, all []profileRef, full map[string]profileRules, gone []string) error
	// clearHost removes everything the backend made in the host namespace.
	clearHost(ctx context.Context) error
	// applyInner puts pr's rules in place inside a profile's namespace.
	applyInner(ctx context.Context, ns vns.NsHandle, pr profileRules) error
	// intact reports whether the shared hooks and the profile's own chains
	// are in place and hold rules.
	intact(ctx context.Context, profile string) bool
	// profiles lists the profiles that have objects in the host namespace,
	// as tag spells their names.
	profiles(ctx context.Context) (map[string]bool, error)
	// tag is how the backend's objects spell a profile's name (iptables
	// shortens long ones to fit its chain names).
	tag(profile string) string
	// counters reads the profile's traffic counters.
	counters(ctx context.Context, profile string) (Counters, error)
	// noNAT6 says why the host cannot masquerade IPv6, "" when it can.
	noNAT6(ctx context.Context) string
}

// WithBackend chooses how rules reach the kernel (default
// BackendNFTables). The daemon decides it with ChooseBackend.
func WithBackend(b Backend) Option {
	return func(o *options) error {
		if _, err := ParseBackend(string(b)); err != nil {
			return err
		}
		o.backend = b
		return nil
	}
}

// Backend says how the Manager's rules reach the kernel.
func (m *Manager) Backend() Backend { return m.backend }

func newFirewall(b Backend, hostNS vns.NsHandle) (firewall, error) {
	switch b {
	case BackendIPTables:
		x, err := findXtables()
		if err != nil {
			return nil, err
		}
		return &iptFirewall{x: x, hostNS: hostNS}, nil
	case BackendNFTables, "":
		return &nftFirewall{hostNS: hostNS}, nil
	}
	return nil, fmt.Errorf("firewall backend %q: %w", b, ErrInvalid)
}

// nftFirewall keeps the rules in the nftables table "workcell".
type nftFirewall struct{ hostNS vns.NsHandle }

func (f *nftFirewall) tag(profile string) string { return profile }

func (f *nftFirewall) conn() (*nftables.Conn, error) {
	c, err := newConn(int(f.hostNS))
	if err != nil {
		return nil, fmt.Errorf("nftables in host namespace: %w", err)
	}
	return c, nil
}

func (f *nftFirewall) applyHost(ctx context.Context, pl pools, all []profileRef, full map[string]profileRules, gone []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := f.conn()
	if err != nil {
		return err
	}
	existing := tableObjects{}
	if len(gone) > 0 {
		if existing, err = listTableObjects(c); err != nil {
			return err
		}
	}
	if err := hostBatch(c, pl, all, full, gone, existing); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("apply nftables batch: %w", err)
	}
	return nil
}

func (f *nftFirewall) clearHost(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := f.conn()
	if err != nil {
		return err
	}
	// Adding first makes the delete valid whether or not the table exists.
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: tableName})
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete nftables table %s: %w", tableName, err)
	}
	return nil
}

func (f *nftFirewall) applyInner(ctx context.Context, ns vns.NsHandle, pr profileRules) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := newConn(int(ns))
	if err != nil {
		return err
	}
	if err := innerBatch(c, pr); err != nil {
		return err
	}
	return c.Flush()
}

func (f *nftFirewall) intact(ctx context.Context, profile string) bool {
	if ctx.Err() != nil {
		return false
	}
	c, err := f.conn()
	if err != nil {
		return false
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: tableName}
	for _, ch := range []string{chainForward, chainInput, chainOutput, objName(profile, "out"), objName(profile, "in")} {
		rules, err := c.GetRules(t, &nftables.Chain{Name: ch, Table: t})
		if err != nil || len(rules) == 0 {
			return false
		}
	}
	return true
}

func (f *nftFirewall) profiles(ctx context.Context) (map[string]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := f.conn()
	if err != nil {
		return nil, err
	}
	objs, err := listTableObjects(c)
	if err != nil {
		return nil, err
	}
	return objs.profiles(), nil
}

// noNAT6: nf_tables' inet family masquerades both families wherever it
// exists.
func (f *nftFirewall) noNAT6(context.Context) string { return "" }

func (f *nftFirewall) counters(ctx context.Context, profile string) (Counters, error) {
	if err := ctx.Err(); err != nil {
		return Counters{}, err
	}
	c, err := f.conn()
	if err != nil {
		return Counters{}, err
	}
	ctrs, err := readCounters(c)
	if err != nil {
		return Counters{}, err
	}
	var out Counters
	if v := ctrs[objName(profile, "in")]; v != nil {
		out.InBytes, out.InPackets = v.Bytes, v.Packets
	}
	if v := ctrs[objName(profile, "out")]; v != nil {
		out.OutBytes, out.OutPackets = v.Bytes, v.Packets
	}
	return out, nil
}
