package vm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// ErrMissing is wrapped by every error that means a tool, a package or the
// kernel could not be had on this machine; hack/vm-deps installs the tools.
var ErrMissing = errors.New("missing (run hack/vm-deps as root)")

// MetaPackage is the Debian package whose dependency names the current
// kernel image package.
const MetaPackage = "linux-image-amd64"

// CacheDir is where downloaded and unpacked kernels are kept between runs:
// $WORKCELL_VM_CACHE, else $XDG_CACHE_HOME/workcell-vm, else
// /var/cache/workcell-vm.
func CacheDir() string {
	if d := os.Getenv("WORKCELL_VM_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "workcell-vm")
	}
	return "/var/cache/workcell-vm"
}

// Kernel is an unpacked Debian kernel image package.
type Kernel struct {
	Package    string // e.g. linux-image-6.1.0-56-amd64
	Deb        string // the cached .deb
	Release    string // e.g. 6.1.0-56-amd64, as in lib/modules/<Release>
	Vmlinuz    string // boot/vmlinuz-<Release>
	ModulesDir string // lib/modules/<Release>; "" for a kernel without modules
	// Config is the kernel's .config, when the harness built it
	// (BuildGKIKernel); BuildSeconds that build's make time.
	Config       string
	BuildSeconds int
}

// FetchKernel resolves the current kernel image package through
// MetaPackage, downloads it into cacheDir unless a .deb of that package is
// already there, unpacks it once and returns where its parts are.
func FetchKernel(ctx context.Context, cacheDir string, log *slog.Logger) (*Kernel, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, tool := range []string{"apt-cache", "apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("vm: %s not found: %w", tool, ErrMissing)
		}
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("vm: kernel cache: %w", err)
	}
	pkg, err := resolveImagePackage(ctx)
	if err != nil {
		return nil, err
	}
	deb, err := cachedDeb(cacheDir, pkg)
	if err != nil {
		return nil, err
	}
	if deb == "" {
		log.Info("downloading the kernel package", "package", pkg, "cache", cacheDir)
		if deb, err = download(ctx, cacheDir, pkg); err != nil {
			return nil, err
		}
	}
	root, err := unpack(ctx, deb)
	if err != nil {
		return nil, err
	}
	k, err := kernelIn(root)
	if err != nil {
		return nil, fmt.Errorf("vm: %s: %w", deb, err)
	}
	k.Package, k.Deb = pkg, deb
	return k, nil
}

// resolveImagePackage reads "Depends: linux-image-<abi>-amd64" from
// apt-cache depends. A glob handed to apt-get download would fetch every
// kernel the archive has.
func resolveImagePackage(ctx context.Context) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "apt-cache", "depends", MetaPackage)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("vm: apt-cache depends %s: %v: %s (run apt-get update): %w",
			MetaPackage, err, strings.TrimSpace(stderr.String()), ErrMissing)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		dep, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Depends: ")
		if ok && strings.HasPrefix(dep, "linux-image-") && !strings.HasPrefix(dep, "<") {
			return dep, nil
		}
	}
	return "", fmt.Errorf("vm: apt-cache depends %s names no linux-image-* package:\n%s", MetaPackage, out)
}

// cachedDeb returns the newest cached .deb of pkg, or "" when none is.
func cachedDeb(cacheDir, pkg string) (string, error) {
	debs, err := filepath.Glob(filepath.Join(cacheDir, pkg+"_*_amd64.deb"))
	if err != nil || len(debs) == 0 {
		return "", err
	}
	sort.Strings(debs)
	return debs[len(debs)-1], nil
}

// download fetches pkg into a private folder first, so that a download cut
// short never looks like a cached package.
func download(ctx context.Context, cacheDir, pkg string) (string, error) {
	tmp, err := os.MkdirTemp(cacheDir, ".download-")
	if err != nil {
		return "", fmt.Errorf("vm: %w", err)
	}
	defer os.RemoveAll(tmp)
	// The _apt user cannot write into a root-only folder; as root, skip
	// apt's privilege drop instead of widening the folder's mode.
	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", pkg)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("vm: apt-get download %s: %v: %s: %w", pkg, err, strings.TrimSpace(string(out)), ErrMissing)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, pkg+"_*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("vm: apt-get download %s left %d .deb files", pkg, len(debs))
	}
	dst := filepath.Join(cacheDir, filepath.Base(debs[0]))
	if err := os.Rename(debs[0], dst); err != nil {
		return "", fmt.Errorf("vm: %w", err)
	}
	return dst, nil
}

// unpack extracts deb next to itself once (a folder named after it) and
// returns that folder.
func unpack(ctx context.Context, deb string) (string, error) {
	root := strings.TrimSuffix(deb, ".deb")
	if _, err := os.Stat(root); err == nil {
		return root, nil
	}
	tmp, err := os.MkdirTemp(filepath.Dir(deb), ".unpack-")
	if err != nil {
		return "", fmt.Errorf("vm: %w", err)
	}
	defer os.RemoveAll(tmp)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("vm: dpkg-deb -x %s: %v: %s", deb, err, strings.TrimSpace(string(out)))
	}
	if err := os.Rename(tmp, root); err != nil {
		// A concurrent run may have won the rename: its copy is as good.
		if _, serr := os.Stat(root); serr != nil {
			return "", fmt.Errorf("vm: %w", err)
		}
	}
	return root, nil
}

func kernelIn(root string) (*Kernel, error) {
	vmlinuz, err := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if err != nil || len(vmlinuz) != 1 {
		return nil, fmt.Errorf("want one boot/vmlinuz-*, found %d", len(vmlinuz))
	}
	rel := strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-")
	for _, dir := range []string{"lib/modules", "usr/lib/modules"} {
		mods := filepath.Join(root, dir, rel)
		if _, err := os.Stat(mods); err == nil {
			return &Kernel{Release: rel, Vmlinuz: vmlinuz[0], ModulesDir: mods}, nil
		}
	}
	return nil, fmt.Errorf("no lib/modules/%s", rel)
}
