package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// DNS without /etc/resolv.conf. Android keeps DNS in netd: there is no
// resolv.conf, and the net.dns1.. properties are empty since Android 10.
// Then the profiles' upstream resolvers come from those properties where
// they are set, else from the config's dns list, else there are none (and
// the daemon says so): a profile's own network settings can still name
// resolvers. Loopback addresses are never used: on a phone they are the
// phone's own services, which work cannot reach (and must not).
const hostResolvFile = "host.conf"

// DNS sources, as doctor shows them.
const (
	dnsResolvConf = "resolv.conf"
	dnsProperties = "android-properties"
	dnsConfig     = "config"
	dnsNone       = "none"
)

// dnsEnv is what decideDNS reads: files under root, and Android's
// properties through getprop (nil where there is no getprop).
type dnsEnv struct {
	root    string
	getprop func(ctx context.Context, name string) (string, error)
}

// dnsDecision is where the profiles' default resolvers come from.
type dnsDecision struct {
	source string
	// path is the resolver file netns reads ("" means its default).
	path    string
	servers []netip.Addr
	why     string
	// warning is set when profiles get no resolver by default.
	warning string
}

// androidDNSProps are the properties older Android releases set.
var androidDNSProps = []string{"net.dns1", "net.dns2", "net.dns3", "net.dns4"}

// decideDNS picks the source of the profiles' default resolvers.
func decideDNS(ctx context.Context, env dnsEnv, cfg Config) dnsDecision {
	if cfg.NetResolvConf != "" {
		return dnsDecision{source: dnsResolvConf, path: cfg.NetResolvConf, why: "net_resolv_conf " + cfg.NetResolvConf + " in the config"}
	}
	if _, err := os.Stat(filepath.Join(env.root, resolvConfPath)); err == nil {
		return dnsDecision{source: dnsResolvConf, why: "the host's " + resolvConfPath}
	}
	var props []netip.Addr
	var skipped []string
	if env.getprop != nil {
		for _, p := range androidDNSProps {
			v, err := env.getprop(ctx, p)
			v = strings.TrimSpace(v)
			if err != nil || v == "" {
				continue
			}
			a, err := netip.ParseAddr(v)
			if err != nil || a.Zone() != "" || a.Unmap().IsLoopback() || a.IsUnspecified() {
				skipped = append(skipped, p+"="+v)
				continue
			}
			props = append(props, a.Unmap())
		}
	}
	note := ""
	if len(skipped) > 0 {
		note = " (ignored, the phone's own or no address: " + strings.Join(skipped, ", ") + ")"
	}
	switch {
	case len(props) > 0:
		return dnsDecision{source: dnsProperties, servers: props, why: "no " + resolvConfPath + "; Android's net.dns* properties" + note}
	case len(cfg.DNS) > 0:
		d := dnsDecision{source: dnsConfig, why: "no " + resolvConfPath + " and no net.dns* property; the config's dns" + note}
		for _, s := range cfg.DNS {
			if a, err := netip.ParseAddr(s); err == nil && !a.Unmap().IsLoopback() {
				d.servers = append(d.servers, a.Unmap())
			}
		}
		return d
	}
	return dnsDecision{source: dnsNone,
		why: "no " + resolvConfPath + ", no net.dns* property (Android 10 and later keep DNS in netd) and no dns in the config" + note,
		warning: "profiles get no DNS resolver by default: set \"dns\" in workcelld's config (e.g. [\"9.9.9.9\"]) " +
			"or give each profile resolvers (workcell net set --dns IP)"}
}

// getprop asks Android's property service through the getprop command.
func getprop(ctx context.Context, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "getprop", name).Output()
	return string(out), err
}

// hostDNSEnv is the real host: getprop only where there is one.
func hostDNSEnv() dnsEnv {
	env := dnsEnv{root: "/"}
	if _, err := exec.LookPath("getprop"); err == nil {
		env.getprop = getprop
	}
	return env
}

// hostResolvConf decides the DNS source once, at start, and returns the
// resolver file netns reads: the config's or the host's own, or one
// written under the run folder from the properties or the config ("" for
// netns's default, /etc/resolv.conf).
func (d *Daemon) hostResolvConf(ctx context.Context) (string, error) {
	return d.applyDNS(decideDNS(ctx, hostDNSEnv(), d.cfg))
}

// applyDNS records the decision, says it, and writes the resolver file it
// needs.
func (d *Daemon) applyDNS(dec dnsDecision) (string, error) {
	d.dns = dec
	log := d.log.With("concern", "network")
	if d.dns.warning != "" {
		log.Warn("no DNS resolvers for profiles", "why", d.dns.why, "fix", d.dns.warning)
	} else {
		log.Info("profile DNS source", "source", d.dns.source, "servers", d.dns.servers, "why", d.dns.why)
	}
	if d.dns.source == dnsResolvConf {
		return d.dns.path, nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# written by workcelld: %s\n", d.dns.why)
	for _, a := range d.dns.servers {
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	path := filepath.Join(d.cfg.RunDir, resolvDir, hostResolvFile)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("host resolvers: %w", err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", fmt.Errorf("host resolvers: %w", err)
	}
	d.dns.path = path
	return path, nil
}
