package webhookserver

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gorilla/websocket"

	"github.com/loquent/twilio-voice-operator/internal/egress"
)

// newAgentDialer builds the WebSocket dialer for agents. Agent URLs are
// written by tenants, so every TCP connection it opens is checked by policy
// on the resolved IP:port, at connect time (egress.Policy.DialContext): a
// name resolving to a refused address does not get through. Through an HTTP
// proxy from the environment the connection goes to the proxy, so the
// agent's own host is resolved and checked before the proxy is asked to
// connect to it. Refusals are counted by reason.
func newAgentDialer(timeout time.Duration, policy *egress.Policy, m *Metrics) *websocket.Dialer {
	dial := policy.DialContext(&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second})
	return &websocket.Dialer{
		HandshakeTimeout: timeout,
		ReadBufferSize:   1024,
		WriteBufferSize:  1024,
		WriteBufferPool:  wsWriteBuffers,
		Proxy:            agentProxy(policy, http.ProxyFromEnvironment, m),
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dial(ctx, network, addr)
			countRefusal(m, err)
			return conn, err
		},
	}
}

// agentProxy wraps proxy (http.ProxyFromEnvironment) so that an agent
// reached through a proxy is checked against policy first.
func agentProxy(policy *egress.Policy, proxy func(*http.Request) (*url.URL, error), m *Metrics) func(*http.Request) (*url.URL, error) {
	return egressProxy(policy, proxy, "agent", func(err error) { countRefusal(m, err) })
}

// egressProxy wraps proxy (http.ProxyFromEnvironment) so that a destination
// (what: "agent", "event sink") reached through a proxy is checked against
// policy first; refused sees every refusal.
func egressProxy(policy *egress.Policy, proxy func(*http.Request) (*url.URL, error), what string, refused func(error)) func(*http.Request) (*url.URL, error) {
	return func(req *http.Request) (*url.URL, error) {
		u, err := proxy(req)
		if err != nil || u == nil {
			return u, err
		}
		port := uint16(80)
		if req.URL.Scheme == "https" || req.URL.Scheme == "wss" {
			port = 443
		}
		if p := req.URL.Port(); p != "" {
			n, err := strconv.ParseUint(p, 10, 16)
			if err != nil {
				return nil, fmt.Errorf("%s port %q: %w", what, p, err)
			}
			port = uint16(n)
		}
		if err := policy.CheckResolved(req.Context(), nil, req.URL.Hostname(), port); err != nil {
			refused(err)
			return nil, fmt.Errorf("%s through proxy %s: %w", what, u.Redacted(), err)
		}
		return u, nil
	}
}

// countRefusal counts err if the egress policy refused the destination.
func countRefusal(m *Metrics, err error) {
	if reason, ok := egress.ReasonOf(err); ok {
		m.AgentDialsRefused.WithLabelValues(string(reason)).Inc()
	}
}

// agentDialOutcome is the stream outcome of a failed agent dial:
// agent_refused when the egress policy refused the destination,
// agent_unreachable otherwise. Either way the Twilio side is closed cleanly.
func agentDialOutcome(err error) string {
	if _, ok := egress.ReasonOf(err); ok {
		return outcomeAgentRefused
	}
	return outcomeAgentUnreachable
}

// agentEgressPolicy builds the agent egress policy of the command line:
// --agent-allowed-destinations, --allow-loopback-agents, and the server's
// own listener ports.
func (c Config) agentEgressPolicy() (*egress.Policy, error) {
	p, err := egress.New(egress.Options{
		Allowed:       c.AgentAllowedDestinations,
		AllowLoopback: c.AllowLoopbackAgents,
		OwnPorts:      c.ownPorts(),
	})
	if err != nil {
		return nil, fmt.Errorf("agent egress policy: %w", err)
	}
	return p, nil
}

// ownPorts returns the ports of the server's listeners, which no agent may
// be dialled at on the server's own addresses. Disabled ("0") and
// unparseable addresses, and port 0, contribute nothing.
func (c Config) ownPorts() []uint16 {
	var ports []uint16
	for _, addr := range []string{c.ListenAddress, c.MetricsAddress, c.ProbeAddress} {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			continue
		}
		if n, err := net.LookupPort("tcp", p); err == nil && n > 0 && n <= 65535 {
			ports = append(ports, uint16(n))
		}
	}
	return ports
}
