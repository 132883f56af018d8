package webhookserver

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/sampleagent"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim/callsim"
)

// routedCall answers a call once the number is routed (the table fills
// asynchronously) and returns it, not yet opened.
func (h *harness) routedCall(g Gomega, acct account, from, to string) *call {
	var c *call
	g.Eventually(func(g Gomega) {
		c = h.answer(acct, from, to)
		g.Expect(c.twiml.Connect).NotTo(BeNil())
	}, 30*time.Second, 20*time.Millisecond).Should(Succeed())
	return c
}

// agentMedia is a media message an agent sends back to the caller.
func agentMedia(streamSID string, i int) []byte {
	return []byte(fmt.Sprintf(`{"event":"media","streamSid":"%s","media":{"payload":"%s"}}`, streamSID, fmt.Sprintf("%0216d", i)))
}

func TestFullCall(t *testing.T) {
	g := NewWithT(t)
	_, acct, agent, h := routedNumber(t, "+14155550130", false)

	c := h.routedCall(g, acct, "+15550001", "+14155550130")
	c.open(nil)
	ac := agent.accept(g)

	// The agent gets Twilio's own opening, with the routing parameters: connected
	// unchanged, start without the stream token and otherwise the same.
	g.Expect(ac.next(g)).To(Equal(c.opening[0]))
	start := ac.next(g)
	g.Expect(start).To(MatchJSON(withoutToken(t, c.opening[1])))
	var sm startMessage
	g.Expect(json.Unmarshal(start, &sm)).To(Succeed())
	g.Expect(sm.Start.CustomParameters).To(Equal(map[string]string{"from": "+15550001", "to": "+14155550130"}))

	// Caller audio, DTMF and a mark reach the agent unchanged and in order.
	for i := 1; i <= 50; i++ {
		c.sendMedia(i)
	}
	c.sendDTMF("5")
	c.sendMark("greeting-done")
	for i := 1; i <= 10; i++ {
		c.sendMedia(50 + i)
	}
	for _, want := range c.sent {
		g.Expect(ac.next(g)).To(Equal(want))
	}

	// Agent audio, a mark and a clear reach the caller unchanged and in order.
	var back [][]byte
	for i := 1; i <= 20; i++ {
		back = append(back, agentMedia(c.streamSID, i))
	}
	back = append(back,
		[]byte(fmt.Sprintf(`{"event":"mark","streamSid":"%s","mark":{"name":"reply-1"}}`, c.streamSID)),
		[]byte(fmt.Sprintf(`{"event":"clear","streamSid":"%s"}`, c.streamSID)),
		agentMedia(c.streamSID, 21))
	for _, f := range back {
		ac.send(t, f)
	}
	for _, want := range back {
		got, err := c.read()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got).To(Equal(want))
	}

	// The caller hangs up: the agent gets stop, then a clean close.
	c.hangUp()
	g.Expect(ac.next(g)).To(Equal(c.sent[len(c.sent)-1]))
	g.Expect(websocket.IsCloseError(ac.waitClosed(g), websocket.CloseNormalClosure)).To(BeTrue())
	g.Expect(c.readUntilClosed()).NotTo(BeNil(), "Twilio side gets a close frame")

	g.Eventually(func() float64 { return counterValue(h.metrics.ActiveStreams) }).Should(BeZero())
	g.Eventually(func() float64 { return counterValue(h.metrics.Streams.WithLabelValues(outcomeCallerClosed)) }).Should(Equal(1.0))
	g.Expect(counterValue(h.metrics.FramesRelayed.WithLabelValues(dirTwilioToAgent))).To(Equal(float64(2 + len(c.sent))))
	g.Expect(counterValue(h.metrics.FramesRelayed.WithLabelValues(dirAgentToTwilio))).To(Equal(float64(len(back))))
	g.Expect(counterValue(h.metrics.FramesDropped.WithLabelValues(dirTwilioToAgent, dropBackpressure))).To(BeZero())
	g.Expect(counterValue(h.metrics.AgentDial.WithLabelValues("ok").(prometheus.Collector))).To(Equal(1.0))
}

// TestPlainHTTPPublicURL: with an http:// public URL (local demos) the
// stream URL is ws:// and upgrades are signed over it.
func TestPlainHTTPPublicURL(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	createNumber(t, ns, "support", "+14155550131", "main", "ws://agent.invalid/media")
	h := startServer(t, ns, func(o *Options) { o.PublicURL = "http://demo.local:8080" })
	g.Eventually(func(g Gomega) {
		form := voiceForm(acct.sid, newCallSID(), "+15550001", "+14155550131")
		resp := h.postSigned(VoicePath, form, sign(acct.token, "http://demo.local:8080"+VoicePath, form))
		doc := parseTwiML(t, readBody(t, resp))
		g.Expect(doc.Connect).NotTo(BeNil())
		g.Expect(doc.Connect.Stream.URL).To(Equal("ws://demo.local:8080" + StreamPath + "/" + acct.sid))
		g.Expect(doc.Start.Recording.Callback).To(Equal("http://demo.local:8080" + RecordingPath + "?to=%2B14155550131" + ConnectionOverrides))
	}).Should(Succeed())
	conn, resp, err := h.dialStreamURL("ws://demo.local:8080"+StreamPath+"/"+acct.sid, acct.token)
	g.Expect(err).NotTo(HaveOccurred(), "%v", resp)
	_ = conn.Close()
}

// withoutToken is a start message as the agent must get it: without the
// stream token.
func withoutToken(t testing.TB, start []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(start, &m); err != nil {
		t.Fatal(err)
	}
	delete(m["start"].(map[string]any)["customParameters"].(map[string]any), paramToken)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStreamUpgradeRefused: an upgrade at StreamPath/{AccountSid} is
// accepted only when signed over that URL (wss or https, with or without
// :443) with that one account's token.
func TestStreamUpgradeRefused(t *testing.T) {
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	other := createAccount(t, ns, "other")
	h := startServer(t, ns)
	NewWithT(t).Eventually(func() int { return knownAccounts(h.routing) }).Should(Equal(2))
	path := StreamPath + "/" + acct.sid
	streamURL := testStreamURL + "/" + acct.sid
	cases := []struct {
		name   string
		path   string
		sig    string
		status int
	}{
		{"missing signature", path, "", http.StatusForbidden},
		{"forged signature", path, sign("guessed", streamURL, nil), http.StatusForbidden},
		{"signed over the pod's host", path, sign(acct.token, "ws://"+h.addr+path, nil), http.StatusForbidden},
		{"signed with params", path, sign(acct.token, streamURL, map[string][]string{"To": {"+1"}}), http.StatusForbidden},
		{"signed with another account's token", path, sign(other.token, streamURL, nil), http.StatusForbidden},
		{"signed for another account's URL", path, sign(acct.token, testStreamURL+"/"+other.sid, nil), http.StatusForbidden},
		{"unknown account", StreamPath + "/" + newAccountSID(), sign(acct.token, streamURL, nil), http.StatusForbidden},
		{"not an account SID", StreamPath + "/x" + acct.sid, sign(acct.token, streamURL, nil), http.StatusNotFound},
		{"below the account", path + "/x", sign(acct.token, streamURL+"/x", nil), http.StatusNotFound},
		{"signed over wss", path, sign(acct.token, streamURL, nil), http.StatusSwitchingProtocols},
		{"signed over wss with :443", path, sign(acct.token, "wss://voice.example.test:443"+path, nil), http.StatusSwitchingProtocols},
		{"signed over https", path, sign(acct.token, testPublicURL+path, nil), http.StatusSwitchingProtocols},
		{"signed over https with :443", path, sign(acct.token, "https://voice.example.test:443"+path, nil), http.StatusSwitchingProtocols},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			hdr := http.Header{}
			if c.sig != "" {
				hdr.Set(signatureHeader, c.sig)
			}
			conn, resp, err := websocket.DefaultDialer.Dial("ws://"+h.addr+c.path, hdr)
			g.Expect(resp).NotTo(BeNil(), "%v", err)
			g.Expect(resp.StatusCode).To(Equal(c.status))
			if conn != nil {
				_ = conn.Close()
			} else {
				g.Expect(err).To(MatchError(websocket.ErrBadHandshake))
			}
		})
	}
	g := NewWithT(t)
	g.Expect(counterValue(h.metrics.SignatureFailures.WithLabelValues(routeStream, sigInvalid))).To(Equal(5.0))
	g.Expect(counterValue(h.metrics.SignatureFailures.WithLabelValues(routeStream, sigMissing))).To(Equal(1.0))
	g.Expect(counterValue(h.metrics.SignatureFailures.WithLabelValues(routeStream, sigUnknownAccount))).To(Equal(1.0))
}

// TestStreamTokenKeyRotationAcrossReplicas: in the middle of a key rotation
// one replica answers a call with the old key while the stream lands on a
// replica that already signs with the new one; the call goes through. A
// replica that dropped the old key too early refuses it.
func TestStreamTokenKeyRotationAcrossReplicas(t *testing.T) {
	g := NewWithT(t)
	newKey := []byte("the-new-stream-token-key-0123456789abcdef")
	ns, acct, agent, before := routedNumber(t, "+14155550145", false)
	rotated := startServer(t, ns, func(o *Options) { o.TokenKeys = [][]byte{newKey, testKey} })
	tooEarly := startServer(t, ns, func(o *Options) { o.TokenKeys = [][]byte{newKey} })

	c := before.routedCall(g, acct, "+15550001", "+14155550145")
	c.h = rotated
	c.open(nil)
	ac := agent.accept(g)
	g.Expect(ac.next(g)).To(Equal(c.opening[0]))
	g.Expect(ac.next(g)).To(MatchJSON(withoutToken(t, c.opening[1])), "the stream started on the other replica")
	c.hangUp()
	ac.waitClosed(g)

	c = before.routedCall(g, acct, "+15550001", "+14155550145")
	c.h = tooEarly
	c.open(nil)
	ce := c.readUntilClosed()
	g.Expect(ce).NotTo(BeNil())
	g.Expect(ce.Code).To(Equal(websocket.ClosePolicyViolation))
}

// TestStreamTokenRefused: a stream whose start does not carry a valid token
// for exactly this call, number and account is closed (policy violation)
// before any agent is dialled.
func TestStreamTokenRefused(t *testing.T) {
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	other := createAccount(t, ns, "other")
	agent := newTestAgent(t, false)
	createNumber(t, ns, "support", "+14155550140", "main", agent.url)
	createNumber(t, ns, "second", "+14155550141", "main", agent.url)
	h := startServer(t, ns)
	NewWithT(t).Eventually(func() int { return knownAccounts(h.routing) }).Should(Equal(2))

	expired := tokenSigner{keys: [][]byte{testKey}, ttl: time.Minute, now: func() time.Time { return time.Now().Add(-time.Hour) }}
	otherKey := tokenSigner{keys: [][]byte{[]byte("another-key-another-key-another-key!!")}, ttl: time.Minute, now: time.Now}
	cases := []struct {
		name   string
		mutate func(c *call) map[string]string
	}{
		{"replayed for another call", func(c *call) map[string]string { c.callSID = newCallSID(); return nil }},
		{"replayed for another number", func(c *call) map[string]string { return map[string]string{"to": "+14155550141"} }},
		{"expired", func(c *call) map[string]string {
			return map[string]string{"token": expired.issue(c.callSID, c.to, c.acct.sid)}
		}},
		{"issued with another key", func(c *call) map[string]string {
			return map[string]string{"token": otherKey.issue(c.callSID, c.to, c.acct.sid)}
		}},
		{"missing", func(c *call) map[string]string { return map[string]string{"token": ""} }},
		{"garbage", func(c *call) map[string]string { return map[string]string{"token": "v1.x.y"} }},
		{"start names an account other than the stream URL's", func(c *call) map[string]string {
			c.acct = account{sid: other.sid, token: acct.token}
			return nil
		}},
		{"token of another account", func(c *call) map[string]string {
			c.acct = other
			c.streamURL = testStreamURL + "/" + other.sid
			return nil
		}},
		{"start names another account on the legacy path", func(c *call) map[string]string {
			c.acct = other
			c.streamURL = testStreamURL
			return nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			before := counterValue(h.metrics.Streams.WithLabelValues(outcomeTokenInvalid))
			c := h.routedCall(g, acct, "+15550001", "+14155550140")
			c.open(tc.mutate(c))
			ce := c.readUntilClosed()
			g.Expect(ce).NotTo(BeNil())
			g.Expect(ce.Code).To(Equal(websocket.ClosePolicyViolation))
			g.Eventually(func() float64 { return counterValue(h.metrics.Streams.WithLabelValues(outcomeTokenInvalid)) }).Should(Equal(before + 1))
		})
	}
	g := NewWithT(t)
	g.Expect(counterValue(h.metrics.AgentDial.WithLabelValues("ok").(prometheus.Collector))).To(BeZero(), "no agent was dialled")
	g.Expect(agent.conns).To(BeEmpty())
}

func TestAgentUnreachable(t *testing.T) {
	g := NewWithT(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	deadURL := "ws://" + ln.Addr().String() + "/media"
	g.Expect(ln.Close()).To(Succeed())

	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	createNumber(t, ns, "support", "+14155550150", "main", deadURL)
	h := startServer(t, ns)
	c := h.routedCall(g, acct, "+15550001", "+14155550150")
	c.open(nil)
	ce := c.readUntilClosed()
	g.Expect(ce).NotTo(BeNil(), "the Twilio side is closed with a close frame")
	g.Expect(ce.Code).To(Equal(websocket.CloseTryAgainLater))
	g.Eventually(func() float64 { return counterValue(h.metrics.Streams.WithLabelValues(outcomeAgentUnreachable)) }).Should(Equal(1.0))
	g.Expect(counterValue(h.metrics.AgentDial.WithLabelValues("error").(prometheus.Collector))).To(Equal(1.0))
}

// TestSlowAgentDropsMedia: an agent that stops reading costs dropped media
// frames (counted) while the queue stays within its cap; when it finally
// goes away, the caller's stream is closed cleanly.
func TestSlowAgentDropsMedia(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	agent := newTestAgent(t, true)
	createNumber(t, ns, "support", "+14155550160", "main", agent.url)
	const queueFrames = 16
	bridges := make(chan *bridge, 1)
	h := startServer(t, ns, func(o *Options) {
		o.Limits.QueueFrames = queueFrames
		o.Limits.QueueBytes = 4 << 20
		o.Limits.WriteTimeout = time.Minute // the stall must not be cut short by a write timeout
		o.onBridge = func(b *bridge) { bridges <- b }
	})
	c := h.routedCall(g, acct, "+15550001", "+14155550160")
	c.open(nil)
	ac := agent.accept(g)
	var b *bridge
	g.Eventually(bridges, 30*time.Second).Should(Receive(&b))

	dropped := h.metrics.FramesDropped.WithLabelValues(dirTwilioToAgent, dropBackpressure)
	// Big frames fill the socket buffers quickly; the bound keeps the loop finite.
	for i := 1; i <= 20000 && counterValue(dropped) == 0; i++ {
		c.sendRaw(c.mediaFrame(i, 16<<10), false)
	}
	g.Expect(counterValue(dropped)).To(BeNumerically(">", 0))
	length, highWater, capacity := b.agent.out.stats()
	g.Expect(highWater).To(BeNumerically("<=", queueFrames), "media never exceeds its share of the queue")
	g.Expect(length).To(BeNumerically("<=", capacity))
	g.Expect(capacity).To(Equal(queueFrames + DefaultLimits.ControlReserve))

	// The stuck agent goes away: the caller's stream is closed cleanly.
	_ = ac.conn.Close()
	ce := c.readUntilClosed()
	g.Expect(ce).NotTo(BeNil())
	g.Expect(ce.Code).To(Equal(websocket.CloseNormalClosure))
	g.Eventually(func() float64 { return counterValue(h.metrics.ActiveStreams) }).Should(BeZero())
}

// TestCallerGoneClosesAgent: the caller's connection drops without stop or
// close frame; the agent's stream is closed cleanly.
func TestCallerGoneClosesAgent(t *testing.T) {
	g := NewWithT(t)
	_, acct, agent, h := routedNumber(t, "+14155550170", false)
	c := h.routedCall(g, acct, "+15550001", "+14155550170")
	c.open(nil)
	ac := agent.accept(g)
	c.sendMedia(1)
	ac.next(g)
	ac.next(g)
	g.Expect(ac.next(g)).To(Equal(c.sent[0]))

	_ = c.conn.NetConn().Close()
	g.Expect(websocket.IsCloseError(ac.waitClosed(g), websocket.CloseNormalClosure)).To(BeTrue())
	g.Eventually(func() float64 { return counterValue(h.metrics.Streams.WithLabelValues(outcomeCallerError)) }).Should(Equal(1.0))
}

// TestAgentHangsUp: the agent's last audio reaches the caller before the
// caller's stream is closed cleanly.
func TestAgentHangsUp(t *testing.T) {
	g := NewWithT(t)
	_, acct, agent, h := routedNumber(t, "+14155550175", false)
	c := h.routedCall(g, acct, "+15550001", "+14155550175")
	c.open(nil)
	ac := agent.accept(g)
	last := agentMedia(c.streamSID, 1)
	ac.send(t, last)
	g.Expect(ac.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(5*time.Second))).To(Succeed())

	got, err := c.read()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(last))
	ce := c.readUntilClosed()
	g.Expect(ce).NotTo(BeNil())
	g.Expect(ce.Code).To(Equal(websocket.CloseNormalClosure))
	g.Eventually(func() float64 { return counterValue(h.metrics.Streams.WithLabelValues(outcomeAgentClosed)) }).Should(Equal(1.0))
}

// TestAgentChangeIsLive: changing a number's agent in the cluster sends the
// next call to the new agent, without a restart.
func TestAgentChangeIsLive(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	first, second := newTestAgent(t, false), newTestAgent(t, false)
	createNumber(t, ns, "support", "+14155550180", "main", first.url)
	h := startServer(t, ns)

	// whichAgent places a call and reports which agent took it.
	whichAgent := func() string {
		c := h.routedCall(g, acct, "+15550001", "+14155550180")
		c.open(nil)
		var ac *agentConn
		name := "none"
		select {
		case ac = <-first.conns:
			name = "first"
		case ac = <-second.conns:
			name = "second"
		case <-time.After(30 * time.Second):
			return name
		}
		c.hangUp()
		ac.waitClosed(g)
		return name
	}
	g.Expect(whichAgent()).To(Equal("first"))

	var n twiliov1.TwilioPhoneNumber
	g.Expect(k8s.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "support"}, &n)).To(Succeed())
	n.Spec.Agent.URL = second.url
	g.Expect(k8s.Update(t.Context(), &n)).To(Succeed())
	g.Eventually(whichAgent, 30*time.Second).Should(Equal("second"))
}

// TestStreamOutlivesHTTPTimeouts: http.Server's read and write deadlines
// stay on a hijacked connection unless cleared; a stream must outlive them.
func TestStreamOutlivesHTTPTimeouts(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	agent := newTestAgent(t, false)
	createNumber(t, ns, "support", "+14155550190", "main", agent.url)
	const httpTimeout = 100 * time.Millisecond
	h := startServer(t, ns, func(o *Options) {
		o.Limits.HTTPReadTimeout = httpTimeout
		o.Limits.HTTPWriteTimeout = httpTimeout
	})
	c := h.routedCall(g, acct, "+15550001", "+14155550190")
	c.open(nil)
	upgraded := time.Now()
	ac := agent.accept(g)
	ac.next(g)
	ac.next(g)

	// Not synchronisation: the point is that wall-clock time passes the
	// deadlines the HTTP server set on the connection.
	<-time.After(time.Until(upgraded.Add(3 * httpTimeout)))

	c.sendMedia(1)
	g.Expect(ac.next(g)).To(Equal(c.sent[0]))
	back := agentMedia(c.streamSID, 1)
	ac.send(t, back)
	got, err := c.read()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(back))
	c.hangUp()
	ac.waitClosed(g)
}

// TestSimulatedCallThroughBridge places a whole call with the project's
// Twilio call simulator (an independent implementation of Twilio's side:
// signing, TwiML parsing, the stream protocol, the recording callback)
// through the server to the sample agent, which echoes the caller's audio.
func TestSimulatedCallThroughBridge(t *testing.T) {
	g := NewWithT(t)
	agent := sampleagent.New(sampleagent.Options{MarkEvery: 10})
	agentHandler, err := agent.Handler("/media")
	g.Expect(err).NotTo(HaveOccurred())
	agentSrv := httptest.NewServer(agentHandler)
	t.Cleanup(agentSrv.Close)

	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	createNumber(t, ns, "support", "+14155550220", "main", "ws://"+agentSrv.Listener.Addr().String()+"/media")
	h := startServer(t, ns)
	g.Eventually(func() bool { r, ok := h.routing.Lookup("+14155550220"); return ok && r.AccountSID == acct.sid }).Should(BeTrue())

	rewrite := func(u *url.URL) *url.URL {
		if u.Host == "voice.example.test" {
			u.Host = h.addr
			u.Scheme = map[string]string{"https": "http", "wss": "ws"}[u.Scheme]
		}
		return u
	}
	res, err := callsim.Place(t.Context(), callsim.Call{
		VoiceURL: testPublicURL + VoicePath, AuthToken: acct.token, AccountSID: acct.sid,
		From: "+15550001", To: "+14155550220",
		MediaFrames: 40, FramePeriod: 2 * time.Millisecond, ToneHz: 440, DTMF: []string{"4", "2"},
		RewriteURL: rewrite,
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.VoiceStatus).To(Equal(http.StatusOK))
	g.Expect(res.Verbs).To(Equal([]string{"Start", "Connect"}))
	g.Expect(res.Recording).NotTo(BeNil())
	g.Expect(res.StreamHandshakeStatus).To(Equal(http.StatusSwitchingProtocols))
	g.Expect(res.SentMedia).To(Equal(40))
	g.Expect(res.ReceivedMedia).To(BeNumerically(">", 0), "the agent's echo reached the caller")
	g.Expect(res.InvalidMessages).To(BeZero())
	g.Expect(res.RecordingCallbackStatus).To(Equal(http.StatusNoContent))

	g.Eventually(agent.Stats).Should(And(
		HaveField("Calls", int64(1)),
		HaveField("CompletedCalls", int64(1)),
		HaveField("FramesIn", int64(40)),
		HaveField("Digits", "42"),
		HaveField("LastFrom", "+15550001"),
		HaveField("LastTo", "+14155550220"),
		HaveField("ProtocolErrors", int64(0)),
	))
	g.Eventually(func() float64 { return counterValue(h.metrics.ActiveStreams) }).Should(BeZero())
}
