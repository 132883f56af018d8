// Command webhook measures the voice webhook (POST /twilio/voice: body limit,
// form parse, X-Twilio-Signature check with twilio-go, routing lookup, stream
// token and TwiML rendering) against a bare net/http handler that returns
// constant TwiML, in the same process, over loopback, with the same load
// generator: C keep-alive workers sending signed POSTs (a new CallSid each)
// for a fixed time, bounded by a request count. It prints throughput and
// latency for both and the ratios to the bare handler.
//
//	go run ./hack/bench/webhook -workers 64 -duration 5s
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

type options struct {
	workers     int
	duration    time.Duration
	warmup      time.Duration
	maxRequests int
	numbers     int
	logMode     string
	rounds      int
	cpuProfile  string
}

func main() {
	var o options
	flag.IntVar(&o.workers, "workers", 64, "concurrent client workers (each with its own keep-alive connection)")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured load per server")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load per server before measuring")
	flag.IntVar(&o.maxRequests, "max-requests", 2_000_000, "cap on measured requests per server (the run stops at whichever of -duration and this comes first)")
	flag.IntVar(&o.numbers, "numbers", 1000, "routed numbers in the static routing table (requests cycle through them)")
	flag.StringVar(&o.logMode, "log", "prod", `webhook server logger: "prod" (controller-runtime zap production JSON with sampling, to io.Discard) or "none" (logr.Discard)`)
	flag.IntVar(&o.rounds, "rounds", 5, "alternate the servers this many times, -duration/rounds each, and merge (evens out noise from other processes)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the measured load (both servers) to this file")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "webhook bench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.workers <= 0 || o.duration <= 0 || o.maxRequests <= 0 || o.numbers <= 0 || o.rounds <= 0 {
		return fmt.Errorf("-workers, -duration, -max-requests, -numbers and -rounds must be positive")
	}
	ws, err := startWebhookServer(o.numbers, o.logMode)
	if err != nil {
		return err
	}
	defer ws.stop()
	bare, err := startBareServer(o.numbers)
	if err != nil {
		return err
	}
	defer bare.stop()

	fmt.Printf("webhook bench: %d workers × %s per server in %d alternating rounds (warm-up %s each, cap %d requests each), GOMAXPROCS %d, logger %q, loopback\n\n",
		o.workers, o.duration, o.rounds, o.warmup, o.maxRequests, runtime.GOMAXPROCS(0), o.logMode)
	targets := []target{bare.target, ws.target}
	clients := make([]*http.Client, len(targets))
	for i, t := range targets {
		clients[i] = newClient(o.workers)
		defer clients[i].CloseIdleConnections()
		if o.warmup > 0 {
			runLoad(t, clients[i], o.workers, o.warmup, o.maxRequests)
		}
	}
	stopProfile, err := startProfile(o.cpuProfile)
	if err != nil {
		return err
	}
	results := make([]result, len(targets))
	slice := o.duration / time.Duration(o.rounds)
	for range o.rounds {
		for i, t := range targets {
			runtime.GC()
			results[i] = results[i].merge(runLoad(t, clients[i], o.workers, slice, o.maxRequests-results[i].ok-results[i].errors))
		}
	}
	stopProfile()
	printTable(os.Stdout, results)
	return nil
}

func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}
