package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// p99Limit is the round trip the largest load is judged by: the bridge must
// stay under it wherever the relay does.
const p99Limit = 20 * time.Millisecond

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func kib(b int64) string { return fmt.Sprintf("%.1f KiB", float64(b)/1024) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func (r result) fps() float64 { return float64(r.relayedFrames()) / r.window.Seconds() }

func (r result) targetFPS() float64 { return float64(r.calls) * 2 * float64(time.Second/framePeriod) }

// cpuPerFrame is the server process's CPU µs per frame relayed while measured.
func (r result) cpuPerFrame() float64 {
	return float64(r.serverCPU.Nanoseconds()) / 1e3 / float64(max(r.relayedFrames(), 1))
}

func (r result) rtt(q float64) time.Duration { return r.p.dirs[agentToCaller].lat.quantile(q) }

func (r result) worstSlice() time.Duration {
	var w time.Duration
	for _, p := range r.sliceP99 {
		w = max(w, p)
	}
	return w
}

func (r result) lost() int64 {
	return r.p.sent(callerToAgent) - r.p.dirs[callerToAgent].received.Load() +
		r.p.sent(agentToCaller) - r.p.dirs[agentToCaller].received.Load()
}

func ratio(b, r float64) string {
	if r == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", b/r)
}

func report(out io.Writer, requested int, relay, bridge result) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(name, r, b, x string) { fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", name, r, b, x) }
	both := func(name string, f func(result) string) { row(name, f(relay), f(bridge), "") }
	row("", "relay", "bridge", "bridge ÷ relay")
	both(fmt.Sprintf("calls live (of %d)", requested), func(r result) string { return fmt.Sprint(r.calls) })
	both("agent streams", func(r result) string { return fmt.Sprint(r.agentConns) })
	both("setup time", func(r result) string { return r.setup.Round(time.Millisecond).String() })
	both("frames/s relayed while measured", func(r result) string {
		return fmt.Sprintf("%.0f of %.0f (%.1f%%)", r.fps(), r.targetFPS(), 100*r.fps()/r.targetFPS())
	})
	both("round trips timed", func(r result) string { return fmt.Sprint(r.p.dirs[agentToCaller].lat.count.Load()) })
	for _, q := range []struct {
		name string
		q    float64
	}{{"round trip p50", 0.5}, {"round trip p99", 0.99}, {"round trip p99.9", 0.999}} {
		row(q.name, ms(relay.rtt(q.q)), ms(bridge.rtt(q.q)), ratio(float64(bridge.rtt(q.q)), float64(relay.rtt(q.q))))
	}
	both("round trip p99 per slice", func(r result) string {
		parts := make([]string, len(r.sliceP99))
		for i, p := range r.sliceP99 {
			parts[i] = fmt.Sprintf("%.1f", float64(p)/float64(time.Millisecond))
		}
		return strings.Join(parts, " ")
	})
	both("frames lost (sent − received)", func(r result) string { return fmt.Sprint(r.lost()) })
	row("frames dropped / relayed (server's metrics)", "–", fmt.Sprintf("%.0f / %.0f", bridge.dropped, bridge.relayed), "")
	row("server CPU µs per relayed frame", fmt.Sprintf("%.2f", relay.cpuPerFrame()), fmt.Sprintf("%.2f", bridge.cpuPerFrame()),
		ratio(bridge.cpuPerFrame(), relay.cpuPerFrame()))
	both("server CPU, % of one core", func(r result) string { return fmt.Sprintf("%.0f%%", 100*r.serverCPU.Seconds()/r.window.Seconds()) })
	both("machine busy, all processes", func(r result) string {
		return fmt.Sprintf("%.0f%%", 100*float64(r.machineBusy)/float64(max(r.machineAll, 1)))
	})
	row("server heap + stack per call", kib(relay.memPerCall), kib(bridge.memPerCall), ratio(float64(bridge.memPerCall), float64(relay.memPerCall)))
	both("failures", func(r result) string { return fmt.Sprint(r.p.failures.Load()) })
	_ = tw.Flush()

	for _, r := range []result{relay, bridge} {
		for msg, n := range r.p.failKinds {
			fmt.Fprintf(out, "failures (%s): %d × %s\n", r.name, n, msg)
		}
		if r.slowDrains > 0 {
			fmt.Fprintf(out, "NOTE (%s): after %d of its slices, frames were still in flight 2 s after its senders paused\n", r.name, r.slowDrains)
		}
		if !r.drained {
			fmt.Fprintf(out, "NOTE (%s): not every frame sent had arrived 5 s after the senders stopped\n", r.name)
		}
		if !r.ended {
			fmt.Fprintf(out, "NOTE (%s): some connections had not ended 30 s after hang-up\n", r.name)
		}
	}

	fmt.Fprintln(out)
	cpuRatio := bridge.cpuPerFrame() / relay.cpuPerFrame()
	memRatio := float64(bridge.memPerCall) / float64(max(relay.memPerCall, 1))
	if relay.rtt(0.99) < p99Limit {
		fmt.Fprintf(out, "%-40s relay %s, bridge %s (worst slice %s)  (target: under %s where the relay is: %s)\n", "round trip p99",
			ms(relay.rtt(0.99)), ms(bridge.rtt(0.99)), ms(bridge.worstSlice()), ms(p99Limit), verdict(bridge.rtt(0.99) < p99Limit))
	} else {
		fmt.Fprintf(out, "%-40s relay %s, bridge %s  (the relay is over %s too: beyond the largest load judged)\n", "round trip p99",
			ms(relay.rtt(0.99)), ms(bridge.rtt(0.99)), ms(p99Limit))
	}
	fmt.Fprintf(out, "%-40s %.2f×  (target ≤ 1.1×: %s)\n", "CPU per relayed frame, bridge ÷ relay", cpuRatio, verdict(cpuRatio <= 1.1))
	fmt.Fprintf(out, "%-40s %.2f×  (target ≤ 1.2×: %s)\n", "memory per call, bridge ÷ relay", memRatio, verdict(memRatio <= 1.2))
	fmt.Fprintf(out, "%-40s %d  (target 0: %s; the server counted %.0f dropped)\n", "frames lost through the bridge", bridge.lost(), verdict(bridge.lost() == 0), bridge.dropped)
}
