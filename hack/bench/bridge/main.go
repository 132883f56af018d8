// Command bridge measures the webhook server's media bridge: N concurrent
// calls, each sending 50 frames/s of 160-byte µ-law (base64 in Media Streams
// JSON) both ways, through the real server (signed voice webhook, signed
// upgrade, start with the per-call token, loopback listener) to an echo-less
// agent, against the same calls connected directly to the same agent. It
// prints the one-way latency of each direction, the latency the bridge adds,
// CPU per call-second, heap per call, dropped frames and the frame rate
// actually achieved.
//
//	go run ./hack/bench/bridge -calls 1000 -duration 10s
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/gorilla/websocket"
)

type options struct {
	calls     int
	duration  time.Duration
	settle    time.Duration
	setupConc int
	rounds    int
	cpuProf   string
	memProf   string
	separate  bool
	child     bool
	agentURL  string
}

func main() {
	var o options
	flag.IntVar(&o.calls, "calls", 1000, "concurrent calls")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time for each of direct and bridged (they alternate, see -rounds)")
	flag.DurationVar(&o.settle, "settle", time.Second, "unmeasured traffic after each set of calls is up, before its heap is taken")
	flag.IntVar(&o.rounds, "rounds", 5, "direct and bridged take turns this many times, -duration/rounds each")
	flag.IntVar(&o.setupConc, "setup-concurrency", 32, "calls set up at a time")
	flag.StringVar(&o.cpuProf, "cpuprofile", "", "write a CPU profile of the measured time (both sets) to this file")
	flag.StringVar(&o.memProf, "memprofile", "", "write a heap profile (every allocation sampled, which slows the run) taken while the bridged calls are live to this file")
	flag.BoolVar(&o.separate, "server-process", false, "run the webhook server in a child process (its own Go runtime; CPU and heap are then summed over both processes)")
	flag.BoolVar(&o.child, "child-server", false, "internal: be the child server of -server-process")
	flag.StringVar(&o.agentURL, "agent-url", "", "internal: the agent URL of -child-server")
	flag.Parse()
	if o.memProf != "" {
		runtime.MemProfileRate = 1 // every allocation, so the profile adds up per call (slow)
	}
	if o.child {
		if err := runChild(o.calls, o.agentURL); err != nil {
			fmt.Fprintln(os.Stderr, "bridge bench child server:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bridge bench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.calls <= 0 || o.duration <= 0 || o.settle < 0 || o.setupConc <= 0 || o.rounds <= 0 {
		return fmt.Errorf("-calls, -duration, -rounds and -setup-concurrency must be positive")
	}
	requested := o.calls
	calls, limit, err := fitCalls(o.calls)
	if err != nil {
		return fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	if calls < o.calls {
		fmt.Printf("NOTE: RLIMIT_NOFILE is %d and cannot be raised to %d; running %d calls instead of %d\n",
			limit, o.calls*fdsPerCall+fdReserve, calls, o.calls)
		o.calls = calls
	}
	if o.calls == 0 {
		return fmt.Errorf("no file descriptors for any call (RLIMIT_NOFILE %d)", limit)
	}
	a, err := startAgent()
	if err != nil {
		return err
	}
	var srv bridge
	where := "in this process"
	if o.separate {
		srv, err = startChildServer(o.calls, a.url)
		where = "in a child process"
	} else {
		srv, err = startBridgeServer(o.calls, a.url)
	}
	if err != nil {
		return err
	}
	defer srv.stop()
	fmt.Printf("bridge bench: %d calls, 50 frames/s each way (160-byte µ-law, base64 in Media Streams JSON), %s measured per set in %d alternating slices, server %s, GOMAXPROCS %d, RLIMIT_NOFILE %d, loopback\n\n",
		o.calls, o.duration, o.rounds, where, runtime.GOMAXPROCS(0), limit)

	dialer := &websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: o.setupConc}}
	res := measure(o, a, srv, []*callers{
		{agentURL: a.url, dialer: dialer},
		{bridgeAddr: srv.address(), client: client, dialer: dialer},
	})
	report(os.Stdout, requested, res[0], res[1])
	return nil
}
