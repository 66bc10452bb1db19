// Command workcellsm runs in the integration/vm guest as workcelld's binder
// side for the AOSP interop proof (aosp_workcell_linux_test.go): the
// binder package's ServiceManager as the context manager of the profile's
// device and, with -host, the policy Proxy to the services of the host's
// context. AOSP's own `service` command and a libbinder service are its
// clients, so nothing on the other end of the wire was written here.
//
//	workcellsm -work /dev/workbinder [-release 10]
//	workcellsm -work /dev/workbinder -host /dev/binder \
//	    -allow workcell.interop=workcell.IInterop:1 -audit /tmp/audit.jsonl
//
// It prints "workcellsm: ready" once it is the context manager, then
// serves until it is killed. Built with CGO_ENABLED=0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/workcell/workcell/binder"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "workcellsm:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		work    = flag.String("work", "/dev/workbinder", "the profile's binder device, whose context manager this becomes")
		host    = flag.String("host", "", "the host's binder device; with it, -allow'ed host services are proxied")
		relS    = flag.String("release", "10", "Android release of the wire format (10, 11, 14)")
		audit   = flag.String("audit", "", "file to append the proxy's audit records to (JSON lines)")
		profile = flag.String("profile", "work", "profile name in audit records")
		policy  binder.ProxyPolicy
	)
	flag.Func("allow", "NAME=DESCRIPTOR:CODES, a host service work may call (CODES like 1,3-5); repeatable",
		func(s string) error {
			sp, err := parseAllow(s)
			if err == nil {
				policy.Services = append(policy.Services, sp)
			}
			return err
		})
	flag.Parse()
	rel, err := binder.ParseRelease(*relS)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	wc, err := binder.Open(ctx, *work, rel, binder.WithMaxThreads(15), binder.WithLogger(log))
	if err != nil {
		return err
	}
	defer wc.Close()
	opts := []binder.ServiceManagerOption{binder.WithServiceManagerLogger(log)}
	if *host != "" {
		hc, err := binder.Open(ctx, *host, rel, binder.WithMaxThreads(8), binder.WithLogger(log))
		if err != nil {
			return err
		}
		defer hc.Close()
		go func() {
			if err := hc.Serve(ctx); err != nil && ctx.Err() == nil {
				log.Error("host connection stopped serving", "err", err)
			}
		}()
		popts := []binder.ProxyOption{binder.WithProfile(*profile), binder.WithProxyLogger(log)}
		if *audit != "" {
			f, err := os.OpenFile(*audit, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
			if err != nil {
				return err
			}
			defer f.Close()
			popts = append(popts, binder.WithAudit(binder.NewAuditLog(f), true))
		}
		p, err := binder.NewProxy(hc, wc, policy, popts...)
		if err != nil {
			return err
		}
		defer p.Close()
		opts = append(opts, binder.WithResolver(p))
	} else if len(policy.Services) > 0 {
		return errors.New("-allow needs -host")
	}
	sm := binder.NewServiceManager(wc, opts...)
	// The previous manager of the device may still be torn down by the
	// driver when a test runs its guest steps back to back.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := sm.Start(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Printf("workcellsm: ready: manager of %s (%s), proxying %d host services from %q\n",
		*work, rel, len(policy.Services), *host)
	if err := wc.Serve(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// parseAllow reads NAME=DESCRIPTOR:CODES.
func parseAllow(s string) (binder.ServicePolicy, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok {
		return binder.ServicePolicy{}, fmt.Errorf("-allow %q: want NAME=DESCRIPTOR:CODES", s)
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return binder.ServicePolicy{}, fmt.Errorf("-allow %q: want NAME=DESCRIPTOR:CODES", s)
	}
	sp := binder.ServicePolicy{Name: name, Descriptor: rest[:i]}
	for _, f := range strings.Split(rest[i+1:], ",") {
		a, b, isRange := strings.Cut(f, "-")
		first, err := strconv.ParseUint(a, 10, 32)
		if err != nil {
			return sp, fmt.Errorf("-allow %q: code %q: %w", s, f, err)
		}
		last := first
		if isRange {
			if last, err = strconv.ParseUint(b, 10, 32); err != nil {
				return sp, fmt.Errorf("-allow %q: code %q: %w", s, f, err)
			}
		}
		sp.Codes = append(sp.Codes, binder.CodeRange{First: uint32(first), Last: uint32(last)})
	}
	return sp, nil
}
