package webhookserver

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/gorilla/websocket"
	. "github.com/onsi/gomega"

	"github.com/loquent/twilio-voice-operator/internal/preflight"
)

// logLines captures a server's log lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) options(o *Options) {
	o.Log = funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 0})
}

func (l *logLines) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// closedPortURL is an agent URL nothing listens at.
func closedPortURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "ws://" + ln.Addr().String() + "/media"
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return u
}

// rewriteTo delivers a request for the public URL to the test server.
func (h *harness) rewriteTo(public string) string {
	return "http://" + h.addr + strings.TrimPrefix(public, testPublicURL)
}

// preflightForm is the voice webhook form of a preflight.
func preflightForm(accountSID, to string) url.Values {
	f := voiceForm(accountSID, newCallSID(), to, to)
	f.Set(preflight.FormField, "1")
	return f
}

// TestPreflightCheck runs the manager's preflight (internal/preflight.Check)
// against the real handler: a number streamed to a reachable agent passes;
// an unknown number, a wrong token and an unreachable agent fail as the
// preflight protocol says; a server that is not a webhook server fails.
// Preflights are not calls: they are counted under their own outcome and
// never logged as answered calls.
func TestPreflightCheck(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	agent := newTestAgent(t, false)
	createNumber(t, ns, "support", "+14155550400", "main", agent.url)
	createNumber(t, ns, "dead", "+14155550401", "main", closedPortURL(t))
	createNumber(t, ns, "off", "+14155550402", "main", agent.url, disabled())
	var logs logLines
	h := startServer(t, ns, logs.options)
	for _, n := range []string{"+14155550400", "+14155550401", "+14155550402"} {
		g.Eventually(func() bool { r, ok := h.routing.Lookup(n); return ok && r.AccountSID == acct.sid }).Should(BeTrue(), n)
	}
	request := func(number, object string) preflight.Request {
		return preflight.Request{VoiceURL: testPublicURL + VoicePath, AccountSID: acct.sid, AuthToken: acct.token,
			Number: number, Object: ns + "/" + object, RewriteURL: h.rewriteTo}
	}
	failure := func(g Gomega, err error) *preflight.Failure {
		g.Expect(err).To(HaveOccurred())
		f, ok := preflight.AsFailure(err)
		g.Expect(ok).To(BeTrue(), "a *preflight.Failure: %v", err)
		return f
	}

	t.Run("ok with a reachable agent", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(preflight.Check(t.Context(), nil, request("+14155550400", "support"))).To(Succeed())
		ac := agent.accept(g)
		err := ac.waitClosed(g)
		g.Expect(websocket.IsCloseError(err, websocket.CloseNormalClosure)).To(BeTrue(), "the agent's WebSocket is closed with a normal close frame, got %v", err)
		g.Consistently(agent.conns, 200*time.Millisecond).ShouldNot(Receive(), "opened once")
	})
	t.Run("routed through another object", func(t *testing.T) {
		g := NewWithT(t)
		f := failure(g, preflight.Check(t.Context(), nil, request("+14155550400", "other")))
		g.Expect(f.Pending).To(BeTrue())
		g.Expect(f.Message).To(ContainSubstring(ns + "/support"))
		agent.accept(g).waitClosed(g)
	})
	t.Run("unknown number", func(t *testing.T) {
		g := NewWithT(t)
		f := failure(g, preflight.Check(t.Context(), nil, request("+14155559999", "support")))
		g.Expect(f.Pending).To(BeTrue())
		g.Expect(f.Message).To(ContainSubstring(outcomeHangupUnknown))
	})
	t.Run("disabled number", func(t *testing.T) {
		g := NewWithT(t)
		f := failure(g, preflight.Check(t.Context(), nil, request("+14155550402", "off")))
		g.Expect(f.Pending).To(BeTrue())
		g.Expect(f.Message).To(ContainSubstring(outcomeHangupDisabled))
	})
	t.Run("agent unreachable", func(t *testing.T) {
		g := NewWithT(t)
		f := failure(g, preflight.Check(t.Context(), nil, request("+14155550401", "dead")))
		g.Expect(f.Pending).To(BeFalse())
		g.Expect(f.Message).To(ContainSubstring("could not open the agent's WebSocket"))
		g.Expect(f.Message).To(ContainSubstring("failed: " + outcomeAgentUnreachable + ": dial agent: "))
	})
	t.Run("wrong token", func(t *testing.T) {
		g := NewWithT(t)
		req := request("+14155550400", "support")
		req.AuthToken = "notTheToken1"
		f := failure(g, preflight.Check(t.Context(), nil, req))
		g.Expect(f.Pending).To(BeTrue())
		g.Expect(f.Message).To(ContainSubstring("403"))
	})
	t.Run("not a webhook server", func(t *testing.T) {
		g := NewWithT(t)
		plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/xml")
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Say>Hello</Say></Response>`)
		}))
		defer plain.Close()
		req := request("+14155550400", "support")
		req.RewriteURL = func(string) string { return plain.URL + VoicePath }
		f := failure(g, preflight.Check(t.Context(), nil, req))
		g.Expect(f.Pending).To(BeFalse())
		g.Expect(f.Message).To(ContainSubstring(preflight.HeaderOutcome))
	})

	// Five preflights reached the handler (the forged one was refused first);
	// none counted or logged as a call, no stream opened.
	g.Expect(counterValue(h.metrics.Requests.WithLabelValues(routeVoice, outcomePreflight))).To(Equal(5.0))
	for _, o := range []string{outcomeOK, outcomeHangupUnknown, outcomeHangupDisabled} {
		g.Expect(counterValue(h.metrics.Requests.WithLabelValues(routeVoice, o))).To(BeZero(), o)
	}
	g.Expect(counterValue(h.metrics.Requests.WithLabelValues(routeVoice, outcomeForbidden))).To(Equal(1.0))
	g.Expect(counterValue(h.metrics.Requests.WithLabelValues(routeStream, outcomeUpgraded))).To(BeZero())
	g.Expect(counterValue(h.metrics.ActiveStreams)).To(BeZero())
	g.Expect(logs.all()).NotTo(ContainSubstring("Answering call"))
	g.Expect(logs.all()).NotTo(ContainSubstring("Refusing call"))
}

// TestPreflightAnswer reads the headers and TwiML of preflights directly,
// and checks that the answer's stream token opens no stream.
func TestPreflightAnswer(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	agent := newTestAgent(t, false)
	createNumber(t, ns, "support", "+14155550410", "main", agent.url, withFallback(sayFallback("Try later.")))
	h := startServer(t, ns)
	g.Eventually(func() bool { r, ok := h.routing.Lookup("+14155550410"); return ok && r.AccountSID == acct.sid }).Should(BeTrue())

	resp := h.post(VoicePath, preflightForm(acct.sid, "+14155550410"), acct.token)
	body := readBody(t, resp)
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(resp.Header.Get(preflight.HeaderOutcome)).To(Equal(preflight.OutcomeOK))
	g.Expect(resp.Header.Get(preflight.HeaderRoute)).To(Equal(ns + "/support"))
	g.Expect(resp.Header.Get(preflight.HeaderAgent)).To(Equal(preflight.AgentOK))
	doc := parseTwiML(t, body)
	g.Expect(doc.Order).To(Equal([]string{"Start", "Connect", "Say", "Hangup"}), "the TwiML a call gets, fallback included")
	g.Expect(doc.Say).To(Equal([]string{"Try later."}))
	g.Expect(doc.params()).To(Equal(map[string]string{"from": "+14155550410", "to": "+14155550410", "token": preflight.StreamToken}))
	agent.accept(g).waitClosed(g)

	// Not routed: the hang-up TwiML, the outcome, no agent header.
	resp = h.post(VoicePath, preflightForm(acct.sid, "+14155559999"), acct.token)
	body = readBody(t, resp)
	g.Expect(resp.Header.Get(preflight.HeaderOutcome)).To(Equal(outcomeHangupUnknown))
	g.Expect(resp.Header.Values(preflight.HeaderRoute)).To(BeEmpty())
	g.Expect(resp.Header.Values(preflight.HeaderAgent)).To(BeEmpty())
	g.Expect(parseTwiML(t, body).Order).To(Equal([]string{"Say", "Hangup"}))

	// A number routed through another account's object: the outcome, but
	// not the other tenant's object.
	other := createAccount(t, ns, "other")
	g.Eventually(func() int { return knownAccounts(h.routing) }).Should(Equal(2))
	resp = h.post(VoicePath, preflightForm(other.sid, "+14155550410"), other.token)
	readBody(t, resp)
	g.Expect(resp.Header.Get(preflight.HeaderOutcome)).To(Equal(outcomeHangupWrongAcct))
	g.Expect(resp.Header.Values(preflight.HeaderRoute)).To(BeEmpty())

	// A plain call carries none of the preflight headers.
	resp = h.post(VoicePath, voiceForm(acct.sid, newCallSID(), "+15550001", "+14155550410"), acct.token)
	readBody(t, resp)
	g.Expect(resp.Header.Values(preflight.HeaderOutcome)).To(BeEmpty())

	// A stream started with the preflight's token is refused, and the agent
	// is not dialled for it.
	c := &call{h: h, acct: acct, callSID: newCallSID(), from: "+14155550410", to: "+14155550410", streamSID: "MZ" + newCallSID()[2:],
		twiml: doc, streamURL: doc.Connect.Stream.URL}
	c.open(nil)
	ce := c.readUntilClosed()
	g.Expect(ce).NotTo(BeNil())
	g.Expect(ce.Code).To(Equal(websocket.ClosePolicyViolation))
	g.Eventually(func() float64 { return counterValue(h.metrics.Streams.WithLabelValues(outcomeTokenInvalid)) }).Should(Equal(1.0))
	g.Consistently(agent.conns, 200*time.Millisecond).ShouldNot(Receive())
}

// headerSafe keeps an error message a valid, bounded header value.
func TestHeaderSafe(t *testing.T) {
	g := NewWithT(t)
	g.Expect(headerSafe("dial tcp: refused")).To(Equal("dial tcp: refused"))
	g.Expect(headerSafe("a\r\nb\x00c\td")).To(Equal("a  b c d"))
	long := headerSafe(strings.Repeat("é", maxHeaderValue))
	g.Expect(len(long)).To(BeNumerically("<=", maxHeaderValue))
	g.Expect(strings.ToValidUTF8(long, "?")).To(Equal(long))
}
