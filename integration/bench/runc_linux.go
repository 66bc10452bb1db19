package main

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/workcell/workcell/sandbox"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Runc is the peer: Debian's runc on its own --root in the temp folder,
// its containers under the run's cgroup parent.
type Runc struct {
	Path, Root   string
	cgroupParent string
	dir          string
	n            int
	// errlog takes runc's stderr: a file, not a pipe, since `run -d`
	// hands its stdio to the container and a pipe would never close.
	errlog *os.File
}

func newRunc(path, dir, cgroupParent string) (*Runc, error) {
	r := &Runc{Path: path, Root: filepath.Join(dir, "runc"), cgroupParent: cgroupParent, dir: dir}
	if err := os.MkdirAll(r.Root, 0o700); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, "runc.stderr"))
	if err != nil {
		return nil, err
	}
	r.errlog = f
	return r, nil
}

// Version returns runc's first version line.
func (r *Runc) Version(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, r.Path, "--version").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return line
}

// Cmd runs `runc --root R args...` with stdin and stdout on /dev/null.
func (r *Runc) Cmd(ctx context.Context, args ...string) error {
	off, _ := r.errlog.Seek(0, io.SeekEnd)
	cmd := exec.CommandContext(ctx, r.Path, append([]string{"--root", r.Root}, args...)...)
	cmd.Stderr = r.errlog
	if err := cmd.Run(); err != nil {
		msg := make([]byte, 2048)
		n, _ := r.errlog.ReadAt(msg, off)
		return fmt.Errorf("runc %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(msg[:n])))
	}
	return nil
}

// NewBundle writes the config of a fresh container id made from a bundle
// of Bench.Bundle: the same config.json, the same rootfs (by absolute
// path), with the container's cgroup under the run's parent.
func (r *Runc) NewBundle(base, prefix string) (id, dir string, err error) {
	r.n++
	id = fmt.Sprintf("%s-%d", prefix, r.n)
	data, err := os.ReadFile(filepath.Join(base, "config.json"))
	if err != nil {
		return "", "", err
	}
	var raw specs.Spec
	if err := json.Unmarshal(data, &raw); err != nil {
		return "", "", fmt.Errorf("bundle %s: %w", base, err)
	}
	// The peer runs what workcelld runs: the same hardened spec (default
	// seccomp profile, capabilities, masked paths), so the two do the same
	// work.
	hs, err := sandbox.Harden(&raw, base, sandbox.HardenOptions{ID: id, Hostname: id, CgroupParent: r.cgroupParent})
	if err != nil {
		return "", "", fmt.Errorf("harden bundle %s for runc: %w", base, err)
	}
	spec := *hs
	if !filepath.IsAbs(spec.Root.Path) {
		spec.Root.Path = filepath.Join(base, spec.Root.Path)
	}
	spec.Linux.CgroupsPath = r.Cgroup(id)
	dir = filepath.Join(r.dir, "runc-bundles", id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	data, _ = json.Marshal(&spec)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		return "", "", err
	}
	return id, dir, nil
}

// Cgroup is the cgroup path of container id.
func (r *Runc) Cgroup(id string) string { return r.cgroupParent + "/runc-" + id }

// Run is `runc run -d` of a bundle made by NewBundle.
func (r *Runc) Run(ctx context.Context, id, dir string) error {
	return r.Cmd(ctx, "run", "-d", "--bundle", dir, id)
}

// Delete is `runc delete -f`, resuming a paused container first.
func (r *Runc) Delete(ctx context.Context, id string) error {
	_ = r.Cmd(ctx, "resume", id)
	if err := r.Cmd(ctx, "delete", "-f", id); err != nil {
		return err
	}
	return os.RemoveAll(filepath.Join(r.dir, "runc-bundles", id))
}

// deleteAll removes every container `runc list` still shows.
func (r *Runc) deleteAll(ctx context.Context) error {
	defer r.errlog.Close()
	out, err := exec.CommandContext(ctx, r.Path, "--root", r.Root, "list", "-q").Output()
	if err != nil {
		return fmt.Errorf("runc --root %s list: %w", r.Root, err)
	}
	var errs []string
	for _, id := range strings.Fields(string(out)) {
		if err := r.Delete(ctx, id); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if errs != nil {
		return fmt.Errorf("runc cleanup: %s", strings.Join(errs, "; "))
	}
	return nil
}
