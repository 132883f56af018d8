package main

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CPU accounting from /proc (Linux; elsewhere the row says n/a), to show
// where the time goes when convergence is bound by the machine rather than
// by Twilio: this process (operator, emulator and bench in one), its
// children kube-apiserver and etcd, and the whole machine, which may be
// shared with other work.

// clockTick is USER_HZ, 100 on every Linux architecture Go supports.
const clockTick = time.Second / 100

type cpuSample struct {
	ok      bool
	at      time.Time
	procs   map[string]time.Duration // this process, kube-apiserver, etcd
	busy    time.Duration            // machine, all CPUs, not idle or iowait
	machine time.Duration            // machine, all CPUs, in all
}

func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now(), procs: map[string]time.Duration{}}
	self := os.Getpid()
	_, used, err := procStat(self)
	if err != nil {
		return s
	}
	s.procs["operator+emulator (this process)"] = used
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil || pid == self {
			continue
		}
		if comm, used, err := procStat(pid); err == nil && comm.ppid == self {
			s.procs[comm.name] += used
		}
	}
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return s
	}
	var v [10]int64
	for i := 1; i < len(f) && i <= len(v); i++ {
		v[i-1], _ = strconv.ParseInt(f[i], 10, 64)
	}
	// user nice system idle iowait irq softirq steal (guest is inside user)
	busy := v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	s.busy = time.Duration(busy) * clockTick
	s.machine = time.Duration(busy+v[3]+v[4]) * clockTick
	s.ok = true
	return s
}

type procComm struct {
	name string
	ppid int
}

// procStat reads a process's name, parent and CPU time (user + system).
func procStat(pid int) (procComm, time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procComm{}, 0, err
	}
	s := string(data)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procComm{}, 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(s[end+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return procComm{}, 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	ppid, _ := strconv.Atoi(f[1])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return procComm{name: s[open+1 : end], ppid: ppid}, time.Duration(utime+stime) * clockTick, nil
}

// report describes the CPU used between before and s.
func (s cpuSample) report(before cpuSample) string {
	if !s.ok || !before.ok {
		return "n/a"
	}
	wall := s.at.Sub(before.at)
	names := make([]string, 0, len(s.procs))
	for n := range s.procs {
		names = append(names, n)
	}
	used := func(n string) time.Duration { return s.procs[n] - before.procs[n] }
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(used(b), used(a)) }) // largest first
	parts := make([]string, 0, len(names)+1)
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.0fs", n, used(n).Seconds()))
	}
	ncpu := runtime.NumCPU()
	if m := s.machine - before.machine; m > 0 {
		parts = append(parts, fmt.Sprintf("whole machine %.0f of %.0f CPU-seconds busy (%d CPUs × %.0fs)",
			(s.busy-before.busy).Seconds(), m.Seconds(), ncpu, wall.Seconds()))
	}
	return strings.Join(parts, ", ")
}
