// Command bridge measures the webhook server's media bridge against a
// minimal relay. N concurrent calls each send 50 frames/s of 160-byte µ-law
// (base64 in Media Streams JSON) to an echo agent, which sends each frame
// back: 50 frames/s each way through the server. The calls go through the
// real webhookserver binary (built here, run as its own process against a
// throwaway control plane, envtest: signed voice webhook, stream token,
// signed upgrade, loopback) and, for comparison, through a minimal relay in
// a child process (this program: reads a message on one side, writes it on
// the other). Both sets are live at once and take turns sending. It prints
// the round-trip latency, the server process's CPU per relayed frame and its
// memory per call, and the ratios of the bridge to the relay.
//
//	go run ./hack/bench/bridge -calls 200 -duration 10s
//	go run ./hack/bench/bridge -calls 200,400,600   (one size after another)
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/loquent/twilio-voice-operator/hack/bench/internal/cpu"
	"github.com/loquent/twilio-voice-operator/hack/bench/internal/realserver"
)

type options struct {
	sizes     []int
	duration  time.Duration
	settle    time.Duration
	setupConc int
	rounds    int
	child     string
	agentURL  string
}

func main() {
	var o options
	var calls string
	flag.StringVar(&calls, "calls", "200", "concurrent calls; a comma-separated list runs each size in turn")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time for each of relay and bridge (they alternate, see -rounds)")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "unmeasured traffic after each set of calls is up, before its memory is taken")
	flag.IntVar(&o.rounds, "rounds", 5, "relay and bridge take turns this many times, -duration/rounds each")
	flag.IntVar(&o.setupConc, "setup-concurrency", 32, "calls set up at a time")
	flag.StringVar(&o.child, "child", "", `internal: run as the "relay" child`)
	flag.StringVar(&o.agentURL, "agent-url", "", "internal: the agent URL of -child relay")
	flag.Parse()
	if o.child != "" {
		if err := runRelay(o.agentURL); err != nil {
			fmt.Fprintln(os.Stderr, "bridge bench relay:", err)
			os.Exit(1)
		}
		return
	}
	for _, f := range strings.Split(calls, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "bridge bench: -calls %q: want positive numbers\n", calls)
			os.Exit(2)
		}
		o.sizes = append(o.sizes, n)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bridge bench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.duration <= 0 || o.settle < 0 || o.setupConc <= 0 || o.rounds <= 0 {
		return fmt.Errorf("-duration, -rounds and -setup-concurrency must be positive")
	}
	most := slices.Max(o.sizes)
	fit, limit, err := fitCalls(most)
	if err != nil {
		return fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	if fit < most {
		return fmt.Errorf("RLIMIT_NOFILE is %d: room for %d calls, not %d", limit, fit, most)
	}
	a, err := startAgent()
	if err != nil {
		return err
	}
	relay, err := startRelay(a.url)
	if err != nil {
		return err
	}
	defer relay.Stop()
	fmt.Fprintln(os.Stderr, "starting the control plane and the webhookserver binary…")
	real, err := realserver.Start(context.Background(), realserver.Options{Root: realserver.Root(), Numbers: most, AgentURL: a.url})
	if err != nil {
		return err
	}
	defer real.Stop()

	dialer := &websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: o.setupConc}}
	sets := []*callers{
		{name: "relay", addr: relay.addr, dialer: dialer},
		{name: "bridge", addr: real.Addr, viaTwiML: true, client: client, dialer: dialer},
	}
	targets := []target{
		{name: "relay", pid: relay.PID(), metricsURL: relay.metricsURL},
		{name: "bridge", pid: real.Pid, metricsURL: real.MetricsURL},
	}
	for _, n := range o.sizes {
		fmt.Printf("bridge bench: %d calls, 50 frames/s each way to an echo agent (160-byte µ-law, base64 in Media Streams JSON), %s measured per server in %d alternating slices; "+
			"relay and webhookserver in their own processes, %d cores, loopback\n\n", n, o.duration, o.rounds, runtime.NumCPU())
		res := measure(o, n, a, sets, targets)
		report(os.Stdout, n, res[0], res[1])
		fmt.Println()
	}
	return nil
}

func machine() (busy, total uint64) { return cpu.Machine() }
