package webhookserver

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/loquent/twilio-voice-operator/internal/egress"
)

// TestAgentDestinationRefused: with the default egress policy (no
// --allow-loopback-agents) an agent on loopback is refused where the dial
// happens, whether its URL names the address or a name that resolves to it.
// The caller's stream is closed cleanly, as for an unreachable agent, the
// refusal is counted, and the agent never sees a connection.
func TestAgentDestinationRefused(t *testing.T) {
	for i, tt := range []struct{ name, host string }{
		{"loopback address", "127.0.0.1"},
		{"name resolving to loopback", "localhost"},
		{"IPv4-mapped loopback", "[::ffff:127.0.0.1]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			ns := newNamespace(t)
			acct := createAccount(t, ns, "main")
			agent := newTestAgent(t, false)
			_, port, err := net.SplitHostPort(agent.srv.Listener.Addr().String())
			g.Expect(err).NotTo(HaveOccurred())
			number := "+1415555017" + string(rune('0'+i))
			createNumber(t, ns, "support", number, "main", "ws://"+tt.host+":"+port+"/media")
			h := startServer(t, ns, func(o *Options) { o.AgentEgress = nil }) // the default policy

			c := h.routedCall(g, acct, "+15550001", number)
			c.open(nil)
			ce := c.readUntilClosed()
			g.Expect(ce).NotTo(BeNil(), "the Twilio side is closed with a close frame")
			g.Expect(ce.Code).To(Equal(websocket.CloseTryAgainLater))
			g.Eventually(func() float64 {
				return counterValue(h.metrics.AgentDialsRefused.WithLabelValues(string(egress.ReasonLoopback)))
			}).Should(Equal(1.0))
			g.Eventually(func() float64 {
				return counterValue(h.metrics.Streams.WithLabelValues(outcomeAgentRefused))
			}).Should(Equal(1.0))
			g.Expect(counterValue(h.metrics.Streams.WithLabelValues(outcomeAgentUnreachable))).To(BeZero())
			g.Consistently(agent.conns, 200*time.Millisecond).ShouldNot(Receive(), "no connection reached the agent")
		})
	}
}

// TestAgentDialer: the agent dialer's refusals are told apart from
// unreachable agents (agentDialOutcome) and counted by reason.
func TestAgentDialer(t *testing.T) {
	g := NewWithT(t)
	metrics, err := NewMetrics(prometheus.NewRegistry())
	g.Expect(err).NotTo(HaveOccurred())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	dead := ln.Addr().String()
	g.Expect(ln.Close()).To(Succeed())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	def, err := egress.New(egress.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	_, _, err = newAgentDialer(time.Second, def, metrics).DialContext(ctx, "ws://"+dead+"/media", nil)
	g.Expect(err).To(MatchError(egress.ErrRefused))
	g.Expect(err.Error()).To(ContainSubstring("--allow-loopback-agents"))
	g.Expect(agentDialOutcome(err)).To(Equal(outcomeAgentRefused))
	g.Expect(counterValue(metrics.AgentDialsRefused.WithLabelValues(string(egress.ReasonLoopback)))).To(Equal(1.0))

	_, _, err = newAgentDialer(time.Second, def, metrics).DialContext(ctx, "ws://169.254.169.254/latest/meta-data", nil)
	g.Expect(agentDialOutcome(err)).To(Equal(outcomeAgentRefused))
	g.Expect(counterValue(metrics.AgentDialsRefused.WithLabelValues(string(egress.ReasonLinkLocal)))).To(Equal(1.0))

	loop, err := egress.New(egress.Options{AllowLoopback: true})
	g.Expect(err).NotTo(HaveOccurred())
	_, _, err = newAgentDialer(time.Second, loop, metrics).DialContext(ctx, "ws://"+dead+"/media", nil)
	g.Expect(err).To(HaveOccurred())
	g.Expect(errors.Is(err, egress.ErrRefused)).To(BeFalse())
	g.Expect(agentDialOutcome(err)).To(Equal(outcomeAgentUnreachable))
}

// TestAgentProxyChecksTheAgent: through an HTTP proxy the TCP connection
// goes to the proxy, so the agent's own host is checked before the proxy
// is asked for it.
func TestAgentProxyChecksTheAgent(t *testing.T) {
	g := NewWithT(t)
	metrics, err := NewMetrics(prometheus.NewRegistry())
	g.Expect(err).NotTo(HaveOccurred())
	def, err := egress.New(egress.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	proxyURL := &url.URL{Scheme: "http", Host: "proxy.example.test:3128"}
	proxy := agentProxy(def, func(*http.Request) (*url.URL, error) { return proxyURL, nil }, metrics)
	req := func(raw string) *http.Request {
		u, err := url.Parse(raw)
		g.Expect(err).NotTo(HaveOccurred())
		return (&http.Request{URL: u}).WithContext(context.Background())
	}

	_, err = proxy(req("http://localhost:8080/media"))
	g.Expect(err).To(MatchError(egress.ErrRefused))
	_, err = proxy(req("https://169.254.169.254/"))
	g.Expect(err).To(MatchError(egress.ErrRefused))
	g.Expect(counterValue(metrics.AgentDialsRefused.WithLabelValues(string(egress.ReasonLoopback)))).To(Equal(1.0))
	g.Expect(counterValue(metrics.AgentDialsRefused.WithLabelValues(string(egress.ReasonLinkLocal)))).To(Equal(1.0))

	got, err := proxy(req("https://192.0.2.10:8443/media"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(proxyURL))

	none := agentProxy(def, func(*http.Request) (*url.URL, error) { return nil, nil }, metrics)
	got, err = none(req("http://localhost:8080/media"))
	g.Expect(err).NotTo(HaveOccurred(), "without a proxy the dial itself is checked")
	g.Expect(got).To(BeNil())
}

// agentEgressFlags parses args (after the required flags) and returns the
// config and the part of the error about the agent egress flags: other
// flags' problems are not this test's business.
func agentEgressFlags(args ...string) (Config, string) {
	c, err := parseFlags(io.Discard, append([]string{"--public-url=https://voice.acme-corp.io", "--stream-token-key-file=/etc/key", "--credentials-secret=ops/creds"}, args...))
	if err == nil {
		return c, ""
	}
	var mine []string
	for _, line := range strings.Split(err.Error(), "\n") {
		if strings.Contains(line, "agent-allowed-destinations") || strings.Contains(line, "loopback") || strings.HasPrefix(line, "entry ") {
			mine = append(mine, line)
		}
	}
	return c, strings.Join(mine, "\n")
}

func TestParseFlagsAgentEgress(t *testing.T) {
	g := NewWithT(t)

	c, errs := agentEgressFlags()
	g.Expect(errs).To(BeEmpty())
	g.Expect(c.AgentAllowedDestinations).To(BeEmpty())
	g.Expect(c.AllowLoopbackAgents).To(BeFalse())
	g.Expect(c.ownPorts()).To(ConsistOf(uint16(8080), uint16(9090), uint16(8081)))

	c, errs = agentEgressFlags("--agent-allowed-destinations= agents.example.com, *.agents.svc.cluster.local,10.8.0.0/16,,2001:db8::7",
		"--allow-loopback-agents", "--metrics-bind-address=0", "--health-probe-bind-address=127.0.0.1:9001")
	g.Expect(errs).To(BeEmpty())
	g.Expect(c.AgentAllowedDestinations).To(Equal([]string{"agents.example.com", "*.agents.svc.cluster.local", "10.8.0.0/16", "2001:db8::7"}))
	g.Expect(c.AllowLoopbackAgents).To(BeTrue())
	g.Expect(c.ownPorts()).To(ConsistOf(uint16(8080), uint16(9001)))

	_, errs = agentEgressFlags("--agent-allowed-destinations=127.0.0.1,https://agents.example.com,10.0.0.1/8")
	for _, want := range []string{"--agent-allowed-destinations", `"127.0.0.1"`, "--allow-loopback-agents", `"https://agents.example.com"`, "10.0.0.0/8"} {
		g.Expect(errs).To(ContainSubstring(want))
	}
	_, errs = agentEgressFlags("--agent-allowed-destinations=169.254.169.254")
	g.Expect(errs).To(ContainSubstring("always refused"))
}

// TestOwnPortsRefused: the policy built from the command line refuses the
// server's own listener ports, on loopback too when loopback agents are
// allowed, and a call routed to one of them is closed like a refused agent.
func TestOwnPortsRefused(t *testing.T) {
	g := NewWithT(t)
	metricsLn, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = metricsLn.Close() }()
	metricsAddr := metricsLn.Addr().String()
	cfg, errs := agentEgressFlags("--metrics-bind-address="+metricsAddr, "--allow-loopback-agents")
	g.Expect(errs).To(BeEmpty())
	policy, err := cfg.agentEgressPolicy()
	g.Expect(err).NotTo(HaveOccurred())
	other := newTestAgent(t, false) // on loopback, not an own port
	g.Expect(policy.CheckURL(other.url)).To(Succeed())
	g.Expect(policy.CheckURL("ws://" + metricsAddr + "/metrics")).To(MatchError(ContainSubstring("own ports")))

	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	createNumber(t, ns, "support", "+14155550180", "main", "ws://"+metricsAddr+"/metrics")
	h := startServer(t, ns, func(o *Options) { o.AgentEgress = policy })
	c := h.routedCall(g, acct, "+15550001", "+14155550180")
	c.open(nil)
	ce := c.readUntilClosed()
	g.Expect(ce).NotTo(BeNil())
	g.Expect(ce.Code).To(Equal(websocket.CloseTryAgainLater))
	g.Eventually(func() float64 {
		return counterValue(h.metrics.AgentDialsRefused.WithLabelValues(string(egress.ReasonOwnPort)))
	}).Should(Equal(1.0))
}
