package main

import (
	"fmt"
	"io"
	"runtime"
	"text/tabwriter"
	"time"
)

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func kib(b int64) string { return fmt.Sprintf("%.1f KiB", float64(b)/1024) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func (r result) fps() float64 { return float64(r.windowFrames()) / r.window.Seconds() }

func (r result) targetFPS() float64 { return float64(r.calls) * 2 * float64(time.Second/framePeriod) }

// cpuPerCallSecond is CPU seconds used by the bench and the server per
// second of one live call.
func (r result) cpuPerCallSecond() float64 {
	if r.calls == 0 {
		return 0
	}
	return r.cpu.Seconds() / (float64(r.calls) * r.window.Seconds())
}

// cpuPerFrame is CPU µs used by the bench and the server per frame sent
// while measured.
func (r result) cpuPerFrame() float64 {
	if r.windowFrames() == 0 {
		return 0
	}
	return float64(r.cpu.Microseconds()) / float64(r.windowFrames())
}

func (r result) lost(d int) int64 { return r.p.sent(d) - r.p.dirs[d].received.Load() }

func (r result) q(d int, q float64) time.Duration { return r.p.dirs[d].lat.quantile(q) }

func report(out io.Writer, requested int, direct, bridged result) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(name, d, b, diff string) { fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", name, d, b, diff) }
	both := func(name string, f func(result) string) { row(name, f(direct), f(bridged), "") }
	row("", "direct", "bridged", "bridged − direct")
	both(fmt.Sprintf("calls live (of %d)", requested), func(r result) string { return fmt.Sprint(r.calls) })
	both("agent streams", func(r result) string { return fmt.Sprint(r.agentConns) })
	both("setup time", func(r result) string { return r.setup.Round(time.Millisecond).String() })
	both("frames/s achieved while measured", func(r result) string {
		return fmt.Sprintf("%.0f of %.0f (%.1f%%)", r.fps(), r.targetFPS(), 100*r.fps()/r.targetFPS())
	})
	for _, d := range []struct {
		dir  int
		name string
	}{{callerToAgent, "caller→agent"}, {agentToCaller, "agent→caller"}} {
		both(d.name+" frames timed", func(r result) string { return fmt.Sprint(r.p.dirs[d.dir].lat.count.Load()) })
		for _, q := range []struct {
			name string
			q    float64
		}{{"p50", 0.5}, {"p99", 0.99}, {"p99.9", 0.999}} {
			row(d.name+" "+q.name, ms(direct.q(d.dir, q.q)), ms(bridged.q(d.dir, q.q)), ms(bridged.q(d.dir, q.q)-direct.q(d.dir, q.q)))
		}
		both(d.name+" frames lost (sent − received)", func(r result) string { return fmt.Sprint(r.lost(d.dir)) })
	}
	row("frames dropped by the server (metric)", "–",
		fmt.Sprintf("%.0f to agent, %.0f to caller", bridged.serverDropped["twilio_to_agent"], bridged.serverDropped["agent_to_twilio"]), "")
	row("CPU s per call-second (bench + server)", fmt.Sprintf("%.5f", direct.cpuPerCallSecond()), fmt.Sprintf("%.5f", bridged.cpuPerCallSecond()),
		fmt.Sprintf("%.5f", bridged.cpuPerCallSecond()-direct.cpuPerCallSecond()))
	row("CPU µs per frame sent (bench + server)", fmt.Sprintf("%.1f", direct.cpuPerFrame()), fmt.Sprintf("%.1f", bridged.cpuPerFrame()),
		fmt.Sprintf("%.1f", bridged.cpuPerFrame()-direct.cpuPerFrame()))
	both(fmt.Sprintf("CPU busy, bench + server (of %d cores)", runtime.NumCPU()), func(r result) string {
		return fmt.Sprintf("%.0f%%", 100*r.cpu.Seconds()/r.window.Seconds()/float64(runtime.NumCPU()))
	})
	both("machine CPU busy, all processes", func(r result) string {
		if r.machineTotal == 0 {
			return "?"
		}
		return fmt.Sprintf("%.0f%%", 100*float64(r.machineBusy)/float64(r.machineTotal))
	})
	row("heap in use per call (set's own)", kib(direct.heap), kib(bridged.heap), kib(bridged.heap-direct.heap))
	row("stack in use per call (set's own)", kib(direct.stack), kib(bridged.stack), kib(bridged.stack-direct.stack))
	both("failures", func(r result) string { return fmt.Sprint(r.p.failures.Load()) })
	_ = tw.Flush()

	for _, r := range []result{direct, bridged} {
		for msg, n := range r.p.failKinds {
			fmt.Fprintf(out, "failures (%s): %d × %s\n", r.p.name, n, msg)
		}
		if r.slowDrains > 0 {
			fmt.Fprintf(out, "NOTE (%s): after %d of its slices, frames were still in flight 2 s after its senders paused\n", r.p.name, r.slowDrains)
		}
		if !r.drained {
			fmt.Fprintf(out, "NOTE (%s): not every frame sent had arrived 5 s after the senders stopped\n", r.p.name)
		}
		if !r.ended {
			fmt.Fprintf(out, "NOTE (%s): some connections had not ended 30 s after hang-up\n", r.p.name)
		}
	}

	added := bridged.q(callerToAgent, 0.99) - direct.q(callerToAgent, 0.99)
	addedBack := bridged.q(agentToCaller, 0.99) - direct.q(agentToCaller, 0.99)
	heap := bridged.heap - direct.heap
	lost := bridged.lost(0) + bridged.lost(1)
	serverDropped := int64(bridged.serverDropped["twilio_to_agent"] + bridged.serverDropped["agent_to_twilio"])
	fmt.Fprintln(out)
	fmt.Fprintf(out, "%-44s %s  (target ≤ 2 ms: %s)\n", "added p99 latency, caller→agent", ms(added), verdict(added <= 2*time.Millisecond))
	fmt.Fprintf(out, "%-44s %s  (target ≤ 2 ms: %s)\n", "added p99 latency, agent→caller", ms(addedBack), verdict(addedBack <= 2*time.Millisecond))
	fmt.Fprintf(out, "%-44s %s  (target ≤ 64 KiB: %s; %s per bridged call with the bench's own caller and agent)\n",
		"heap per call added by the bridge", kib(heap), verdict(heap <= 64<<10), kib(bridged.heap))
	fmt.Fprintf(out, "%-44s %d  (target 0: %s; the server counted %d dropped)\n", "frames lost through the bridge", lost, verdict(lost == 0), serverDropped)
	fmt.Fprintf(out, "%-44s %.1f%% of target through the bridge, %.1f%% direct\n", "frame rate achieved while measured", 100*bridged.fps()/bridged.targetFPS(), 100*direct.fps()/direct.targetFPS())
}
