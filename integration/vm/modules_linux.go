package vm

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Module is a kernel module to load in the guest, with its parameters.
type Module struct {
	Name   string // as modprobe spells it: binder_linux, overlay, nf_tables
	Params []string
}

// BinderDevices are the binder contexts the guest's binder_linux creates:
// /dev/binder for the "host side" and /dev/workbinder for the profile.
var BinderDevices = []string{"binder", "workbinder"}

// DefaultModules are loaded by every guest, dependencies first: binder
// for the binder issue, overlay, veth and nf_tables (with NAT and
// masquerade) for the runtime's mounts and networks.
var DefaultModules = []Module{
	{Name: "binder_linux", Params: []string{"devices=" + strings.Join(BinderDevices, ",")}},
	{Name: "overlay"},
	{Name: "veth"},
	{Name: "tun"}, // vpn-lockdown: the profile's VPN client makes a tun device
	{Name: "nf_tables"},
	{Name: "nft_chain_nat"},
	{Name: "nft_masq"},
}

// loadable is one module file to put into the initramfs, in load order.
type loadable struct {
	name   string
	file   string // an uncompressed .ko on the host
	params []string
}

// moduleIndex maps module names ('-' spelled '_') to their files under
// modulesDir/kernel.
func moduleIndex(modulesDir string) (map[string]string, error) {
	idx := map[string]string{}
	err := filepath.WalkDir(filepath.Join(modulesDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		base := d.Name()
		i := strings.Index(base, ".ko")
		if i < 0 {
			return nil
		}
		idx[strings.ReplaceAll(base[:i], "-", "_")] = p
		return nil
	})
	return idx, err
}

// resolveModules orders mods after their dependencies and soft
// pre-dependencies (read from each module's .modinfo: the unpacked package
// has no modules.dep, depmod makes it at install time) and decompresses
// .ko.xz files into workDir, because busybox's insmod may lack xz support.
func resolveModules(k *Kernel, mods []Module, workDir string) ([]loadable, error) {
	idx, err := moduleIndex(k.ModulesDir)
	if err != nil {
		return nil, fmt.Errorf("vm: modules of %s: %w", k.Release, err)
	}
	var aliases map[string][]string // built on first need: it reads every module
	lookup := func(name string) (string, bool) {
		if _, ok := idx[name]; ok {
			return name, true
		}
		if aliases == nil {
			aliases = aliasIndex(idx, workDir)
		}
		cands := aliases[name]
		if len(cands) == 0 {
			return "", false
		}
		sort.Strings(cands)
		// The generic implementation loads on any CPU the guest emulates.
		for _, c := range cands {
			if strings.HasSuffix(c, "_generic") {
				return c, true
			}
		}
		return cands[0], true
	}
	var out []loadable
	done := map[string]bool{}
	var visit func(name string, params []string, soft bool, chain []string) error
	visit = func(name string, params []string, soft bool, chain []string) error {
		name, ok := lookup(strings.ReplaceAll(name, "-", "_"))
		switch {
		case !ok && soft:
			return nil
		case !ok:
			return fmt.Errorf("vm: kernel %s has no module %s (built in, or not shipped)", k.Release, name)
		case done[name] || slices.Contains(chain, name):
			return nil
		}
		file, err := uncompressed(idx[name], workDir)
		if err != nil {
			return err
		}
		info, err := modinfo(file)
		if err != nil {
			return err
		}
		for _, d := range info.softPre {
			if err := visit(d, nil, true, append(chain, name)); err != nil {
				return err
			}
		}
		for _, d := range info.depends {
			if err := visit(d, nil, false, append(chain, name)); err != nil {
				return err
			}
		}
		done[name] = true
		out = append(out, loadable{name: name, file: file, params: params})
		return nil
	}
	for _, m := range mods {
		if err := visit(m.Name, m.Params, false, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// aliasIndex maps each exact alias (crc32c, crypto-crc32c, ...) to the
// modules that declare it.
func aliasIndex(idx map[string]string, workDir string) map[string][]string {
	out := map[string][]string{}
	for name, src := range idx {
		file := src
		if !strings.HasSuffix(src, ".ko") {
			var err error
			if file, err = uncompressed(src, workDir); err != nil {
				continue
			}
		}
		info, err := modinfo(file)
		if err != nil {
			continue
		}
		for _, a := range info.aliases {
			if !strings.ContainsAny(a, "*?[:") {
				out[a] = append(out[a], name)
			}
		}
	}
	return out
}

func uncompressed(src, workDir string) (string, error) {
	var tool []string
	switch {
	case strings.HasSuffix(src, ".ko"):
		return src, nil
	case strings.HasSuffix(src, ".ko.xz"):
		tool = []string{"xz", "-dc"}
	case strings.HasSuffix(src, ".ko.zst"):
		tool = []string{"zstd", "-dc"}
	case strings.HasSuffix(src, ".ko.gz"):
		tool = []string{"gzip", "-dc"}
	default:
		return "", fmt.Errorf("vm: %s: unknown module format", src)
	}
	base := filepath.Base(src)
	dst := filepath.Join(workDir, base[:strings.Index(base, ".ko")+3])
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if _, err := exec.LookPath(tool[0]); err != nil {
		return "", fmt.Errorf("vm: %s needs %s: %w", src, tool[0], ErrMissing)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(tool[0], append(tool[1:], src)...)
	cmd.Stderr = &stderr
	data, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("vm: %s %s: %v: %s", tool[0], src, err, stderr.String())
	}
	return dst, os.WriteFile(dst, data, 0o644)
}

type moduleInfo struct {
	depends, softPre, aliases []string
}

// modinfo reads a module's .modinfo section: depends=a,b,
// softdep=pre: x y post: z, alias=...
func modinfo(file string) (moduleInfo, error) {
	var info moduleInfo
	f, err := elf.Open(file)
	if err != nil {
		return info, fmt.Errorf("vm: module %s: %w", file, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return info, fmt.Errorf("vm: module %s has no .modinfo", file)
	}
	data, err := sec.Data()
	if err != nil {
		return info, fmt.Errorf("vm: module %s: %w", file, err)
	}
	for _, kv := range strings.Split(string(data), "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "depends":
			if v != "" {
				info.depends = append(info.depends, strings.Split(v, ",")...)
			}
		case "alias":
			info.aliases = append(info.aliases, v)
		case "softdep":
			pre := false
			for _, w := range strings.Fields(v) {
				switch w {
				case "pre:":
					pre = true
				case "post:":
					pre = false
				default:
					if pre {
						info.softPre = append(info.softPre, w)
					}
				}
			}
		}
	}
	return info, nil
}
