package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/loquent/twilio-voice-operator/hack/bench/internal/cpu"
	"github.com/loquent/twilio-voice-operator/hack/bench/internal/realserver"
	"github.com/loquent/twilio-voice-operator/webhookserver"
)

// round is one wrk run against one server.
type round struct {
	requests, statusErrors, socketErrors int64
	elapsed                              time.Duration
	p50, p99, p999, max                  time.Duration
	serverCPU                            time.Duration // the server process's CPU meanwhile
	busy, ticks                          uint64        // whole machine meanwhile
	answered                             float64       // the real server's own count of calls answered meanwhile (metric)
}

// runWrk runs wrk against s for d and parses the script's RESULT line.
func runWrk(wrk, script string, s *server, o options, d time.Duration) (round, error) {
	secs := max(int(d.Round(time.Second)/time.Second), 1)
	cmd := exec.Command(wrk, "-t", strconv.Itoa(o.threads), "-c", strconv.Itoa(o.connections), // #nosec G204 -- wrk with the bench's own arguments
		"-d", strconv.Itoa(secs)+"s", "--timeout", "10s", "-s", script, "http://"+s.addr+webhookserver.VoicePath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return round{}, fmt.Errorf("wrk against %s: %w\n%s", s.name, err, out.String())
	}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "RESULT "); ok {
			return parseResult(rest)
		}
	}
	return round{}, fmt.Errorf("wrk against %s printed no result:\n%s", s.name, out.String())
}

func parseResult(line string) (round, error) {
	var r round
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	for _, kv := range strings.Fields(line) {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return r, fmt.Errorf("wrk result %q: %w", kv, err)
		}
		switch k {
		case "requests":
			r.requests = n
		case "duration_us":
			r.elapsed = us(n)
		case "status_errors":
			r.statusErrors = n
		case "socket_errors":
			r.socketErrors = n
		case "p50_us":
			r.p50 = us(n)
		case "p99_us":
			r.p99 = us(n)
		case "p999_us":
			r.p999 = us(n)
		case "max_us":
			r.max = us(n)
		}
	}
	return r, nil
}

// measureRound runs wrk against s for d and adds what the server used.
func measureRound(wrk, script string, s *server, o options, d time.Duration) (round, error) {
	answered0 := answeredCalls(s)
	cpu0 := cpu.Of(s.pid)
	busy0, ticks0 := cpu.Machine()
	r, err := runWrk(wrk, script, s, o, d)
	if err != nil {
		return r, err
	}
	r.serverCPU = cpu.Of(s.pid) - cpu0
	busy1, ticks1 := cpu.Machine()
	r.busy, r.ticks = busy1-busy0, ticks1-ticks0
	r.answered = answeredCalls(s) - answered0
	return r, nil
}

// answeredCalls is the real server's count of calls answered with a stream
// (0 for the bare handler).
func answeredCalls(s *server) float64 {
	if s.metricsURL == "" {
		return 0
	}
	m, err := realserver.Scrape(s.metricsURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scrape:", err)
		return 0
	}
	return m.Sum("twilio_webhook_requests_total", `route="voice"`, `outcome="ok"`)
}
