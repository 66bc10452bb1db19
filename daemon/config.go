package daemon

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Config is the daemon's configuration, parsed at the edge (flags and the
// optional config file) into this plain struct. Defaults live in
// DefaultConfig and nowhere else.
type Config struct {
	StateDir string `json:"state_dir"`
	RunDir   string `json:"run_dir"`
	// Socket defaults to RunDir/workcelld.sock.
	Socket string `json:"socket"`
	// OwnerUID is the employee's uid; -1 means none.
	OwnerUID int `json:"owner_uid"`
	// SystemUID is an extra uid with full rights (the OEM's system UI);
	// -1 means none.
	SystemUID int `json:"system_uid"`
	// StopOnExit stops every profile before the daemon exits (shutdown).
	StopOnExit bool   `json:"stop_on_exit"`
	LogLevel   string `json:"log_level"`
	// StopTimeout is how long a profile's init has after SIGTERM.
	StopTimeout Duration `json:"stop_timeout"`
	// LogMaxBytes caps a profile's console log; the older half is kept in
	// console.log.1.
	LogMaxBytes int64 `json:"log_max_bytes"`
	// NetPool is the IPv4 pool the profiles' subnets come from; empty
	// means netns.DefaultPool (10.231.0.0/16).
	NetPool string `json:"net_pool"`
	// NetPool6 is the IPv6 pool (a ULA of /63 or larger) whose /64s go to
	// the profiles; empty means netns.DefaultPool6 (fd77:6f72:6b00::/48),
	// "off" gives profiles no IPv6.
	NetPool6 string `json:"net_pool6"`
	// NetResolvConf is the host's resolver file, where the profiles'
	// default upstream resolvers come from; empty means /etc/resolv.conf.
	NetResolvConf string `json:"net_resolv_conf"`
	// CgroupParent is the cgroup under which profiles are placed.
	CgroupParent string `json:"cgroup_parent"`
	// Standby keeps a stopped, unlocked profile's container prepared
	// (its init waits before the user's process), so start takes
	// milliseconds; it costs one idle process of about 2 MiB.
	Standby bool `json:"standby"`
	// StoreImage, when set, is an ext4 image (made sparse with -O encrypt
	// if missing) loop-mounted at StateDir/store to hold the profiles'
	// encrypted data, for hosts whose filesystem cannot encrypt.
	StoreImage string `json:"store_image"`
	// StoreSize is the image's size in bytes; an existing image must have it.
	StoreSize int64 `json:"store_size"`
	// InsecureUnencryptedStorage keeps profile data in plain folders.
	InsecureUnencryptedStorage bool `json:"insecure_unencrypted_storage"`
	// BinderDevices are devices of a `binder_linux devices=` list that
	// profiles may get as their binder context (one profile each, first
	// free first), where the kernel has no binderfs; empty means none.
	BinderDevices []string `json:"binder_devices"`
	// BinderHostDevice is the host's own binder context, where the
	// services a profile's binder policy allows live.
	BinderHostDevice string `json:"binder_host_device"`
	// BinderRelease is the Android release whose binder wire format the
	// contexts speak: android10, android11, android12, android13 or android14.
	BinderRelease string `json:"binder_release"`
	// BinderAuditAllowed writes an audit record of every allowed binder
	// call too, not only of the denied ones.
	BinderAuditAllowed bool `json:"binder_audit_allowed"`
	// SELinuxLabel is the SELinux context the profiles' processes run in
	// (e.g. "u:r:workcell_app:s0" in the OEM's policy), SELinuxMountLabel
	// the context of their mounts, AppArmorProfile the AppArmor profile
	// they run under; empty means none. A bundle cannot set its own.
	SELinuxLabel      string `json:"selinux_label"`
	SELinuxMountLabel string `json:"selinux_mount_label"`
	AppArmorProfile   string `json:"apparmor_profile"`

	// The control socket under abuse (server_config.go).
	Server ServerLimits `json:"server"`
	// StopTimeoutMax is the longest grace a stop may ask for (timeout_ms).
	StopTimeoutMax Duration `json:"stop_timeout_max"`
	// Passphrase throttles wrong passphrases (throttle.go).
	Passphrase PassphraseThrottle `json:"passphrase"`

	BinderSettings
	// UserNS is "auto" (each profile in its own user namespace where the
	// kernel has them) or "off" (work root is host root: for comparison
	// and for kernels whose user namespaces misbehave).
	UserNS string `json:"userns"`
	// IDBase is where the profiles' host id ranges start; each profile
	// holds IDRangeSize ids, at most IDRanges profiles at once.
	IDBase   uint32 `json:"id_base"`
	IDRanges uint32 `json:"id_ranges"`

	// FscryptContents is the encryption of new profiles' data: "auto"
	// (Adiantum where the CPU has no AES instructions, as Android does;
	// else AES-256-XTS), "aes" or "adiantum". A profile keeps its mode.
	FscryptContents string `json:"fscrypt_contents"`
	// DNS are the resolvers profiles use when the host has no resolv.conf
	// (Android: DNS lives in netd) and its net.dns* properties are empty;
	// loopback addresses are refused (the phone's own services).
	DNS []string `json:"dns"`
	// PIDNamespace is "auto" (each profile in its own pid namespace where
	// the kernel has them) or "off" (the host's, with a hidepid procfs:
	// what kernels without pid namespaces get, forced for tests).
	PIDNamespace string `json:"pid_namespace"`
	// Firewall is how profile networks' rules reach the kernel: "auto"
	// (nftables where the kernel has nf_tables, else iptables-legacy, as
	// on GKI phones), "nftables" or "iptables-legacy".
	Firewall string `json:"firewall"`
}

// Duration is a time.Duration written as "10s" in the config file.
type Duration time.Duration

// UnmarshalJSON reads a duration such as "1.5s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration such as \"10s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as text.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// DefaultConfig returns the defaults of a Linux phone.
func DefaultConfig() Config {
	return Config{
		StateDir:     "/var/lib/workcell",
		RunDir:       "/run/workcell",
		OwnerUID:     -1,
		SystemUID:    -1,
		LogLevel:     "info",
		StopTimeout:  Duration(10 * time.Second),
		LogMaxBytes:  1 << 20,
		CgroupParent: "/workcell",
		Standby:      true,

		BinderHostDevice: "/dev/binder",
		BinderRelease:    "android14",
		BinderSettings:   defaultBinderSettings(),

		Server: ServerLimits{
			ReadTimeout:       Duration(30 * time.Second),
			IdleTimeout:       Duration(60 * time.Second),
			WriteStallTimeout: Duration(30 * time.Second),
			ConnMax:           64,
			ConnMaxAdmin:      32,
			ConnMaxPerUID:     16,
			ConnMaxStranger:   8,
			StrangerTimeout:   Duration(2 * time.Second),
		},
		StopTimeoutMax: Duration(5 * time.Minute),
		// Android's Gatekeeper: five free tries, then 30 s, doubling.
		Passphrase: PassphraseThrottle{FreeTries: 5, Backoff: Duration(30 * time.Second), BackoffMax: Duration(24 * time.Hour)},

		UserNS:   "auto",
		IDBase:   DefaultIDBase,
		IDRanges: DefaultIDRanges,

		FscryptContents: "auto",
		PIDNamespace:    "auto",
		Firewall:        "auto",
	}
}

// LoadConfigFile reads a JSON config file over base. Unknown fields are
// errors naming the file.
func LoadConfigFile(path string, base Config) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return base, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	cfg := base
	if err := dec.Decode(&cfg); err != nil {
		return base, fmt.Errorf("config file %s: %w", path, err)
	}
	return cfg, nil
}

// Validate checks the configuration and fills derived defaults.
func (c *Config) Validate() error {
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("state_dir %q: must be an absolute path", c.StateDir)
	}
	if c.RunDir == "" || !filepath.IsAbs(c.RunDir) {
		return fmt.Errorf("run_dir %q: must be an absolute path", c.RunDir)
	}
	if c.Socket == "" {
		c.Socket = filepath.Join(c.RunDir, "workcelld.sock")
	}
	if !filepath.IsAbs(c.Socket) {
		return fmt.Errorf("socket %q: must be an absolute path", c.Socket)
	}
	if c.OwnerUID < -1 {
		return fmt.Errorf("owner_uid %d: must be a uid or -1", c.OwnerUID)
	}
	if c.SystemUID < -1 {
		return fmt.Errorf("system_uid %d: must be a uid or -1", c.SystemUID)
	}
	if c.StopTimeout < 0 {
		return fmt.Errorf("stop_timeout %s: must not be negative", time.Duration(c.StopTimeout))
	}
	if c.LogMaxBytes < 4096 {
		return fmt.Errorf("log_max_bytes %d: must be at least 4096", c.LogMaxBytes)
	}
	if c.NetPool != "" {
		if p, err := netip.ParsePrefix(c.NetPool); err != nil || !p.Addr().Is4() || p.Masked() != p {
			return fmt.Errorf("net_pool %q: want an IPv4 network such as 10.231.0.0/16", c.NetPool)
		}
	}
	if c.NetPool6 != "" && c.NetPool6 != "off" {
		if p, err := netip.ParsePrefix(c.NetPool6); err != nil || !p.Addr().Is6() || p.Masked() != p || p.Bits() > 63 {
			return fmt.Errorf("net_pool6 %q: want an IPv6 network of /63 or larger such as fd77:6f72:6b00::/48, or \"off\"", c.NetPool6)
		}
	}
	if c.NetResolvConf != "" && !filepath.IsAbs(c.NetResolvConf) {
		return fmt.Errorf("net_resolv_conf %q: must be an absolute path", c.NetResolvConf)
	}
	if c.CgroupParent == "" || c.CgroupParent[0] != '/' {
		return fmt.Errorf("cgroup_parent %q: must start with /", c.CgroupParent)
	}
	if err := c.validatePlatform(); err != nil {
		return err
	}
	if err := c.validateStorage(); err != nil {
		return err
	}
	if err := c.validateLabels(); err != nil {
		return err
	}
	if err := c.validateServer(); err != nil {
		return err
	}
	if err := c.validateIdentity(); err != nil {
		return err
	}
	if err := c.validateFirewall(); err != nil {
		return err
	}
	return c.validateBinder()
}

// validateLabels catches a label mangled on its way into the config: an
// SELinux context has at least user:role:type, and neither kind of label
// has spaces or control characters.
func (c *Config) validateLabels() error {
	for _, l := range []struct{ field, v string }{
		{"selinux_label", c.SELinuxLabel}, {"selinux_mount_label", c.SELinuxMountLabel}, {"apparmor_profile", c.AppArmorProfile},
	} {
		if l.v == "" {
			continue
		}
		if strings.ContainsFunc(l.v, func(r rune) bool { return r <= ' ' || r == 0x7f }) || len(l.v) > 4096 {
			return fmt.Errorf("%s %q: must be a label without spaces or control characters", l.field, l.v)
		}
		if l.field != "apparmor_profile" && strings.Count(l.v, ":") < 2 {
			return fmt.Errorf("%s %q: want an SELinux context such as u:r:workcell_app:s0", l.field, l.v)
		}
	}
	return nil
}

// validateFirewall checks the firewall key ("" counts as "auto").
func (c *Config) validateFirewall() error {
	switch c.Firewall {
	case "":
		c.Firewall = "auto"
	case "auto", "nftables", "iptables-legacy":
	default:
		return fmt.Errorf("firewall %q: want \"auto\", \"nftables\" or \"iptables-legacy\"", c.Firewall)
	}
	return nil
}
