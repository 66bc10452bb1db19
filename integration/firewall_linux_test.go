package integration

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	vns "github.com/vishvananda/netns"

	"github.com/workcell/workcell/netns"
)

// The network tests run the daemon once per firewall backend. A firewall
// is what those tests need to look at and break in the kernel's state of
// one backend: every helper here works in the namespace it is given (the
// daemon's own, see newDaemon), never in the machine's.
type firewall struct {
	backend netns.Backend
	// probe says whether the kernel gives this backend; a subtest whose
	// backend is missing fails naming it.
	probe func(context.Context) error
	// objects lists what workcell made in the namespace, one line each;
	// ours says whether a line belongs to the given profile.
	objects func(t *testing.T, ns string) []string
	ours    func(object, profile string) bool
	// wipe deletes everything workcell made in the namespace, as an admin
	// or a restarting netd would, and fails if there was nothing to wipe.
	wipe func(t *testing.T, ns string)
}

var firewalls = []firewall{
	{
		backend: netns.BackendNFTables,
		probe:   netns.ProbeNFTables,
		objects: nftObjects,
		ours:    func(o, profile string) bool { return strings.Contains(o, profile+":") },
		wipe:    flushWorkcellTable,
	},
	{
		backend: netns.BackendIPTables,
		probe:   netns.ProbeIPTablesLegacy,
		objects: xtObjects,
		ours:    func(o, profile string) bool { return strings.Contains(o, "wc_"+profile+"_") },
		wipe:    xtWipe,
	},
}

// eachFirewall runs fn as one subtest per backend; a backend the kernel
// lacks fails its subtest (never a silent skip).
func eachFirewall(t *testing.T, fn func(t *testing.T, fw firewall)) {
	for _, fw := range firewalls {
		t.Run(string(fw.backend), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := fw.probe(ctx); err != nil {
				t.Fatalf("this test needs the %s backend, which this kernel or system lacks: %v", fw.backend, err)
			}
			fn(t, fw)
		})
	}
}

// others are the backends other than fw that this kernel has: the daemon
// must have left nothing in them. One the kernel lacks cannot hold rules.
func (fw firewall) others(t *testing.T) []firewall {
	t.Helper()
	var out []firewall
	for _, o := range firewalls {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := o.probe(ctx)
		cancel()
		if o.backend != fw.backend && err == nil {
			out = append(out, o)
		}
	}
	return out
}

// nftObjects lists the tables, chains and sets in a namespace.
func nftObjects(t *testing.T, ns string) []string {
	t.Helper()
	h, err := vns.GetFromPath(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatalf("list nftables tables: %v", err)
	}
	var out []string
	for _, tb := range tables {
		out = append(out, "table "+tb.Name)
		sets, _ := c.GetSets(tb)
		for _, s := range sets {
			out = append(out, "set "+s.Name)
		}
	}
	chains, _ := c.ListChains()
	for _, ch := range chains {
		out = append(out, "chain "+ch.Name)
	}
	return out
}

// flushWorkcellTable deletes the nftables table the daemon keeps its rules
// in; a missing table fails the flush.
func flushWorkcellTable(t *testing.T, ns string) {
	t.Helper()
	h, err := vns.GetFromPath(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "workcell"})
	if err := c.Flush(); err != nil {
		t.Fatalf("delete table workcell: %v", err)
	}
}

// xtFamilies are the iptables-legacy programs of both address families.
var xtFamilies = []struct{ name, save, restore string }{
	{"IPv4", "iptables-legacy-save", "iptables-legacy-restore"},
	{"IPv6", "ip6tables-legacy-save", "ip6tables-legacy-restore"},
}

// xtJump matches a jump or goto into one of our chains (netns names every
// chain it makes wc_...).
var xtJump = regexp.MustCompile(`(^|\s)-[jg] wc_\S+`)

// xtRunIn runs an iptables-legacy program inside the namespace at ns,
// with stdin when it is not empty.
func xtRunIn(t *testing.T, ns, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + ns, "--"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s in %s: %v: %s\ninput:\n%s", strings.Join(args, " "), ns, err, strings.TrimSpace(errb.String()), stdin)
	}
	return out.String()
}

// xtSaved is one family's iptables-legacy-save output, per table: its
// chain names and its "-A ..." lines.
type xtSaved map[string]*struct {
	chains []string
	rules  []string
}

func xtSave(t *testing.T, ns, save string) (xtSaved, []string) {
	t.Helper()
	out := xtRunIn(t, ns, "", save)
	tables := xtSaved{}
	var order []string
	var cur string
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			cur = line[1:]
			tables[cur] = &struct {
				chains []string
				rules  []string
			}{}
			order = append(order, cur)
		case strings.HasPrefix(line, ":") && cur != "":
			name, _, _ := strings.Cut(line[1:], " ")
			tables[cur].chains = append(tables[cur].chains, name)
		case strings.HasPrefix(line, "-A ") && cur != "":
			tables[cur].rules = append(tables[cur].rules, line)
		}
	}
	return tables, order
}

// xtObjects lists, in every table of both families, each chain of ours
// and each rule of another chain that jumps into one of ours.
func xtObjects(t *testing.T, ns string) []string {
	t.Helper()
	var out []string
	for _, f := range xtFamilies {
		tables, order := xtSave(t, ns, f.save)
		for _, name := range order {
			tb := tables[name]
			for _, c := range tb.chains {
				if strings.HasPrefix(c, "wc_") {
					out = append(out, fmt.Sprintf("%s %s chain %s", f.name, name, c))
				}
			}
			for _, r := range tb.rules {
				if !strings.HasPrefix(r, "-A wc_") && xtJump.MatchString(r) {
					out = append(out, fmt.Sprintf("%s %s jump %s", f.name, name, r))
				}
			}
		}
	}
	return out
}

// xtWipe deletes, in every table of both families, the jumps into our
// chains and then the chains, in one iptables-legacy-restore run per
// family that leaves every other chain alone (--noflush).
func xtWipe(t *testing.T, ns string) {
	t.Helper()
	wiped := 0
	for _, f := range xtFamilies {
		tables, order := xtSave(t, ns, f.save)
		var sb strings.Builder
		for _, name := range order {
			tb := tables[name]
			var ours []string
			for _, c := range tb.chains {
				if strings.HasPrefix(c, "wc_") {
					ours = append(ours, c)
				}
			}
			var jumps []string
			for _, r := range tb.rules {
				if !strings.HasPrefix(r, "-A wc_") && xtJump.MatchString(r) {
					jumps = append(jumps, "-D "+strings.TrimPrefix(r, "-A "))
				}
			}
			if len(ours) == 0 && len(jumps) == 0 {
				continue
			}
			// A chain is deleted only once nothing refers to it: the
			// jumps go first, then every chain of ours is emptied (they
			// jump into each other), then deleted.
			fmt.Fprintf(&sb, "*%s\n", name)
			for _, j := range jumps {
				sb.WriteString(j + "\n")
			}
			for _, c := range ours {
				sb.WriteString("-F " + c + "\n")
			}
			for _, c := range ours {
				sb.WriteString("-X " + c + "\n")
			}
			sb.WriteString("COMMIT\n")
			wiped += len(ours) + len(jumps)
		}
		if sb.Len() > 0 {
			xtRunIn(t, ns, sb.String(), f.restore, "-w", "--noflush")
		}
	}
	if wiped == 0 {
		t.Fatalf("no iptables-legacy chain of workcell's in %s to wipe", ns)
	}
	if left := xtObjects(t, ns); len(left) != 0 {
		t.Fatalf("wiping workcell's iptables-legacy chains in %s left %v", ns, left)
	}
}
