package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/loquent/twilio-voice-operator/internal/egress"
	"github.com/loquent/twilio-voice-operator/webhookserver"
)

const (
	publicURL  = "https://voice.bench.test"
	accountSID = "AC0000000000000000000000000000be"
	authToken  = "bench-auth-token-0123456789abcdef"
	droppedMet = "twilio_webhook_stream_frames_dropped_total"
)

// number returns the E.164 number of call i.
func number(i int) string { return fmt.Sprintf("+1415%07d", i) }

// staticRoutes routes n numbers of one account to one agent: the webhook
// server's RouteSource without the cluster.
func staticRoutes(n int, agentURL string) *webhookserver.StaticRoutes {
	routes := make([]webhookserver.Route, 0, n)
	for i := range n {
		routes = append(routes, webhookserver.Route{
			Number: number(i), Object: types.NamespacedName{Namespace: "bench", Name: fmt.Sprintf("n%d", i)},
			AccountSID: accountSID, AgentURL: agentURL, Record: false, Enabled: true,
		})
	}
	return webhookserver.NewStaticRoutes(routes, map[string]string{accountSID: authToken})
}

// serverStats is what the bridge server has used and counted.
type serverStats struct {
	// Heap and Stack in use (after GC) and CPU used by the server's process
	// when that is not this one (zero otherwise: this process's own
	// numbers already include them).
	Heap, Stack uint64
	CPU         time.Duration
	// Dropped is the server's dropped-frame count per direction label.
	Dropped map[string]float64
}

// bridge is the server under test, in this process or in a child process.
type bridge interface {
	address() string
	// stats returns the server's counters; with mem, after a full GC.
	stats(mem bool) serverStats
	stop()
}

// bridgeServer is the real webhook server (New + Serve) on a loopback
// listener in this process.
type bridgeServer struct {
	addr string // 127.0.0.1:PORT, where "https://voice.bench.test" is delivered
	reg  *prometheus.Registry
	halt func()
}

func startBridgeServer(calls int, agentURL string) (*bridgeServer, error) {
	reg := prometheus.NewRegistry()
	metrics, err := webhookserver.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	// The bench agent runs on 127.0.0.1, as with --allow-loopback-agents.
	agentEgress, err := egress.New(egress.Options{AllowLoopback: true})
	if err != nil {
		return nil, err
	}
	srv, err := webhookserver.New(webhookserver.Options{
		PublicURL:   publicURL,
		Routes:      staticRoutes(calls, agentURL),
		TokenKeys:   [][]byte{[]byte("bench-stream-token-key-0123456789abcdef")},
		AgentEgress: agentEgress,
		Metrics:     metrics,
		Log:         zap.New(zap.WriteTo(io.Discard)), // production JSON logger, discarded
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	halt := func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "bridge server:", err)
		}
	}
	return &bridgeServer{addr: ln.Addr().String(), reg: reg, halt: halt}, nil
}

func (s *bridgeServer) address() string        { return s.addr }
func (s *bridgeServer) stop()                  { s.halt() }
func (s *bridgeServer) stats(bool) serverStats { return serverStats{Dropped: s.dropped()} }

// dropped returns the server's dropped-frame counters summed per direction
// label ("twilio_to_agent", "agent_to_twilio").
func (s *bridgeServer) dropped() map[string]float64 {
	out := map[string]float64{}
	mfs, err := s.reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != droppedMet {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "direction" {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}
