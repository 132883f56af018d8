package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// hist is a concurrent log-linear latency histogram: exact below 64 ns, then
// 64 buckets per power of two (≤ 1.6% error), up to ~18 minutes.
type hist struct {
	buckets [64 + 34*64]atomic.Int64
	count   atomic.Int64
	max     atomic.Int64
}

func bucketOf(ns int64) int {
	if ns < 64 {
		return int(max(ns, 0))
	}
	shift := bits.Len64(uint64(ns)) - 7 // ns>>shift is in [64, 128)
	i := 64 + shift*64 + int(ns>>shift) - 64
	return min(i, 64+34*64-1)
}

// bucketMid is the middle of bucket i, in ns.
func bucketMid(i int) int64 {
	if i < 64 {
		return int64(i)
	}
	shift := (i - 64) / 64
	lo := int64(64+(i-64)%64) << shift
	return lo + (int64(1)<<shift)/2
}

func (h *hist) record(ns int64) {
	h.buckets[bucketOf(ns)].Add(1)
	h.count.Add(1)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			return
		}
	}
}

// quantile returns the q-quantile (nearest rank), or 0 without samples.
func (h *hist) quantile(q float64) time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	rank := max(int64(q*float64(n)+0.5), 1)
	var seen int64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen >= rank {
			return time.Duration(min(bucketMid(i), h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}
