package main

import (
	"time"
)

// leadIn is the unmeasured start of each slice: the set's senders restart.
const leadIn = 200 * time.Millisecond

// result is one set of calls through one server, measured.
type result struct {
	name        string
	p           *phase
	calls       int
	agentConns  int64
	setup       time.Duration
	window      time.Duration // measured time, all slices
	serverCPU   time.Duration // the server process's CPU during the measured time
	memPerCall  int64         // the server's heap + stack per live call, traffic flowing
	sliceP99    []time.Duration
	slowDrains  int  // slices after which frames were still in flight 2 s later
	drained     bool // every frame sent was received before hang-up
	ended       bool // every connection ended in time
	relayed     float64
	dropped     float64
	machineBusy uint64
	machineAll  uint64
}

// relayedFrames are the frames the server relayed while measured: each
// caller frame once toward the agent and once back as its echo.
func (r result) relayedFrames() int64 {
	return r.p.dirs[callerToAgent].measuredSent.Load() + r.p.dirs[agentToCaller].measuredSent.Load()
}

// measure holds both sets of n calls live at once and measures them in turn:
// each set is set up and warmed (settle) alone, and its server's memory
// taken with its traffic flowing and the other set parked; then the sets
// take turns in o.rounds slices of the measured time, so that noise from
// other processes falls on both alike; then every call hangs up. Every step
// is bounded in time.
func measure(o options, n int, a *agent, sets []*callers, targets []target) []result {
	budget := 5*time.Minute + 2*(o.settle+o.duration)
	res := make([]result, len(sets))
	for i, c := range sets {
		t := targets[i]
		relayed0, dropped0 := t.counters()
		before := t.memory(time.Second)
		p := newPhase(c.name, budget)
		a.phase.Store(p)
		began := time.Now()
		res[i] = result{name: c.name, p: p, calls: c.open(p, n, o.setupConc)}
		res[i].setup = time.Since(began)
		res[i].relayed, res[i].dropped = -relayed0, -dropped0
		p.setActive(true)
		time.Sleep(o.settle)
		live := t.memory(2 * time.Second)
		if res[i].calls > 0 {
			res[i].memPerCall = (live - before) / int64(res[i].calls)
		}
		p.setActive(false)
		p.drained(2 * time.Second)
	}

	slice := o.duration / time.Duration(o.rounds)
	for range o.rounds {
		for i := range res {
			measureSlice(&res[i], targets[i], slice)
		}
	}

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
		relayed, dropped := targets[i].counters()
		res[i].relayed += relayed
		res[i].dropped += dropped
	}
	return res
}

// measureSlice lets r's callers send for one slice and measures it.
func measureSlice(r *result, t target, slice time.Duration) {
	r.p.setActive(true)
	time.Sleep(leadIn)
	h := &hist{}
	r.p.dirs[agentToCaller].sliceLat.Store(h)
	busy0, all0 := machine()
	cpu0, t0 := t.cpu(), time.Now()
	r.p.measuring.Store(true)
	time.Sleep(slice)
	r.p.measuring.Store(false)
	r.serverCPU += t.cpu() - cpu0
	r.window += time.Since(t0)
	busy1, all1 := machine()
	r.machineBusy += busy1 - busy0
	r.machineAll += all1 - all0
	r.p.setActive(false)
	if !r.p.drained(2 * time.Second) {
		r.slowDrains++
	}
	r.p.dirs[agentToCaller].sliceLat.Store(nil)
	r.sliceP99 = append(r.sliceP99, h.quantile(0.99))
}
