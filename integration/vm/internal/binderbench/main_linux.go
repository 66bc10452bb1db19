// Command binderbench runs in the integration/vm guest and measures what
// workcelld's binder proxy costs as workcelld deploys it, beside the direct
// call in the same run: a small call's round trip, and 1 KiB and 64 KiB
// parcels sent to a host service (an 8-byte reply), each direct on the
// host's device and, from the profile's device, through the service's node
// helper (binder.NodeHelpers, nodehelper_linux.go). It prints one
// BINDER-BENCH line per figure, medians of several repetitions, for
// `workcell-bench -rows binder` (integration/bench/binder_linux.go) to put
// in its table:
//
//	BINDER-BENCH row=roundtrip-small unit=ms direct=2.1 proxied=4.6 direct_p99=3.0 proxied_p99=6.2 reps=9 n=100 proxy=node-helper
//	BINDER-BENCH row=throughput-1KiB unit=MiB/s direct=0.4 proxied=0.3 reps=9 n=100 proxy=node-helper
//
// The parties are processes of their own, as the driver requires (it
// refuses calls from a process to the context manager it owns): the host's
// service manager on -host and an echo service registered there (both the
// binder package's Go code), workcelld's side (the profile's
// ServiceManager on -work with NodeHelpers as its resolver, allowing the
// echo service), the node helper that NodeHelpers starts for the echo
// service on the first lookup (this program re-executed as
// `binderbench binder-node`, the way workcelld runs `workcelld
// binder-node`: /proc/self/exe, an empty environment, binder.RunNodeHelper
// as its body), and the measuring client, this process. Built with
// CGO_ENABLED=0; it asserts nothing about timings.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/workcell/workcell/binder"
)

const (
	roleEnv    = "BINDERBENCH_ROLE"
	hostEnv    = "BINDERBENCH_HOST"
	workEnv    = "BINDERBENCH_WORK"
	echoName   = "bench.echo"
	descriptor = "workcell.bench.IEcho"
	codeEcho   = binder.FirstCallTransaction     // String16 -> the same
	codeSink   = binder.FirstCallTransaction + 1 // byte array -> its length
	rel        = binder.Android10
	// nodeCommand is the node helper's subcommand, as workcelld's
	// (daemon.BinderNodeCommand).
	nodeCommand = "binder-node"
	// proxyPath names the proxied path on every BINDER-BENCH line.
	proxyPath = "node-helper"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == nodeCommand {
		os.Exit(binder.RunNodeHelper(os.Stdin, os.Stdout, os.Stderr))
	}
	var err error
	switch role := os.Getenv(roleEnv); role {
	case "":
		err = bench()
	case "hostsm":
		err = hostSM()
	case "echo":
		err = echo()
	case "workcelld":
		err = workcelld()
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "binderbench %s: %v\n", os.Getenv(roleEnv), err)
		os.Exit(1)
	}
}

func bench() error {
	var (
		host  = flag.String("host", "/dev/binder", "the host's binder device")
		work  = flag.String("work", "/dev/workbinder", "the profile's binder device")
		reps  = flag.Int("reps", 7, "repetitions of each measurement (the figure is their median)")
		small = flag.Int("n", 60, "calls per repetition of the small round trip and the 1 KiB parcels")
		big   = flag.Int("n64", 20, "calls per repetition of the 64 KiB parcels")
	)
	flag.Parse()
	os.Setenv(hostEnv, *host)
	os.Setenv(workEnv, *work)
	for _, role := range []string{"hostsm", "echo", "workcelld"} {
		stop, err := start(role)
		if err != nil {
			return err
		}
		defer stop()
	}
	ctx := context.Background()
	direct, err := openServing(ctx, *host)
	if err != nil {
		return err
	}
	defer direct.Close()
	proxied, err := openServing(ctx, *work)
	if err != nil {
		return err
	}
	defer proxied.Close()
	dh, ok, err := binder.CheckService(ctx, direct, echoName)
	if err != nil || !ok {
		return fmt.Errorf("direct lookup of %s: found %v, %v", echoName, ok, err)
	}
	ph, ok, err := binder.CheckService(ctx, proxied, echoName)
	if err != nil || !ok {
		return fmt.Errorf("lookup of %s through its node helper: found %v, %v", echoName, ok, err)
	}
	sides := []side{{"direct", direct, dh}, {"proxied", proxied, ph}}

	// Warm both paths up (threads spawned, pages touched), then measure.
	for _, s := range sides {
		if _, err := s.roundTrips(ctx, 20); err != nil {
			return err
		}
		if _, err := s.sink(ctx, 64<<10, 3); err != nil {
			return err
		}
	}
	// The sides alternate call by call (round trips) or every few calls
	// (parcels), and which goes first changes, so that a noisy moment of
	// the shared cores hits both. A repetition's round trip is the median of
	// its calls, its throughput all its bytes over all its time.
	var perCall [2][]time.Duration // every call, for p99
	var rtt [2][]float64
	var tput [2][2][]float64 // size, side
	sizes := []struct{ bytes, n int }{{1 << 10, *small}, {64 << 10, *big}}
	const block = 5
	for r := range *reps {
		var rep [2][]time.Duration
		for c := range *small {
			for _, i := range order(r + c) {
				d, err := sides[i].roundTrips(ctx, 1)
				if err != nil {
					return err
				}
				rep[i] = append(rep[i], d...)
			}
		}
		for i := range sides {
			perCall[i] = append(perCall[i], rep[i]...)
			rtt[i] = append(rtt[i], ms(medianDuration(rep[i])))
		}
		for k, sz := range sizes {
			var took [2]time.Duration
			for done, b := 0, 0; done < sz.n; done, b = done+block, b+1 {
				for _, i := range order(r + b) {
					d, err := sides[i].sink(ctx, sz.bytes, min(block, sz.n-done))
					if err != nil {
						return err
					}
					took[i] += d
				}
			}
			for i := range sides {
				tput[k][i] = append(tput[k][i], float64(sz.bytes*sz.n)/took[i].Seconds()/(1<<20))
			}
		}
	}
	fmt.Printf("BINDER-BENCH row=roundtrip-small unit=ms direct=%.4f proxied=%.4f direct_p99=%.4f proxied_p99=%.4f reps=%d n=%d proxy=%s\n",
		median(rtt[0]), median(rtt[1]), ms(p99(perCall[0])), ms(p99(perCall[1])), *reps, *small, proxyPath)
	for k, sz := range sizes {
		fmt.Printf("BINDER-BENCH row=throughput-%dKiB unit=MiB/s direct=%.4f proxied=%.4f reps=%d n=%d proxy=%s\n",
			sz.bytes>>10, median(tput[k][0]), median(tput[k][1]), *reps, sz.n, proxyPath)
	}
	return nil
}

// side is one way to reach the echo service.
type side struct {
	name   string
	conn   *binder.Conn
	handle uint32
}

// roundTrips makes n small calls and returns each one's time.
func (s side) roundTrips(ctx context.Context, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for range n {
		p := s.conn.NewParcel()
		p.WriteInterfaceToken(descriptor)
		p.WriteString16("x")
		t := time.Now()
		r, err := s.conn.Transact(ctx, s.handle, codeEcho, p, 0)
		d := time.Since(t)
		if err == nil {
			err = r.ReadException()
		}
		if err != nil {
			return nil, fmt.Errorf("%s echo: %w", s.name, err)
		}
		if got, err := r.ReadString16(); err != nil || got != "x" {
			return nil, fmt.Errorf("%s echo answered %q, %v", s.name, got, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// sink sends n parcels carrying size bytes and returns the time it took.
func (s side) sink(ctx context.Context, size, n int) (time.Duration, error) {
	payload := make([]byte, size)
	start := time.Now()
	for range n {
		p := s.conn.NewParcel()
		p.WriteInterfaceToken(descriptor)
		p.WriteByteArray(payload)
		r, err := s.conn.Transact(ctx, s.handle, codeSink, p, 0)
		if err == nil {
			err = r.ReadException()
		}
		if err != nil {
			return 0, fmt.Errorf("%s sink %d bytes: %w", s.name, size, err)
		}
		if got, err := r.ReadInt32(); err != nil || int(got) != size {
			return 0, fmt.Errorf("%s sink answered %d for %d bytes, %v", s.name, got, size, err)
		}
	}
	return time.Since(start), nil
}

// order is the sides' order in round r: direct first, then proxied first.
func order(r int) []int {
	if r%2 == 1 {
		return []int{1, 0}
	}
	return []int{0, 1}
}

func medianDuration(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(d))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// p99 is the nearest-rank 99th percentile.
func p99(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(d))
	i := (99*len(s)+99)/100 - 1
	return s[max(0, min(i, len(s)-1))]
}

// start re-executes this program in role and waits for its "ready" line.
func start(role string) (stop func(), err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop = func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	ready := make(chan error, 1)
	go func() {
		br := bufio.NewReader(out)
		line, err := br.ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("said %q", line)
		}
		ready <- err
		io.Copy(io.Discard, br)
	}()
	select {
	case err := <-ready:
		if err != nil {
			stop()
			return nil, fmt.Errorf("role %s: %w", role, err)
		}
	case <-time.After(20 * time.Second):
		stop()
		return nil, fmt.Errorf("role %s not ready after 20s", role)
	}
	return stop, nil
}

func openServing(ctx context.Context, dev string) (*binder.Conn, error) {
	c, err := binder.Open(ctx, dev, rel, binder.WithMaxThreads(8))
	if err != nil {
		return nil, err
	}
	go c.Serve(ctx)
	return c, nil
}

// manage makes sm the context manager and serves.
func manage(ctx context.Context, c *binder.Conn, sm *binder.ServiceManager) error {
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
	fmt.Println("ready")
	return c.Serve(ctx)
}

func hostSM() error {
	ctx := context.Background()
	c, err := binder.Open(ctx, os.Getenv(hostEnv), rel, binder.WithMaxThreads(8))
	if err != nil {
		return err
	}
	defer c.Close()
	return manage(ctx, c, binder.NewServiceManager(c))
}

// workcelld is workcelld's side of a profile's context as the daemon runs
// it (daemon/binder_linux.go): the profile's ServiceManager on the work
// device, with NodeHelpers as its resolver, so that the first lookup of
// the echo service starts its node helper, which serves the calls.
func workcelld() error {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	work, err := binder.Open(ctx, os.Getenv(workEnv), rel, binder.WithLogger(log))
	if err != nil {
		return err
	}
	defer work.Close()
	policy := binder.ProxyPolicy{Services: []binder.ServicePolicy{{
		Name: echoName, Descriptor: descriptor, Codes: []binder.CodeRange{{First: codeEcho, Last: codeSink}},
	}}}
	// Audit records of denials only, as workcelld writes by default; the
	// bench makes none, so the file stays empty.
	audit, err := os.CreateTemp("", "binderbench-audit-")
	if err != nil {
		return err
	}
	defer os.Remove(audit.Name())
	// The helper is this program again, as workcelld's is the daemon
	// again (daemon's binderNodeCommand).
	command := func() *exec.Cmd {
		cmd := exec.Command("/proc/self/exe", nodeCommand)
		cmd.Env = []string{}
		return cmd
	}
	nh, err := binder.NewNodeHelpers(rel, os.Getenv(hostEnv), os.Getenv(workEnv), "bench", policy, command,
		binder.NewAuditLog(audit), false, log)
	if err != nil {
		return err
	}
	defer nh.Close()
	return manage(ctx, work, binder.NewServiceManager(work, binder.WithResolver(nh), binder.WithServiceManagerLogger(log)))
}

func echo() error {
	ctx := context.Background()
	c, err := binder.Open(ctx, os.Getenv(hostEnv), rel, binder.WithMaxThreads(8))
	if err != nil {
		return err
	}
	defer c.Close()
	reply := func(fill func(*binder.Parcel)) *binder.Parcel {
		r := binder.NewParcel(rel)
		r.WriteNoException()
		fill(r)
		return r
	}
	n := c.NewNode(binder.HandlerFunc(func(ctx context.Context, t *binder.Transaction) (*binder.Parcel, error) {
		if err := t.Data.EnforceInterface(descriptor); err != nil {
			return nil, err
		}
		switch t.Code {
		case codeEcho:
			s, err := t.Data.ReadString16()
			if err != nil {
				return nil, err
			}
			return reply(func(r *binder.Parcel) { r.WriteString16(s) }), nil
		case codeSink:
			b, err := t.Data.ReadByteArray()
			if err != nil {
				return nil, err
			}
			return reply(func(r *binder.Parcel) { r.WriteInt32(int32(len(b))) }), nil
		}
		return nil, binder.StatusUnknownTransaction
	}))
	served := make(chan error, 1)
	go func() { served <- c.Serve(ctx) }()
	if err := binder.AddService(ctx, c, echoName, n); err != nil {
		return err
	}
	fmt.Println("ready")
	return <-served
}
