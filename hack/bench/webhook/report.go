package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"text/tabwriter"
	"time"
)

// quantile returns the q-quantile of sorted (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func (r result) machineBusy() string {
	if r.ticks == 0 {
		return "?"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(r.busy)/float64(r.ticks))
}

func (r result) cpuPerRequest() float64 { return r.cpu.Seconds() / float64(max(r.ok, 1)) }

func (r result) throughput() float64 { return float64(r.ok) / r.elapsed.Seconds() }

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// printTable prints one row per server, then the webhook server's ratios to
// the bare handler (results[0] is the bare handler).
func printTable(out io.Writer, results []result) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\trequests\tthroughput\tp50\tp99\tp99.9\terrors\tCPU/request\tprocess CPU\tmachine busy\t")
	p99 := make([]time.Duration, len(results))
	for i, r := range results {
		slices.Sort(r.latencies)
		p99[i] = quantile(r.latencies, 0.99)
		fmt.Fprintf(tw, "%s\t%d\t%.0f req/s\t%s\t%s\t%s\t%d\t%.1f µs\t%.0f%%\t%s\t\n", r.name, r.ok, r.throughput(),
			ms(quantile(r.latencies, 0.50)), ms(p99[i]), ms(quantile(r.latencies, 0.999)), r.errors,
			r.cpuPerRequest()*1e6, 100*r.cpu.Seconds()/r.elapsed.Seconds()/float64(runtime.NumCPU()), r.machineBusy())
	}
	_ = tw.Flush()
	for _, r := range results {
		if r.errors > 0 {
			fmt.Fprintf(out, "first error from %s: %s\n", r.name, r.firstErr)
		}
	}
	if len(results) < 2 || results[0].ok == 0 || p99[0] == 0 {
		return
	}
	bare, ws := results[0], results[1]
	pct := 100 * ws.throughput() / bare.throughput()
	ratio := float64(p99[1]) / float64(p99[0])
	fmt.Fprintln(out)
	fmt.Fprintf(out, "%-34s %.1f%%  (target ≥ 60%%: %s)\n", "throughput, % of bare", pct, verdict(pct >= 60))
	fmt.Fprintf(out, "%-34s %.2f×  (target ≤ 2×: %s)\n", "p99 latency, × bare", ratio, verdict(ratio <= 2))
	fmt.Fprintf(out, "%-34s %.1f%%  (bare's CPU per request ÷ webhookserver's, client included: the throughput ratio if CPU were the only limit)\n",
		"CPU-bound throughput, % of bare", 100*bare.cpuPerRequest()/ws.cpuPerRequest())
}
