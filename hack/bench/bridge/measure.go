package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/loquent/twilio-voice-operator/hack/bench/internal/cpu"
)

// leadIn is the unmeasured start of each slice: the set's senders restart.
const leadIn = 200 * time.Millisecond

// result is one set of calls, measured.
type result struct {
	p             *phase
	calls         int
	agentConns    int64
	setup         time.Duration
	window        time.Duration // measured time, all slices
	cpu           time.Duration // CPU during the measured time (this process, and the server's if separate)
	machineBusy   uint64        // whole-machine busy ticks during the measured time
	machineTotal  uint64        // whole-machine ticks during the measured time
	heap, stack   int64         // per live call, with its traffic flowing
	slowDrains    int           // slices after which frames were still in flight 2 s later
	drained       bool          // every frame sent was received before hang-up
	ended         bool          // every connection ended in time
	serverDropped map[string]float64
}

func (r result) windowFrames() int64 {
	return r.p.dirs[callerToAgent].measuredSent.Load() + r.p.dirs[agentToCaller].measuredSent.Load()
}

// measure holds every set of calls live at once and measures them in turn:
// each set is set up and warmed (settle) alone, and its heap taken with its
// traffic flowing and the earlier sets parked; then the sets take turns in
// o.rounds slices of the measured time, so that noise from other processes
// falls on all of them alike; then every call hangs up. Every step is
// bounded in time.
func measure(o options, a *agent, srv bridge, sets []*callers) []result {
	budget := 5*time.Minute + 2*(o.settle+o.duration)
	res := make([]result, len(sets))
	dropped0 := srv.stats(false).Dropped
	// Memory and CPU count the server's process too when it is not this one.
	memNow := func() memory {
		m, s := measureMemory(), srv.stats(true)
		return memory{heap: m.heap + s.Heap, stack: m.stack + s.Stack}
	}
	cpuNow := func() time.Duration { return cpu.Process() + srv.stats(false).CPU }
	prev := memNow()
	for i, c := range sets {
		p := newPhase(c.name(), budget)
		a.phase.Store(p)
		began := time.Now()
		res[i] = result{p: p, calls: c.open(p, o.calls, o.setupConc)}
		res[i].setup = time.Since(began)
		p.setActive(true)
		time.Sleep(o.settle)
		mem := memNow()
		if c.bridgeAddr != "" {
			writeProfile("heap", o.memProf)
		}
		if res[i].calls > 0 {
			res[i].heap = (int64(mem.heap) - int64(prev.heap)) / int64(res[i].calls)
			res[i].stack = (int64(mem.stack) - int64(prev.stack)) / int64(res[i].calls)
		}
		prev = mem
		p.setActive(false)
		p.drained(2 * time.Second)
	}

	stopProfile := profileCPU(o.cpuProf)
	slice := o.duration / time.Duration(o.rounds)
	for range o.rounds {
		for i := range res {
			r := &res[i]
			r.p.setActive(true)
			time.Sleep(leadIn)
			busy0, total0 := cpu.Machine()
			cpu0, t0 := cpuNow(), time.Now()
			r.p.measuring.Store(true)
			time.Sleep(slice)
			r.p.measuring.Store(false)
			r.cpu += cpuNow() - cpu0
			busy1, total1 := cpu.Machine()
			r.machineBusy += busy1 - busy0
			r.machineTotal += total1 - total0
			r.window += time.Since(t0)
			r.p.setActive(false)
			if !r.p.drained(2 * time.Second) {
				r.slowDrains++
			}
		}
	}
	stopProfile()

	for i := range res {
		res[i].agentConns = res[i].p.agentConns.Load()
		close(res[i].p.stopSend)
	}
	for i := range res {
		res[i].drained = res[i].p.drained(5 * time.Second)
		close(res[i].p.hangup)
	}
	for i := range res {
		res[i].ended = res[i].p.waitAll(30 * time.Second)
	}
	for i, c := range sets {
		if c.bridgeAddr == "" {
			continue
		}
		res[i].serverDropped = srv.stats(false).Dropped
		for k, v := range dropped0 {
			res[i].serverDropped[k] -= v
		}
	}
	return res
}

// profileCPU starts a CPU profile into path, if set; the returned function
// stops it.
func profileCPU(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cpu profile:", err)
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }
}

func writeProfile(name, path string) {
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup(name).WriteTo(f, 0)
		_ = f.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, name, "profile:", err)
	}
}
