package webhookserver

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/gorilla/websocket"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestStreamTokenStripped: the agent gets the start message without the
// stream token, under any spelling of its name, and otherwise as Twilio
// sent it.
func TestStreamTokenStripped(t *testing.T) {
	g := NewWithT(t)
	_, acct, agent, h := routedNumber(t, "+14155550300", false)
	c := h.routedCall(g, acct, "+15550001", "+14155550300")
	params := c.twiml.params()
	g.Expect(params).To(HaveKey(paramToken))
	params["Token"] = params[paramToken]
	params["TOKEN"] = "x"
	params["custom"] = "kept <&>"
	start := c.startMessage(params)
	start["extra"] = map[string]any{"n": 1.5e3, "list": []any{true, nil}}
	b, err := json.Marshal(start)
	g.Expect(err).NotTo(HaveOccurred())
	c.openWith(b)
	ac := agent.accept(g)
	g.Expect(ac.next(g)).To(Equal(c.opening[0]))
	got := ac.next(g)

	want := map[string]any{}
	g.Expect(json.Unmarshal(b, &want)).To(Succeed())
	cp := want["start"].(map[string]any)["customParameters"].(map[string]any)
	delete(cp, "token")
	delete(cp, "Token")
	delete(cp, "TOKEN")
	wantJSON, _ := json.Marshal(want)
	g.Expect(got).To(MatchJSON(wantJSON))
	g.Expect(strings.ToLower(string(got))).NotTo(ContainSubstring("token"))
	g.Expect(string(got)).NotTo(ContainSubstring(params[paramToken]))

	// Media frames are relayed byte for byte.
	c.sendRaw([]byte(`{"event":"media", "streamSid":"`+c.streamSID+`","media":{"payload":"AA\u003d\u003d"}}`), false)
	g.Expect(ac.next(g)).To(Equal(c.sent[0]))
	c.hangUp()
	ac.waitClosed(g)
}

// TestStreamTokenSingleUse: a stream token opens one stream on a replica,
// while that stream is live and after it ended.
func TestStreamTokenSingleUse(t *testing.T) {
	g := NewWithT(t)
	_, acct, agent, h := routedNumber(t, "+14155550310", false)
	first := h.routedCall(g, acct, "+15550001", "+14155550310")
	first.open(nil)
	ac := agent.accept(g)

	replay := func() {
		again := *first
		again.conn, again.opening, again.sent, again.seq = nil, nil, nil, 0
		again.open(nil)
		ce := again.readUntilClosed()
		g.Expect(ce).NotTo(BeNil())
		g.Expect(ce.Code).To(Equal(websocket.ClosePolicyViolation))
	}
	replay() // while the first stream is live
	first.hangUp()
	ac.waitClosed(g)
	replay() // after it ended
	g.Eventually(func() float64 { return counterValue(h.metrics.Streams.WithLabelValues(outcomeTokenReused)) }).Should(Equal(2.0))
	g.Expect(agent.conns).To(BeEmpty(), "no second stream reached the agent")
}

// TestStartMessageAmbiguousKeys: a start message with keys that differ from
// the ones the server reads only in case is refused: an agent decoding it
// case-insensitively could read other values than the server checked.
func TestStartMessageAmbiguousKeys(t *testing.T) {
	_, acct, agent, h := routedNumber(t, "+14155550320", false)
	for _, mutate := range []func(m map[string]any){
		func(m map[string]any) { m["Start"] = m["start"] },
		func(m map[string]any) { m["EVENT"] = "start" },
		func(m map[string]any) { m["start"].(map[string]any)["AccountSid"] = "AC1" },
		func(m map[string]any) {
			st := m["start"].(map[string]any)
			st["customparameters"] = st["customParameters"]
		},
	} {
		g := NewWithT(t)
		c := h.routedCall(g, acct, "+15550001", "+14155550320")
		m := c.startMessage(c.twiml.params())
		mutate(m)
		b, _ := json.Marshal(m)
		c.openWith(b)
		ce := c.readUntilClosed()
		g.Expect(ce).NotTo(BeNil())
		g.Expect(ce.Code).To(Equal(websocket.CloseProtocolError), string(b))
	}
	g := NewWithT(t)
	g.Eventually(func() float64 { return counterValue(h.metrics.Streams.WithLabelValues(outcomeHandshakeFailed)) }).Should(Equal(4.0))
	g.Expect(agent.conns).To(BeEmpty())
}

// TestLegacyStreamPath: a stream at the legacy path (a call answered before
// per-account stream URLs) still works, its signature checked against the
// one account its start message names, and a forged one is refused once
// the start message arrives.
func TestLegacyStreamPath(t *testing.T) {
	g := NewWithT(t)
	ns, acct, agent, h := routedNumber(t, "+14155550330", false)
	other := createAccount(t, ns, "other")
	g.Eventually(func() int { return knownAccounts(h.routing) }).Should(Equal(2))

	c := h.routedCall(g, acct, "+15550001", "+14155550330")
	c.streamURL = testStreamURL
	c.open(nil)
	ac := agent.accept(g)
	g.Expect(ac.next(g)).To(Equal(c.opening[0]))
	g.Expect(ac.next(g)).To(MatchJSON(withoutToken(t, c.opening[1])))
	c.hangUp()
	ac.waitClosed(g)
	g.Expect(counterValue(h.metrics.Requests.WithLabelValues(routeStream, outcomeUpgradedLegacy))).To(Equal(1.0))

	// Signed with another account's token, start naming this account: refused.
	c = h.routedCall(g, acct, "+15550001", "+14155550330")
	c.streamURL = testStreamURL
	c.acct.token = other.token
	c.open(nil)
	ce := c.readUntilClosed()
	g.Expect(ce).NotTo(BeNil())
	g.Expect(ce.Code).To(Equal(websocket.ClosePolicyViolation))
	g.Eventually(func() float64 { return counterValue(h.metrics.Streams.WithLabelValues(outcomeSignatureInvalid)) }).Should(Equal(1.0))
	g.Expect(counterValue(h.metrics.SignatureFailures.WithLabelValues(routeStream, sigInvalid))).To(Equal(1.0))
	g.Expect(agent.conns).To(BeEmpty())

	// A missing signature is still refused before the upgrade.
	_, resp, err := h.dialStream("")
	g.Expect(err).To(MatchError(websocket.ErrBadHandshake))
	g.Expect(resp.StatusCode).To(Equal(http.StatusForbidden))
}

// TestSignatureFailuresThrottled: a client that keeps failing signature
// checks gets 429 before anything is checked; another client does not.
func TestSignatureFailuresThrottled(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	h := startServer(t, ns, func(o *Options) {
		o.Limits.SignatureFailureBurst = 3
		o.Limits.SignatureFailureRate = 0.001
	})
	form := url.Values{"AccountSid": {acct.sid}, "MessageSid": {"SM1"}}
	g.Eventually(func() []AccountValidator { return h.routing.Validators(acct.sid) }).ShouldNot(BeEmpty())
	g.Expect(readStatus(t, h.post(EventsPath, form, acct.token))).To(Equal(http.StatusOK))

	send := func(token, forwardedFor string) *http.Response {
		req, err := http.NewRequest(http.MethodPost, "http://"+h.addr+EventsPath, strings.NewReader(form.Encode()))
		g.Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Content-Type", contentTypeFormURLEncode)
		req.Header.Set(signatureHeader, sign(token, testPublicURL+EventsPath, form))
		if forwardedFor != "" {
			req.Header.Set("X-Forwarded-For", forwardedFor)
		}
		resp, err := h.client.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		return resp
	}
	for i := 0; i < 3; i++ {
		g.Expect(readStatus(t, send("guessed", ""))).To(Equal(http.StatusForbidden))
	}
	resp := send("guessed", "")
	g.Expect(readStatus(t, resp)).To(Equal(http.StatusTooManyRequests))
	g.Expect(resp.Header.Get("Retry-After")).NotTo(BeEmpty())
	g.Expect(readStatus(t, send(acct.token, ""))).To(Equal(http.StatusTooManyRequests), "checked no more, even when valid")
	_, resp, err := h.dialStreamFor(acct)
	g.Expect(err).To(MatchError(websocket.ErrBadHandshake))
	g.Expect(resp.StatusCode).To(Equal(http.StatusTooManyRequests), "stream upgrades too")

	// Behind a proxy on a private address, each forwarded client has its own budget.
	g.Expect(readStatus(t, send(acct.token, "203.0.113.9"))).To(Equal(http.StatusOK))
	g.Expect(counterValue(h.metrics.Throttled.WithLabelValues(routeEvents))).To(Equal(2.0))
	g.Expect(counterValue(h.metrics.Throttled.WithLabelValues(routeStream))).To(Equal(1.0))
	g.Expect(counterValue(h.metrics.Requests.WithLabelValues(routeEvents, outcomeThrottled))).To(Equal(2.0))
}

// TestStreamCap: over MaxStreams an upgrade gets 503, counted; once a
// stream ends there is room again.
func TestStreamCap(t *testing.T) {
	g := NewWithT(t)
	_, acct, agent, h := routedNumber(t, "+14155550340", false, func(o *Options) { o.Limits.MaxStreams = 1 })
	c := h.routedCall(g, acct, "+15550001", "+14155550340")
	c.open(nil)
	ac := agent.accept(g)
	ac.next(g)

	_, resp, err := h.dialStreamFor(acct)
	g.Expect(err).To(MatchError(websocket.ErrBadHandshake))
	g.Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable))
	g.Expect(counterValue(h.metrics.CapacityRefusals.WithLabelValues(capStreams))).To(Equal(1.0))
	g.Expect(counterValue(h.metrics.Requests.WithLabelValues(routeStream, outcomeOverCapacity))).To(Equal(1.0))

	c.hangUp()
	ac.waitClosed(g)
	g.Eventually(func() int {
		conn, resp, _ := h.dialStreamFor(acct)
		if conn != nil {
			_ = conn.Close()
		}
		if resp == nil {
			return 0
		}
		return resp.StatusCode
	}).Should(Equal(http.StatusSwitchingProtocols))
}

// TestConnectionCap: a request on a connection accepted over MaxConnections
// gets 503 and the connection is closed; once connections close there is
// room again.
func TestConnectionCap(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	h := startServer(t, ns, func(o *Options) { o.Limits.MaxConnections = 1 })

	// rawGet sends a GET for an unknown path on conn and returns the status
	// and whether the server closes the connection after it.
	rawGet := func(conn net.Conn) (int, bool) {
		_, err := fmt.Fprintf(conn, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
		g.Expect(err).NotTo(HaveOccurred())
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		g.Expect(err).NotTo(HaveOccurred())
		readBody(t, resp)
		return resp.StatusCode, resp.Close
	}
	first, err := net.Dial("tcp", h.addr)
	g.Expect(err).NotTo(HaveOccurred())
	status, _ := rawGet(first) // accepted: it holds the one connection
	g.Expect(status).To(Equal(http.StatusNotFound))

	second, err := net.Dial("tcp", h.addr)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = second.Close() }()
	status, closing := rawGet(second)
	g.Expect(status).To(Equal(http.StatusServiceUnavailable))
	g.Expect(closing).To(BeTrue(), "Connection: close")
	g.Expect(counterValue(h.metrics.CapacityRefusals.WithLabelValues(capConnections))).To(Equal(1.0))

	_ = first.Close()
	g.Eventually(func() int {
		conn, err := net.Dial("tcp", h.addr)
		if err != nil {
			return 0
		}
		defer func() { _ = conn.Close() }()
		s, _ := rawGet(conn)
		return s
	}).Should(Equal(http.StatusNotFound))
}

func TestDefaultLimits(t *testing.T) {
	g := NewWithT(t)
	l := Limits{}.withDefaults()
	g.Expect(l.HTTPIdleTimeout).To(Equal(30*time.Second), "idle keep-alive connections are not held for long")
	g.Expect(l.MaxStreams).To(BeNumerically(">", 0))
	g.Expect(l.MaxConnections).To(BeNumerically(">", 0))
	g.Expect(l.SignatureFailureBurst).To(BeNumerically(">", 0))
	g.Expect(Limits{SignatureFailureBurst: -1}.withDefaults().SignatureFailureBurst).To(Equal(-1), "negative: throttling off")
}

// TestRecordingDurationBounded: durations are clamped to a day; NaN,
// infinities and negative values are not observed.
func TestRecordingDurationBounded(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	h := startServer(t, ns)
	post := func(i int, duration string) int {
		form := url.Values{
			"AccountSid": {acct.sid}, "CallSid": {newCallSID()}, "RecordingSid": {fmt.Sprintf("RE%d", i)},
			"RecordingStatus": {"completed"}, "RecordingDuration": {duration},
		}
		return readStatus(t, h.post(RecordingPath, form, acct.token))
	}
	g.Eventually(func() int { return post(0, "42") }).Should(Equal(http.StatusNoContent))
	for i, d := range []string{"1e308", "NaN", "Inf", "-Inf", "-1", "1e400", "nope"} {
		g.Expect(post(i+1, d)).To(Equal(http.StatusNoContent), d)
	}
	count, sum := histogram(h.metrics.RecordingDuration)
	g.Expect(count).To(Equal(uint64(2)), "42 and 1e308")
	g.Expect(sum).To(Equal(42.0 + 86400))

	for in, want := range map[string]float64{"0": 0, "3600": 3600, "86400": 86400, "86401": 86400, "1e308": 86400} {
		got, ok := recordingDuration(in, 24*time.Hour)
		g.Expect(ok).To(BeTrue(), in)
		g.Expect(got).To(Equal(want), in)
	}
}

func histogram(c prometheus.Collector) (uint64, float64) {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	m := &dto.Metric{}
	_ = (<-ch).Write(m)
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// TestLoggedValuesTruncated: request values of any size are logged with at
// most 128 bytes each.
func TestLoggedValuesTruncated(t *testing.T) {
	g := NewWithT(t)
	var mu sync.Mutex
	var lines []string
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, args)
	}, funcr.Options{})
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	h := startServer(t, ns, func(o *Options) { o.Log = log })
	huge := strings.Repeat("9", 10_000)
	events := url.Values{"AccountSid": {acct.sid}, "MessageSid": {huge}, "To": {huge}, "SmsStatus": {huge}}
	g.Eventually(func() int { return readStatus(t, h.post(EventsPath, events, acct.token)) }).Should(Equal(http.StatusOK))
	rec := url.Values{"AccountSid": {acct.sid}, "CallSid": {huge}, "RecordingSid": {huge}, "RecordingStatus": {huge},
		"RecordingDuration": {huge}, "RecordingChannels": {huge}, "ErrorCode": {huge}}
	g.Expect(readStatus(t, h.post(RecordingPath, rec, acct.token))).To(Equal(http.StatusNoContent))
	voice := voiceForm(acct.sid, huge, huge, huge)
	g.Expect(readStatus(t, h.post(VoicePath, voice, acct.token))).To(Equal(http.StatusOK))

	mu.Lock()
	defer mu.Unlock()
	found := 0
	for _, l := range lines {
		g.Expect(l).NotTo(ContainSubstring(strings.Repeat("9", 129)), l)
		found += strings.Count(l, "…[truncated, 10000 bytes]")
	}
	g.Expect(found).To(BeNumerically(">=", 3+6+2), "every huge value logged, truncated")
}

func TestLogValue(t *testing.T) {
	g := NewWithT(t)
	g.Expect(logValue("short")).To(Equal("short"))
	g.Expect(logValue(strings.Repeat("a", 128))).To(Equal(strings.Repeat("a", 128)))
	g.Expect(logValue(strings.Repeat("a", 129))).To(Equal(strings.Repeat("a", 128) + "…[truncated, 129 bytes]"))
	// Cut at a character boundary: "é" is two bytes.
	v := strings.Repeat("a", 127) + "é" + "z"
	g.Expect(logValue(v)).To(Equal(strings.Repeat("a", 127) + "…[truncated, 130 bytes]"))
}

func TestClientKey(t *testing.T) {
	cases := []struct {
		remote string
		xff    []string
		want   string
	}{
		{"198.51.100.7:1234", nil, "198.51.100.7"},
		{"198.51.100.7:1234", []string{"10.9.9.9"}, "198.51.100.7"}, // a public peer cannot choose its key
		{"10.0.0.5:1", []string{"1.2.3.4, 5.6.7.8"}, "5.6.7.8"},     // the address the proxy saw
		{"10.0.0.5:1", []string{"1.1.1.1", "9.9.9.9"}, "9.9.9.9"},
		{"10.0.0.5:1", []string{"garbage"}, "10.0.0.5"},
		{"127.0.0.1:80", []string{" 203.0.113.9 "}, "203.0.113.9"},
		{"[::ffff:10.0.0.1]:3", []string{"203.0.113.9"}, "203.0.113.9"},
		{"[2001:db8::1]:5", nil, "2001:db8::/64"},
		{"10.0.0.5:1", []string{"2001:db8:0:0:aaaa::1"}, "2001:db8::/64"},
	}
	for _, c := range cases {
		r := &http.Request{RemoteAddr: c.remote, Header: http.Header{}}
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := clientKey(r); got != c.want {
			t.Errorf("clientKey(%s, %q) = %q, want %q", c.remote, c.xff, got, c.want)
		}
	}
}

func TestFailureThrottle(t *testing.T) {
	g := NewWithT(t)
	now := time.Unix(1_800_000_000, 0)
	th := newFailureThrottle(2, 1, 2)
	th.now = func() time.Time { return now }
	allowed := func(key string) bool { ok, _ := th.allowed(key); return ok }

	g.Expect(allowed("a")).To(BeTrue())
	th.failed("a")
	g.Expect(allowed("a")).To(BeTrue())
	th.failed("a")
	ok, wait := th.allowed("a")
	g.Expect(ok).To(BeFalse())
	g.Expect(wait).To(Equal(time.Second))
	g.Expect(allowed("b")).To(BeTrue(), "per client")

	now = now.Add(time.Second)
	g.Expect(allowed("a")).To(BeTrue(), "refilled")
	th.failed("a")
	g.Expect(allowed("a")).To(BeFalse())

	// Bounded: a third client evicts the least recently failed one.
	th.failed("b")
	th.failed("c")
	g.Expect(th.clients.Keys()).To(HaveLen(2))

	g.Expect(newFailureThrottle(-1, 1, 10)).To(BeNil())
	var off *failureThrottle
	off.failed("a")
	ok, _ = off.allowed("a")
	g.Expect(ok).To(BeTrue())
}
