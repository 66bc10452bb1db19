package netns

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

var (
	typeAddrProtoPort  = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	typeAddr6ProtoPort = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
)

// batchBufBytes sizes the netlink socket buffers: a batch holding
// allow-lists of tens of thousands of entries is sent in one sendmsg.
const batchBufBytes = 64 << 20

// newConn opens nftables in the namespace behind fd.
func newConn(fd int) (*nftables.Conn, error) {
	return nftables.New(nftables.WithNetNSFd(fd), nftables.WithSockOptions(func(c *netlink.Conn) error {
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		err = rc.Control(func(fd uintptr) {
			// The FORCE variants pass net.core.wmem_max; we hold CAP_NET_ADMIN.
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, batchBufBytes)
			if serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, batchBufBytes)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}))
}

// batch collects one nftables transaction against one table.
type batch struct {
	c     *nftables.Conn
	table *nftables.Table
	sets  map[string]*nftables.Set
}

func newBatch(c *nftables.Conn) *batch {
	b := &batch{c: c, table: &nftables.Table{Family: nftables.TableFamilyINet, Name: tableName}, sets: map[string]*nftables.Set{}}
	c.AddTable(b.table)
	return b
}

func (b *batch) baseChain(name string, hook *nftables.ChainHook, prio *nftables.ChainPriority, typ nftables.ChainType) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return b.c.AddChain(&nftables.Chain{Name: name, Table: b.table, Hooknum: hook, Priority: prio, Type: typ, Policy: &accept})
}

func (b *batch) chain(name string) *nftables.Chain {
	return b.c.AddChain(&nftables.Chain{Name: name, Table: b.table})
}

// replaceRules empties the chain and fills it, within the batch.
func (b *batch) replaceRules(ch *nftables.Chain, rules []ruleSpec) error {
	b.c.FlushChain(ch)
	for _, r := range rules {
		exprs, err := b.exprs(r)
		if err != nil {
			return fmt.Errorf("rule %q: %w", r, err)
		}
		b.c.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: exprs})
	}
	return nil
}

// replaceSet creates the set if needed and swaps its elements, within the
// batch.
func (b *batch) replaceSet(s setSpec) error {
	set := &nftables.Set{Table: b.table, Name: s.Name}
	switch s.Kind {
	case setIfname:
		set.KeyType = nftables.TypeIFName
	case setAddr:
		set.KeyType, set.Interval = nftables.TypeIPAddr, true
		if s.V6 {
			set.KeyType = nftables.TypeIP6Addr
		}
	case setAddrProtoPort:
		set.KeyType, set.Interval, set.Concatenation = typeAddrProtoPort, true, true
		if s.V6 {
			set.KeyType = typeAddr6ProtoPort
		}
	}
	if err := b.c.AddSet(set, nil); err != nil {
		return fmt.Errorf("set %s: %w", s.Name, err)
	}
	b.c.FlushSet(set)
	var elems []nftables.SetElement
	switch s.Kind {
	case setIfname:
		for _, n := range s.Ifnames {
			elems = append(elems, nftables.SetElement{Key: ifnameBytes(n)})
		}
	case setAddr:
		for _, r := range s.Elems {
			if err := checkFamily(s, r); err != nil {
				return err
			}
			rg := rangeOf(r.Prefix)
			elems = append(elems, nftables.SetElement{Key: rg.lo.AsSlice()})
			if end := rg.hi.Next(); end.IsValid() {
				elems = append(elems, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
			}
		}
	case setAddrProtoPort:
		for _, r := range s.Elems {
			if err := checkFamily(s, r); err != nil {
				return err
			}
			rg := rangeOf(r.Prefix)
			elems = append(elems, nftables.SetElement{Key: appKey(rg.lo, r.Proto, r.Port), KeyEnd: appKey(rg.hi, r.Proto, r.Port)})
		}
	}
	// One message per chunk: a netlink attribute holds at most 64 KiB.
	for chunk := range slices.Chunk(elems, 512) {
		if err := b.c.SetAddElements(set, chunk); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	b.sets[s.Name] = set
	return nil
}

func protoNum(p string) byte {
	if p == "udp" {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

// appKey is one ipv4_addr (or ipv6_addr) . inet_proto . inet_service key,
// each field padded to 32-bit registers.
func appKey(addr netip.Addr, proto string, port uint16) []byte {
	k := addr.AsSlice()
	k = append(k, protoNum(proto), 0, 0, 0)
	k = binary.BigEndian.AppendUint16(k, port)
	return append(k, 0, 0)
}

func ifnameBytes(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

func (b *batch) lookup(name string, reg uint32, invert bool) (expr.Any, error) {
	set, ok := b.sets[name]
	if !ok {
		return nil, fmt.Errorf("set %s is not part of this batch", name)
	}
	return &expr.Lookup{SourceRegister: reg, SetName: set.Name, SetID: set.ID, Invert: invert}, nil
}

func ifMatch(key expr.MetaKey, name string) []expr.Any {
	op := expr.CmpOpEq
	if n, ok := strings.CutPrefix(name, "!"); ok {
		op, name = expr.CmpOpNeq, n
	}
	data := ifnameBytes(name)
	if p, ok := strings.CutSuffix(name, "*"); ok {
		data = []byte(p) // compare only the prefix's bytes
	}
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: data},
	}
}

// exprs renders one rule; it mirrors ruleSpec.String.
func (b *batch) exprs(r ruleSpec) ([]expr.Any, error) {
	var e []expr.Any
	if r.NFProtoIPv6 {
		e = append(e, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}})
	}
	if r.IIf != "" {
		e = append(e, ifMatch(expr.MetaKeyIIFNAME, r.IIf)...)
	}
	if r.OIf != "" {
		e = append(e, ifMatch(expr.MetaKeyOIFNAME, r.OIf)...)
	}
	if r.OIfSet != "" {
		l, err := b.lookup(r.OIfSet, 1, r.OIfSetNeg)
		if err != nil {
			return nil, err
		}
		e = append(e, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, l)
	}
	// The address fields of the header the rule reads: offset of saddr,
	// of daddr, and their length.
	nfproto, sOff, dOff, alen := byte(unix.NFPROTO_IPV4), uint32(12), uint32(16), uint32(4)
	if r.IP6 {
		nfproto, sOff, dOff, alen = unix.NFPROTO_IPV6, 8, 24, 16
	}
	if r.Saddr.IsValid() || r.DaddrSet != "" || r.DaddrPPSet != "" {
		e = append(e, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}})
	}
	if r.ICMPv6Type != 0 {
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{r.ICMPv6Type}})
	}
	if r.Saddr.IsValid() {
		if r.Saddr.Addr().Is6() != r.IP6 {
			return nil, fmt.Errorf("source %s does not match the rule's address family", r.Saddr)
		}
		op := expr.CmpOpEq
		if r.SaddrNeg {
			op = expr.CmpOpNeq
		}
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: sOff, Len: alen})
		if r.Saddr.Bits() < r.Saddr.Addr().BitLen() {
			mb := make([]byte, alen)
			for i := range r.Saddr.Bits() {
				mb[i/8] |= 0x80 >> (i % 8)
			}
			e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: alen, Mask: mb, Xor: make([]byte, alen)})
		}
		e = append(e, &expr.Cmp{Op: op, Register: 1, Data: r.Saddr.Masked().Addr().AsSlice()})
	}
	if r.DaddrSet != "" {
		l, err := b.lookup(r.DaddrSet, 1, false)
		if err != nil {
			return nil, err
		}
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: dOff, Len: alen}, l)
	}
	if r.DaddrPPSet != "" {
		l, err := b.lookup(r.DaddrPPSet, 1, false)
		if err != nil {
			return nil, err
		}
		// Protocol and port go in the 32-bit registers right after the
		// address loaded into register 1 (NFT_REG32_00 is 8), as nft lays
		// out a concatenation: 9 and 10 after an IPv4 address, 12 and 13
		// after an IPv6 one.
		next := 8 + alen/4
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: dOff, Len: alen},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: next},
			&expr.Payload{DestRegister: next + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			l)
	}
	if len(r.CtState) > 0 {
		var bits uint32
		for _, s := range r.CtState {
			switch s {
			case "established":
				bits |= expr.CtStateBitESTABLISHED
			case "related":
				bits |= expr.CtStateBitRELATED
			case "new":
				bits |= expr.CtStateBitNEW
			default:
				return nil, fmt.Errorf("unknown ct state %q", s)
			}
		}
		e = append(e,
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binary.NativeEndian.AppendUint32(nil, bits), Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}})
	}
	if r.Counter != "" {
		e = append(e, &expr.Objref{Type: int(nftables.ObjTypeCounter), Name: r.Counter})
	}
	switch v := r.Verdict; {
	case v == "":
	case v == "accept":
		e = append(e, &expr.Verdict{Kind: expr.VerdictAccept})
	case v == "drop":
		e = append(e, &expr.Verdict{Kind: expr.VerdictDrop})
	case v == "masquerade":
		e = append(e, &expr.Masq{})
	case strings.HasPrefix(v, "jump "):
		e = append(e, &expr.Verdict{Kind: expr.VerdictJump, Chain: strings.TrimPrefix(v, "jump ")})
	default:
		return nil, fmt.Errorf("unknown verdict %q", v)
	}
	return e, nil
}

// hostBatch fills a batch for the host table: the base chains for all
// profiles, the full objects of the profiles in full, and the removal of
// the objects of profiles in gone.
func hostBatch(c *nftables.Conn, pl pools, all []profileRef, full map[string]profileRules, gone []string, existing tableObjects) error {
	b := newBatch(c)
	prio := nftables.ChainPriorityFilter
	srcnat := nftables.ChainPriorityNATSource
	base := map[string]*nftables.Chain{
		chainForward:     b.baseChain(chainForward, nftables.ChainHookForward, prio, nftables.ChainTypeFilter),
		chainInput:       b.baseChain(chainInput, nftables.ChainHookInput, prio, nftables.ChainTypeFilter),
		chainOutput:      b.baseChain(chainOutput, nftables.ChainHookOutput, prio, nftables.ChainTypeFilter),
		chainPostrouting: b.baseChain(chainPostrouting, nftables.ChainHookPostrouting, srcnat, nftables.ChainTypeNAT),
	}
	// Every known profile's chains exist before the jumps that name them; a
	// chain created empty here falls through to the fail-closed drops.
	for _, p := range all {
		b.chain(objName(p.Name, "out"))
		b.chain(objName(p.Name, "in"))
	}
	// Counters first: AddObj leaves an existing counter's values alone.
	for name, pr := range full {
		for _, cn := range pr.Counters {
			b.c.AddObj(&nftables.CounterObj{Table: b.table, Name: cn})
		}
		for _, s := range pr.Sets {
			if err := b.replaceSet(s); err != nil {
				return fmt.Errorf("profile %s: %w", name, err)
			}
		}
		if err := b.replaceRules(b.chain(objName(name, "out")), pr.Out); err != nil {
			return fmt.Errorf("profile %s: %w", name, err)
		}
		if err := b.replaceRules(b.chain(objName(name, "in")), pr.In); err != nil {
			return fmt.Errorf("profile %s: %w", name, err)
		}
	}
	for chain, rules := range baseRules(all, pl) {
		if err := b.replaceRules(base[chain], rules); err != nil {
			return err
		}
	}
	// Removal after the base chains dropped their jumps into these chains.
	for _, p := range gone {
		for _, ch := range existing.chains[p] {
			c := &nftables.Chain{Name: ch, Table: b.table}
			b.c.FlushChain(c)
			b.c.DelChain(c)
		}
		for _, s := range existing.sets[p] {
			b.c.DelSet(&nftables.Set{Table: b.table, Name: s})
		}
		for _, o := range existing.counters[p] {
			b.c.DeleteObject(&nftables.CounterObj{Table: b.table, Name: o})
		}
	}
	return nil
}

// innerBatch fills a batch for the table inside a profile's namespace.
// Where the mode wants no rules there (direct), it wants no base chains
// either: an empty chain on the output and input hooks would still be
// entered by every packet work sends and receives.
func innerBatch(c *nftables.Conn, pr profileRules) error {
	b := newBatch(c)
	for _, s := range pr.InnerSets {
		if err := b.replaceSet(s); err != nil {
			return err
		}
	}
	if len(pr.InnerOut) == 0 && len(pr.InnerIn) == 0 {
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
		if err != nil {
			return fmt.Errorf("list nftables chains: %w", err)
		}
		for _, ch := range chains {
			if ch.Table.Name == tableName && (ch.Name == "output" || ch.Name == "input") {
				ch := &nftables.Chain{Name: ch.Name, Table: b.table}
				b.c.FlushChain(ch)
				b.c.DelChain(ch)
			}
		}
		return nil
	}
	prio := nftables.ChainPriorityFilter
	out := b.baseChain("output", nftables.ChainHookOutput, prio, nftables.ChainTypeFilter)
	in := b.baseChain("input", nftables.ChainHookInput, prio, nftables.ChainTypeFilter)
	if err := b.replaceRules(out, pr.InnerOut); err != nil {
		return err
	}
	return b.replaceRules(in, pr.InnerIn)
}

// tableObjects lists the per-profile objects found in the host table, by
// profile name.
type tableObjects struct {
	chains, sets, counters map[string][]string
}

func (t tableObjects) profiles() map[string]bool {
	out := map[string]bool{}
	for _, m := range []map[string][]string{t.chains, t.sets, t.counters} {
		for p := range m {
			out[p] = true
		}
	}
	return out
}

func listTableObjects(c *nftables.Conn) (tableObjects, error) {
	t := tableObjects{chains: map[string][]string{}, sets: map[string][]string{}, counters: map[string][]string{}}
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: tableName}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return t, fmt.Errorf("list nftables tables: %w", err)
	}
	found := false
	for _, tb := range tables {
		found = found || tb.Name == tableName
	}
	if !found {
		return t, nil
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return t, fmt.Errorf("list nftables chains: %w", err)
	}
	for _, ch := range chains {
		if p, ok := profileOfObj(ch.Name); ok && ch.Table.Name == tableName {
			t.chains[p] = append(t.chains[p], ch.Name)
		}
	}
	sets, err := c.GetSets(table)
	if err != nil {
		return t, fmt.Errorf("list nftables sets: %w", err)
	}
	for _, s := range sets {
		if p, ok := profileOfObj(s.Name); ok {
			t.sets[p] = append(t.sets[p], s.Name)
		}
	}
	objs, err := c.GetNamedObjects(table)
	if err != nil {
		return t, fmt.Errorf("list nftables objects: %w", err)
	}
	for _, o := range objs {
		if no, ok := o.(*nftables.NamedObj); ok && no.Type == nftables.ObjTypeCounter {
			if p, ok := profileOfObj(no.Name); ok {
				t.counters[p] = append(t.counters[p], no.Name)
			}
		}
	}
	return t, nil
}

// readCounters returns the named counters of the host table.
func readCounters(c *nftables.Conn) (map[string]*expr.Counter, error) {
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: tableName}
	objs, err := c.GetNamedObjects(table)
	if err != nil {
		return nil, fmt.Errorf("read nftables counters: %w", err)
	}
	out := map[string]*expr.Counter{}
	for _, o := range objs {
		if no, ok := o.(*nftables.NamedObj); ok {
			if ctr, ok := no.Obj.(*expr.Counter); ok {
				out[no.Name] = ctr
			}
		}
	}
	return out, nil
}
