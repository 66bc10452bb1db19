//go:build linux && !amd64 && !arm64

package binder

import (
	"fmt"
	"runtime"
)

// HelperSandbox is what node helpers run under (helpersandbox_linux.go);
// only amd64 and arm64 have the seccomp filter it needs.
type HelperSandbox struct {
	UID       int    `json:"uid"`
	GID       int    `json:"gid"`
	NodeDir   string `json:"-"`
	Cgroup    string `json:"-"`
	MemoryMax int64  `json:"-"`
	PidsMax   int64  `json:"-"`
}

var errNoSandbox = fmt.Errorf("binder: no node helper sandbox for %s", runtime.GOARCH)

// Validate refuses: there is no sandbox here.
func (s HelperSandbox) Validate() error { return errNoSandbox }

func enterSandbox(HelperSpec) error                    { return errNoSandbox }
func installSeccomp() error                            { return errNoSandbox }
func setupHelperCgroup(*HelperSandbox) (string, error) { return "", errNoSandbox }

// Cgroup2Mount: none here.
func Cgroup2Mount() string         { return "" }
func joinCgroup(string, int) error { return errNoSandbox }

func helperDevice(HelperSandbox, string, string) (string, error) { return "", errNoSandbox }

// RemoveHelperNodes: nothing to remove here.
func RemoveHelperNodes(string) error { return nil }

// RemoveHelperCgroup: nothing to remove here.
func RemoveHelperCgroup(string) error { return nil }

const (
	helperStageEnv = "WORKCELL_BINDER_NODE_STAGE"
	helperSpecEnv  = "WORKCELL_BINDER_NODE_SPEC"
	stageOpen      = "open"
	stageServe     = "serve"
)
