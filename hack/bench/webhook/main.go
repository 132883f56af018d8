// Command webhook measures the voice webhook (POST /twilio/voice: body limit,
// form parse, X-Twilio-Signature check with twilio-go, routing lookup, stream
// token and TwiML rendering) the way a production load would see it: the real
// webhookserver binary, built here and run as its own process against a
// throwaway control plane (envtest) routing -numbers numbers, under an
// external load generator, wrk, over loopback. For comparison it runs a bare
// net/http handler answering constant TwiML (this program, re-executed as a
// child process) under the same load; the two take turns in -rounds rounds.
//
// wrk sends signed POSTs, each with its own CallSid, from a Lua script that
// cycles through -bodies bodies signed here (internal/twiliosig) before the
// run. It prints throughput, latency and CPU per request of both servers and
// the ratios to the bare handler. -cpuprofile also runs the server code
// (webhookserver.New with a static table of the same routes) in a child
// process under wrk with pprof on, and writes that profile.
//
//	go run ./hack/bench/webhook -connections 32 -duration 10s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/loquent/twilio-voice-operator/hack/bench/internal/realserver"
)

type options struct {
	connections int
	threads     int
	duration    time.Duration
	warmup      time.Duration
	rounds      int
	numbers     int
	bodies      int
	cpuProfile  string
	child       string
}

func main() {
	var o options
	flag.IntVar(&o.connections, "connections", 32, "wrk keep-alive connections")
	flag.IntVar(&o.threads, "threads", 2, "wrk threads")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured load per server, split over -rounds")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load per server before measuring")
	flag.IntVar(&o.rounds, "rounds", 5, "the servers take turns this many times, -duration/rounds each")
	flag.IntVar(&o.numbers, "numbers", 1000, "routed numbers (requests cycle through them)")
	flag.IntVar(&o.bodies, "bodies", 20000, "distinct signed request bodies (CallSids) wrk cycles through")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "also profile the server code under the same load (in a child process) and write the CPU profile here")
	flag.StringVar(&o.child, "child", "", `internal: run as the "bare" or "profile" child server`)
	flag.Parse()
	if o.child != "" {
		if err := runChild(o); err != nil {
			fmt.Fprintln(os.Stderr, "webhook bench child:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "webhook bench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.connections <= 0 || o.threads <= 0 || o.duration <= 0 || o.numbers <= 0 || o.rounds <= 0 || o.bodies <= 0 {
		return fmt.Errorf("-connections, -threads, -duration, -numbers, -rounds and -bodies must be positive")
	}
	wrk, err := findWrk()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bench-webhook-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	script, err := writeScript(dir, o.bodies, o.numbers)
	if err != nil {
		return err
	}

	fmt.Fprintln(os.Stderr, "starting the control plane and the webhookserver binary…")
	real, err := realserver.Start(context.Background(), realserver.Options{
		Root: realserver.Root(), Numbers: o.numbers, AgentURL: agentURL, Record: true,
	})
	if err != nil {
		return err
	}
	defer real.Stop()
	bare, err := startChild("bare", o.numbers)
	if err != nil {
		return err
	}
	defer bare.Stop()

	servers := []*server{
		{name: "bare net/http", addr: bare.Line, pid: bare.PID()},
		{name: "webhookserver", addr: real.Addr, pid: real.Pid, metricsURL: real.MetricsURL},
	}
	for _, s := range servers {
		if err := checkAnswers(s, o.numbers); err != nil {
			return err
		}
	}
	fmt.Printf("webhook bench: wrk -t%d -c%d, %s per server in %d alternating rounds (warm-up %s each), %d numbers, %d signed bodies, GOMAXPROCS of the servers: default (%d cores), loopback\n\n",
		o.threads, o.connections, o.duration, o.rounds, o.warmup, o.numbers, o.bodies, numCPU())
	for _, s := range servers {
		if _, err := runWrk(wrk, script, s, o, o.warmup); err != nil {
			return err
		}
	}
	slice := o.duration / time.Duration(o.rounds)
	for range o.rounds {
		for _, s := range servers {
			r, err := measureRound(wrk, script, s, o, slice)
			if err != nil {
				return err
			}
			s.rounds = append(s.rounds, r)
		}
	}
	printTable(os.Stdout, servers)
	if o.cpuProfile != "" {
		return profile(wrk, script, o)
	}
	return nil
}

// findWrk returns wrk's path, installing Debian's package when it is missing
// (the bench runs as root on the project's build machines).
func findWrk() (string, error) {
	if p, err := exec.LookPath("wrk"); err == nil {
		return p, nil
	}
	fmt.Fprintln(os.Stderr, "wrk not found; apt-get install -y wrk")
	cmd := exec.Command("apt-get", "install", "-y", "wrk")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("install wrk (apt-get install -y wrk): %w", err)
	}
	return exec.LookPath("wrk")
}

// profile runs the server code in a child process with pprof on, under the
// same load for -duration, and writes its CPU profile to o.cpuProfile.
func profile(wrk, script string, o options) error {
	c, err := startChild("profile", o.numbers, "-cpuprofile", o.cpuProfile)
	if err != nil {
		return err
	}
	s := &server{name: "profiled", addr: c.Line, pid: c.PID()}
	if err := checkAnswers(s, o.numbers); err != nil {
		c.Stop()
		return err
	}
	_, err = runWrk(wrk, script, s, o, o.duration)
	c.Stop()
	if err == nil {
		fmt.Printf("\nCPU profile of the server code under the same load: %s (go tool pprof -top %s)\n", o.cpuProfile, o.cpuProfile)
	}
	return err
}
