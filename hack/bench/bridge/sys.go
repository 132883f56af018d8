package main

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
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

// cpuTime is the user plus system CPU time used by this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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

// machineCPU returns the busy and total CPU time of the whole machine, all
// cores, in clock ticks, from /proc/stat (zeros where it is unreadable).
func machineCPU() (busy, total uint64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0
	}
	for i, f := range fields[1:] {
		v, _ := strconv.ParseUint(f, 10, 64)
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}
