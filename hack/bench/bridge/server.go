package main

import (
	"fmt"
	"os"
	"time"

	"github.com/loquent/twilio-voice-operator/hack/bench/internal/cpu"
	"github.com/loquent/twilio-voice-operator/hack/bench/internal/realserver"
)

const (
	publicURL  = realserver.PublicURL
	accountSID = realserver.AccountSID
	authToken  = realserver.AuthToken
)

// number returns the E.164 number of call i.
func number(i int) string { return realserver.Number(i) }

// target is a server process the calls go through: the relay or the real
// webhookserver binary.
type target struct {
	name       string
	pid        int
	metricsURL string
}

func (t target) cpu() time.Duration { return cpu.Of(t.pid) }

// memory is the heap and stack the process has in use (Go's MemStats
// HeapInuse + StackInuse, from its /metrics). The server's own collections
// are not forced from outside, so this is the least of samples taken every
// 100 ms for d: close to what is live right after a collection.
func (t target) memory(d time.Duration) int64 {
	least := int64(-1)
	for end := time.Now().Add(d); ; {
		m, err := realserver.Scrape(t.metricsURL)
		if err != nil {
			fmt.Fprintln(os.Stderr, t.name, "metrics:", err)
		} else {
			v := int64(m.Sum("go_memstats_heap_inuse_bytes") + m.Sum("go_memstats_stack_inuse_bytes"))
			if least < 0 || v < least {
				least = v
			}
		}
		if !time.Now().Before(end) {
			return max(least, 0)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// counters returns the real server's relayed and dropped frames (zero for the relay).
func (t target) counters() (relayed, dropped float64) {
	if t.name != "bridge" {
		return 0, 0
	}
	m, err := realserver.Scrape(t.metricsURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, t.name, "metrics:", err)
		return 0, 0
	}
	return m.Sum("twilio_webhook_stream_frames_relayed_total"), m.Sum("twilio_webhook_stream_frames_dropped_total")
}
