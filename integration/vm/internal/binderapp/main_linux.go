// Command binderapp plays the parties around workcelld's binder split in
// the integration/vm guest (TestDaemonBinderInVM): the host's service
// manager and a host echo service on the host's device, and a work app
// that, inside the profile's container, calls through /dev/binder. It is
// pure Go on the binder package and built with CGO_ENABLED=0.
//
//	binderapp [-d DEVICE] [-release R] hostsm
//	binderapp [-d DEVICE] [-release R] echo NAME
//	binderapp [-d DEVICE] [-release R] list
//	binderapp [-d DEVICE] [-release R] call NAME CODE TEXT
//
// The echo service implements workcell.IEcho: code 1 answers TEXT, code 2
// answers "secret". call prints "reply: TEXT", or "exception: ..." and
// exits 3 when the reply carries an exception.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/workcell/workcell/binder"
)

const echoDescriptor = "workcell.IEcho"

func main() {
	dev := flag.String("d", "/dev/binder", "binder device")
	relName := flag.String("release", "android14", "Android release of the wire format")
	flag.Parse()
	rel, err := binder.ParseRelease(*relName)
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	args := flag.Args()
	if len(args) == 0 {
		fail(errors.New("want hostsm, echo, watch, list or call"))
	}
	c, err := binder.Open(ctx, *dev, rel, binder.WithMaxThreads(4))
	if err != nil {
		fail(err)
	}
	defer c.Close()
	switch {
	case args[0] == "hostsm" && len(args) == 1:
		if _, err := binder.NewServiceManager(c).Start(ctx); err != nil {
			fail(err)
		}
		fmt.Println("hostsm: ready on", *dev)
		fail(c.Serve(ctx))
	case args[0] == "echo" && len(args) == 2:
		n := c.NewNode(binder.HandlerFunc(func(ctx context.Context, t *binder.Transaction) (*binder.Parcel, error) {
			if err := t.Data.EnforceInterface(echoDescriptor); err != nil {
				return nil, err
			}
			r := binder.NewParcel(rel)
			r.WriteNoException()
			switch t.Code {
			case 1:
				s, err := t.Data.ReadString16()
				if err != nil {
					return nil, err
				}
				r.WriteString16(s)
			case 2:
				r.WriteString16("secret")
			default:
				return nil, fmt.Errorf("unknown code %d", t.Code)
			}
			return r, nil
		}))
		go func() { fail(c.Serve(ctx)) }()
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if err = binder.AddService(ctx, c, args[1], n); err == nil {
				break
			}
		}
		if err != nil {
			fail(err)
		}
		fmt.Println("echo: registered", args[1], "on", *dev)
		select {}
	case args[0] == "watch" && len(args) == 2:
		// Links to the death of a service and waits for the notice.
		go func() { fail(c.Serve(ctx)) }()
		h, ok, err := binder.CheckService(ctx, c, args[1])
		if err != nil {
			fail(err)
		}
		if !ok {
			fmt.Println("not found:", args[1])
			os.Exit(4)
		}
		dead := make(chan struct{})
		if _, err := c.LinkToDeath(ctx, h, func() { close(dead) }); err != nil {
			fail(err)
		}
		fmt.Println("watching", args[1])
		select {
		case <-dead:
			fmt.Println("dead:", args[1])
		case <-time.After(2 * time.Minute):
			fmt.Println("no death notice:", args[1])
			os.Exit(5)
		}
	case args[0] == "list" && len(args) == 1:
		names, err := binder.ListServices(ctx, c)
		if err != nil {
			fail(err)
		}
		for _, n := range names {
			fmt.Println(n)
		}
	case args[0] == "call" && len(args) == 4:
		code, err := strconv.ParseUint(args[2], 10, 32)
		if err != nil {
			fail(err)
		}
		h, ok, err := binder.CheckService(ctx, c, args[1])
		if err != nil {
			fail(err)
		}
		if !ok {
			fmt.Println("not found:", args[1])
			os.Exit(4)
		}
		p := c.NewParcel()
		p.WriteInterfaceToken(echoDescriptor)
		p.WriteString16(args[3])
		r, err := c.Transact(ctx, h, uint32(code), p, 0)
		if err != nil {
			fail(err)
		}
		if err := r.ReadException(); err != nil {
			fmt.Println("exception:", err)
			os.Exit(3)
		}
		s, err := r.ReadString16()
		if err != nil {
			fail(err)
		}
		fmt.Println("reply:", s)
	default:
		fail(fmt.Errorf("unknown command %q", args))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "binderapp:", err)
	os.Exit(1)
}
