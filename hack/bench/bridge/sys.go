package main

import (
	"runtime"
	"syscall"
)

// fdsPerCall: each call is held twice at once, directly (caller socket and
// the agent's accepted socket) and bridged (caller socket, the server's
// accepted socket and its socket to the agent, the agent's accepted socket).
const fdsPerCall = 2 + 4

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

// memory is HeapInuse and StackInuse after a full collection.
type memory struct{ heap, stack uint64 }

func measureMemory() memory {
	runtime.GC()
	runtime.GC() // the second cycle frees what the first one's finalizers released
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memory{heap: ms.HeapInuse, stack: ms.StackInuse}
}
