package main

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// total sums the rounds: requests and time add up; latency quantiles are the
// median over rounds (wrk reports quantiles per run).
type total struct {
	requests, errors int64
	elapsed, cpu     time.Duration
	busy, ticks      uint64
	answered         float64
	p50, p99, p999   time.Duration
	p99s             []time.Duration
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func sum(rounds []round) total {
	var t total
	var p50, p999 []time.Duration
	for _, r := range rounds {
		t.requests += r.requests
		t.errors += r.statusErrors + r.socketErrors
		t.elapsed += r.elapsed
		t.cpu += r.serverCPU
		t.busy += r.busy
		t.ticks += r.ticks
		t.answered += r.answered
		p50, t.p99s, p999 = append(p50, r.p50), append(t.p99s, r.p99), append(p999, r.p999)
	}
	t.p50, t.p99, t.p999 = median(p50), median(t.p99s), median(p999)
	return t
}

func (t total) throughput() float64 { return float64(t.requests) / t.elapsed.Seconds() }

func (t total) cpuPerRequest() time.Duration { return t.cpu / time.Duration(max(t.requests, 1)) }

// printTable prints one row per server, then the webhook server's ratios to
// the bare handler (servers[0]).
func printTable(out io.Writer, servers []*server) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\trequests\tthroughput\tp50\tp99\tp99.9\tp99 per round\terrors\tserver CPU/request\tserver CPU\tmachine busy\t")
	totals := make([]total, len(servers))
	for i, s := range servers {
		t := sum(s.rounds)
		totals[i] = t
		var rounds string
		for j, p := range t.p99s {
			if j > 0 {
				rounds += " "
			}
			rounds += fmt.Sprintf("%.2f", float64(p)/float64(time.Millisecond))
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f req/s\t%s\t%s\t%s\t%s\t%d\t%.1f µs\t%.0f%% of a core\t%.0f%%\t\n", s.name, t.requests, t.throughput(),
			ms(t.p50), ms(t.p99), ms(t.p999), rounds, t.errors, float64(t.cpuPerRequest())/float64(time.Microsecond),
			100*t.cpu.Seconds()/t.elapsed.Seconds(), 100*float64(t.busy)/float64(max(t.ticks, 1)))
	}
	_ = tw.Flush()
	bare, ws := totals[0], totals[1]
	fmt.Fprintf(out, "\nwebhookserver answered %.0f calls with a stream by its own metric (wrk counted %d requests, %d errors: non-2xx or socket)\n",
		ws.answered, ws.requests, ws.errors)
	if bare.requests == 0 || bare.p99 == 0 {
		return
	}
	pct := 100 * ws.throughput() / bare.throughput()
	ratio := float64(ws.p99) / float64(bare.p99)
	fmt.Fprintln(out)
	fmt.Fprintf(out, "%-34s %.1f%%  (target ≥ 60%%: %s)\n", "throughput, % of bare", pct, verdict(pct >= 60))
	fmt.Fprintf(out, "%-34s %.2f×  (median of rounds; target ≤ 2×: %s)\n", "p99 latency, × bare", ratio, verdict(ratio <= 2))
	fmt.Fprintf(out, "%-34s %.2f×  (server process CPU per request)\n", "CPU per request, × bare", float64(ws.cpuPerRequest())/float64(bare.cpuPerRequest()))
}
