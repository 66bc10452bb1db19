package dist

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// platformTypes are the types and attributes of AOSP's platform policy
// (system/sepolicy public/) that workcelld.te names; anything else it
// names must be declared in workcelld.te itself.
var platformTypes = []string{
	// attributes
	"domain", "coredomain", "file_type", "data_file_type", "core_data_file_type", "system_file_type",
	"exec_type", "dev_type", "coredomain_socket", "mlstrustedobject",
	// domains
	"init", "kernel", "shell", "system_app", "platform_app", "servicemanager", "system_server",
	// files, devices, filesystems
	"system_file", "e2fs_exec", "device", "tun_device", "loop_device", "loop_control_device",
	"binder_device", "binderfs", "labeledfs", "tmpfs", "proc", "proc_net", "sysfs", "devpts",
	"cgroup", "cgroup_v2",
}

// teMacros are the AOSP macros (te_macros, global_macros) workcelld.te
// uses, each expanded by testdata/te_macros.m4 for the compile test.
var teMacros = []string{
	"init_daemon_domain", "unix_socket_connect", "domain_trans",
	"create_stream_socket_perms", "create_socket_perms", "create_socket_perms_no_ioctl",
	"create_dir_perms", "create_file_perms", "r_dir_perms", "r_file_perms", "rw_file_perms", "rx_file_perms",
	"global_capability_class_set", "global_capability2_class_set",
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return string(b)
}

// policyLines returns the statements of a .te file without comments.
func policyLines(te string) []string {
	var out []string
	for _, l := range strings.Split(te, "\n") {
		if i := strings.Index(l, "#"); i >= 0 {
			l = l[:i]
		}
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// declaredTypes returns the types workcelld.te declares.
func declaredTypes(t *testing.T, lines []string) map[string]bool {
	decl := map[string]bool{}
	re := regexp.MustCompile(`^type (\w+)[,;]`)
	for _, l := range lines {
		if m := re.FindStringSubmatch(l); m != nil {
			if decl[m[1]] {
				t.Errorf("workcelld.te declares %s twice", m[1])
			}
			decl[m[1]] = true
		}
	}
	return decl
}

var keywords = map[string]bool{
	"allow": true, "allowxperm": true, "type": true, "type_transition": true, "neverallow": true,
	"self": true, "ioctl": true, "dontaudit": true,
}

// usedTypes returns every identifier in a type or attribute position of
// the rules: the source and target lists before the colon, the type
// declarations' attributes, a type_transition's result and the macros'
// type arguments.
func usedTypes(lines []string) map[string]bool {
	used := map[string]bool{}
	word := regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)
	add := func(s string) {
		for _, w := range word.FindAllString(s, -1) {
			if !keywords[w] {
				used[w] = true
			}
		}
	}
	macro := regexp.MustCompile(`^(\w+)\((.*)\)$`)
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "type "):
			add(strings.TrimSuffix(strings.TrimPrefix(l, "type "), ";"))
		case strings.HasPrefix(l, "type_transition "):
			f := strings.Fields(strings.TrimSuffix(l, ";"))
			add(f[1] + " " + strings.Split(f[2], ":")[0] + " " + f[3])
		case strings.HasPrefix(l, "allow ") || strings.HasPrefix(l, "allowxperm "):
			head := l[:strings.Index(l, ":")]
			add(head[strings.Index(head, " "):])
		default:
			m := macro.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			args := strings.Split(m[2], ",")
			if m[1] == "unix_socket_connect" {
				// (client, socket name prefix, server): the socket type is
				// $2_socket.
				args[1] = strings.TrimSpace(args[1]) + "_socket"
			}
			if m[1] == "init_daemon_domain" {
				args = append(args, strings.TrimSpace(args[0])+"_exec")
			}
			add(strings.Join(args, " "))
		}
	}
	return used
}

func TestSepolicyNamesOnlyDeclaredTypes(t *testing.T) {
	lines := policyLines(read(t, "android/sepolicy/workcelld.te"))
	decl := declaredTypes(t, lines)
	known := map[string]bool{}
	for _, p := range platformTypes {
		if decl[p] {
			t.Errorf("workcelld.te declares %s, a platform type", p)
		}
		known[p] = true
	}
	for d := range decl {
		known[d] = true
	}
	var unknown []string
	for u := range usedTypes(lines) {
		if !known[u] {
			unknown = append(unknown, u)
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		t.Errorf("workcelld.te uses undeclared types: %v", unknown)
	}
	// Every macro the file calls is one the compile test can expand.
	macros := map[string]bool{}
	for _, m := range teMacros {
		macros[m] = true
	}
	call := regexp.MustCompile(`^(\w+)\(`)
	for _, l := range lines {
		if m := call.FindStringSubmatch(l); m != nil && !macros[m[1]] {
			t.Errorf("workcelld.te calls macro %s, which teMacros does not list", m[1])
		}
	}
	for _, d := range []string{"workcelld", "workcell_app", "workcelld_exec", "workcell_data_file", "workcelld_socket", "workcell_run_file", "workcell_binder_device"} {
		if !decl[d] {
			t.Errorf("workcelld.te does not declare %s", d)
		}
	}
}

// fileContexts maps each path regexp of file_contexts to its type.
func fileContexts(t *testing.T) map[string]string {
	fc := map[string]string{}
	for _, l := range policyLines(read(t, "android/sepolicy/file_contexts")) {
		f := strings.Fields(l)
		if len(f) != 2 {
			t.Fatalf("file_contexts line %q: want PATH CONTEXT", l)
		}
		ctx := strings.Split(f[1], ":")
		if len(ctx) != 4 || ctx[0] != "u" || ctx[1] != "object_r" || ctx[3] != "s0" {
			t.Fatalf("file_contexts line %q: want u:object_r:TYPE:s0", l)
		}
		fc[f[0]] = ctx[2]
	}
	return fc
}

// labelOf returns the type file_contexts gives path (the last match wins,
// as in AOSP when specificity ties: here no two entries overlap).
func labelOf(t *testing.T, fc map[string]string, path string) string {
	var got []string
	for re, typ := range fc {
		if regexp.MustCompile("^" + re + "$").MatchString(path) {
			got = append(got, typ)
		}
	}
	if len(got) != 1 {
		t.Errorf("file_contexts gives %s %d labels %v, want one", path, len(got), got)
		return ""
	}
	return got[0]
}

func TestRCMatchesSepolicy(t *testing.T) {
	rc := read(t, "android/workcelld.rc")
	lines := policyLines(read(t, "android/sepolicy/workcelld.te"))
	decl := declaredTypes(t, lines)
	fc := fileContexts(t)
	for re, typ := range fc {
		if !decl[typ] {
			t.Errorf("file_contexts labels %s %s, which workcelld.te does not declare", re, typ)
		}
	}

	svc := regexp.MustCompile(`(?m)^service workcelld (\S+)(.*)$`).FindStringSubmatch(rc)
	if svc == nil {
		t.Fatal("workcelld.rc: no service line")
	}
	if l := labelOf(t, fc, svc[1]); l != "workcelld_exec" {
		t.Errorf("the service's binary %s is labeled %q, want workcelld_exec (init_daemon_domain's entry point)", svc[1], l)
	}
	args := strings.Fields(svc[2])
	flag := func(name string) string {
		for i, a := range args {
			if a == name && i+1 < len(args) {
				return args[i+1]
			}
		}
		t.Fatalf("the service line has no %s", name)
		return ""
	}
	for _, c := range []struct{ flag, want string }{
		{"--state-dir", "workcell_data_file"}, {"--config", "workcell_data_file"}, {"--store-image", "workcell_data_file"},
		{"--run-dir", "workcell_run_file"}, {"--socket", "workcelld_socket"},
	} {
		p := flag(c.flag)
		if l := labelOf(t, fc, p); l != c.want {
			t.Errorf("%s %s is labeled %q, want %s", c.flag, p, l, c.want)
		}
	}
	// The folders init makes are the ones the daemon is pointed at.
	for _, dir := range []string{flag("--state-dir"), flag("--run-dir")} {
		if !regexp.MustCompile(`(?m)^\s+mkdir ` + regexp.QuoteMeta(dir) + ` 0700 root root$`).MatchString(rc) {
			t.Errorf("workcelld.rc does not mkdir %s 0700 root root", dir)
		}
	}
	sock := regexp.MustCompile(`(?m)^\s+socket (\S+) stream`).FindStringSubmatch(rc)
	if sock == nil || "/dev/socket/"+sock[1] != flag("--socket") {
		t.Errorf("socket line %v does not make --socket %s", sock, flag("--socket"))
	}

	seclabel := regexp.MustCompile(`(?m)^\s+seclabel u:r:(\w+):s0$`).FindStringSubmatch(rc)
	if seclabel == nil || !decl[seclabel[1]] {
		t.Errorf("seclabel %v: want u:r:DOMAIN:s0 with DOMAIN declared in workcelld.te", seclabel)
	}

	// The capabilities init leaves the daemon are the ones the policy
	// allows: one more in either place is a denial or a dead grant.
	capLine := regexp.MustCompile(`(?m)^\s+capabilities (.+)$`).FindStringSubmatch(rc)
	if capLine == nil {
		t.Fatal("workcelld.rc: no capabilities line")
	}
	var rcCaps []string
	for _, c := range strings.Fields(capLine[1]) {
		rcCaps = append(rcCaps, strings.ToLower(c))
	}
	teCap := regexp.MustCompile(`allow workcelld self:global_capability_class_set \{ ([^}]*) \};`).FindStringSubmatch(strings.Join(lines, "\n"))
	if teCap == nil {
		t.Fatal("workcelld.te: no `allow workcelld self:global_capability_class_set { ... };`")
	}
	teCaps := strings.Fields(teCap[1])
	sort.Strings(rcCaps)
	sort.Strings(teCaps)
	if strings.Join(rcCaps, " ") != strings.Join(teCaps, " ") {
		t.Errorf("capabilities differ:\n rc: %v\n te: %v", rcCaps, teCaps)
	}
}

func TestGenfsContextsMatchTheDaemonsDeviceNames(t *testing.T) {
	lines := policyLines(read(t, "android/sepolicy/genfs_contexts"))
	decl := declaredTypes(t, policyLines(read(t, "android/sepolicy/workcelld.te")))
	src := read(t, filepath.Join("..", "daemon", "binder_linux.go"))
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 4 || f[0] != "genfscon" || f[1] != "binder" {
			t.Fatalf("genfs_contexts line %q: want genfscon binder PREFIX CONTEXT", l)
		}
		typ := strings.Split(f[3], ":")[2]
		if !decl[typ] {
			t.Errorf("genfs_contexts labels %s, not declared in workcelld.te", typ)
		}
		// The daemon names its binderfs devices with this prefix.
		if !strings.Contains(src, "\""+strings.TrimPrefix(f[2], "/")+"\"") {
			t.Errorf("genfs prefix %s: daemon/binder_linux.go names no devices %q...", f[2], strings.TrimPrefix(f[2], "/"))
		}
	}
}

func TestOpenRCServiceParses(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("no sh to check dist/openrc/workcelld with: %v", err)
	}
	if out, err := exec.Command(sh, "-n", "openrc/workcelld").CombinedOutput(); err != nil {
		t.Fatalf("sh -n openrc/workcelld: %v\n%s", err, out)
	}
	rc := read(t, "openrc/workcelld")
	for _, want := range []string{"#!/sbin/openrc-run\n", "\ncommand=\"/usr/bin/workcelld\"\n", "\nsupervisor=\"supervise-daemon\"\n", "need localmount", "after net"} {
		if !strings.Contains(rc, want) {
			t.Errorf("openrc/workcelld lacks %q", want)
		}
	}
	// Stop behaves as the systemd unit's: SIGTERM to the daemon alone.
	unit := read(t, "systemd/workcelld.service")
	if !strings.Contains(unit, "KillMode=process") || !strings.Contains(rc, `retry="TERM/`) {
		t.Errorf("stop differs from the systemd unit's (KillMode=process, SIGTERM first)")
	}
}
