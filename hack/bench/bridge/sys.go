package main

import (
	"syscall"
)

// fdsPerCall: each call is held twice at once, through the relay and
// through the bridge, and this process holds both ends of each: the
// caller's socket and the agent's accepted socket. The servers' own sockets
// are in their processes (which inherit the raised limit).
const fdsPerCall = 2 * 2

// fdReserve is kept for listeners, the voice webhook's connections and the runtime.
const fdReserve = 256

// fitCalls raises RLIMIT_NOFILE toward what calls need and returns how many
// calls fit, and the limit in force.
func fitCalls(calls int) (int, uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	need := uint64(calls*fdsPerCall + fdReserve)
	if lim.Cur < need {
		want := lim
		want.Cur = min(need, lim.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			lim = want
		}
	}
	if lim.Cur >= need {
		return calls, lim.Cur, nil
	}
	return max(int(lim.Cur)-fdReserve, 0) / fdsPerCall, lim.Cur, nil
}
