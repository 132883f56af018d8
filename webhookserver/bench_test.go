package webhookserver

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/gorilla/websocket"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
)

// benchPost sends one pre-signed voice webhook and drains the answer.
func benchPost(b *testing.B, client *http.Client, target, body, sig string) {
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(signatureHeader, sig)
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// BenchmarkVoice is the voice webhook end to end over loopback HTTP:
// body limit, form parse, signature check (twilio-go), routing lookup,
// token issue and TwiML rendering (twilio-go).
func BenchmarkVoice(b *testing.B) {
	ns := newNamespace(b)
	acct := createAccount(b, ns, "main")
	for i := 0; i < 100; i++ {
		createNumber(b, ns, fmt.Sprintf("n%d", i), fmt.Sprintf("+1415555%04d", i), "main", "ws://agent.invalid/media")
	}
	h := startServer(b, ns)
	form := voiceForm(acct.sid, newCallSID(), "+15550001", "+14155550042")
	sig := sign(acct.token, testPublicURL+VoicePath, form)
	waitRouted(b, h, "+14155550099")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	target := "http://" + h.addr + VoicePath
	body := form.Encode()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		benchPost(b, client, target, body, sig)
	}
}

// BenchmarkVoiceBare is the floor for BenchmarkVoice: a bare net/http
// handler on loopback that reads the body and returns constant TwiML.
func BenchmarkVoiceBare(b *testing.B) {
	const doc = `<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://voice.example.test/twilio/stream"/></Connect></Response>`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/xml")
		_, _ = io.WriteString(w, doc)
	}))
	defer srv.Close()
	form := voiceForm(newAccountSID(), newCallSID(), "+15550001", "+14155550042")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		benchPost(b, client, srv.URL+VoicePath, form.Encode(), "unused")
	}
}

// BenchmarkVoiceRender is the answer's share of BenchmarkVoice: filling
// the pre-rendered template with a call's values, for a number without a
// fallback and for one with a Say fallback (its fragment pre-rendered, as the
// routing table holds it).
func BenchmarkVoiceRender(b *testing.B) {
	tpl, err := newAnswerTemplates(recordingCallbackURL("https://v.example.com"), "wss://v.example.com/twilio/stream/")
	if err != nil {
		b.Fatal(err)
	}
	const token = "v1.1800000000.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"
	frag, _, err := RenderFallback(&twiliov1.FallbackSpec{Action: twiliov1.FallbackSay}, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, fallback string }{{"no_fallback", ""}, {"fallback", frag}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = tpl.render(true, bc.fallback, "AC0123456789abcdef0123456789abcdef", "+15551234567", "+15559876543", token)
			}
		})
	}
}

// BenchmarkRoutingLookup is the per-request routing cost: a map read
// behind an atomic pointer.
func BenchmarkRoutingLookup(b *testing.B) {
	ns := newNamespace(b)
	createAccount(b, ns, "main")
	for i := 0; i < 100; i++ {
		createNumber(b, ns, fmt.Sprintf("n%d", i), fmt.Sprintf("+1415555%04d", i), "main", "ws://agent.invalid/media")
	}
	h := startServer(b, ns)
	waitRouted(b, h, "+14155550099")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := h.routing.Lookup("+14155550042"); !ok {
			b.Fatal("not routed")
		}
	}
}

// benchAgent counts the media frames it receives; each frame frees one
// slot of the sender's window, so senders never outrun the relay (no drops).
type benchAgent struct {
	url    string
	window chan struct{}
}

func newBenchAgent(b *testing.B, window int) *benchAgent {
	a := &benchAgent{window: make(chan struct{}, window)}
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer func() { _ = conn.Close() }()
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				return
			}
			if isMediaFrame(data) {
				<-a.window
			}
		}
	}))
	b.Cleanup(srv.Close)
	a.url = "ws://" + srv.Listener.Addr().String() + "/media"
	return a
}

// BenchmarkBridge relays caller media frames (a realistic 20 ms µ-law
// frame) to an agent, directly and through the bridge, with at most 64
// frames in flight. Allocations include the test's own client and agent.
func BenchmarkBridge(b *testing.B) {
	frame := []byte(fmt.Sprintf(`{"event":"media","sequenceNumber":"7","streamSid":"MZ1","media":{"track":"inbound","chunk":"6","timestamp":"120","payload":"%s"}}`, strings.Repeat("/", 216)))
	const window = 64
	send := func(b *testing.B, conn *websocket.Conn, a *benchAgent) {
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			a.window <- struct{}{}
			if err := conn.WriteMessage(websocket.TextMessage, frame); err != nil {
				b.Fatal(err)
			}
		}
		for i := 0; i < window; i++ { // wait for the last frames to arrive
			a.window <- struct{}{}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	}

	b.Run("direct", func(b *testing.B) {
		a := newBenchAgent(b, window)
		conn, _, err := websocket.DefaultDialer.Dial(a.url, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		send(b, conn, a)
	})

	b.Run("bridged", func(b *testing.B) {
		a := newBenchAgent(b, window)
		ns := newNamespace(b)
		acct := createAccount(b, ns, "main")
		createNumber(b, ns, "support", "+14155550300", "main", a.url)
		h := startServer(b, ns)
		c := h.routedCall(NewWithT(b), acct, "+15550001", "+14155550300")
		c.open(nil)
		defer func() { _ = c.conn.Close() }()
		send(b, c.conn, a)
		if d := counterValue(h.metrics.FramesDropped.WithLabelValues(dirTwilioToAgent, dropBackpressure)); d != 0 {
			b.Fatalf("%v frames dropped", d)
		}
	})
}

func waitRouted(b *testing.B, h *harness, number string) {
	NewWithT(b).Eventually(func() bool { _, ok := h.routing.Lookup(number); return ok }, 30*time.Second).Should(BeTrue())
}

// BenchmarkRefused is the CPU one refused request costs the server, with 1
// and with 300 accounts in the routing table: a forged voice webhook (the
// signature checked with its AccountSid's token), a forged stream upgrade
// at StreamPath/{AccountSid} (checked with that account's token only), and
// a forged upgrade on the legacy path (accepted, then checked with the
// token of the account its start message names). The handler is called in
// process (no network) for the first two; the legacy upgrade needs a real
// WebSocket, so it runs over loopback and its time includes the client.
// "upgrade_all_tokens" is what checking an upgrade against every account's
// token, the design before StreamPath/{AccountSid}, costs.
func BenchmarkRefused(b *testing.B) {
	for _, n := range []int{1, 300} {
		tokens := map[string]string{}
		sids := make([]string, n)
		for i := range n {
			sids[i] = fmt.Sprintf("AC%032x", 0xbe00+i)
			tokens[sids[i]] = fmt.Sprintf("benchToken%dZ%x", i, 0x5eed*(i+1))
		}
		routes := NewStaticRoutes(nil, tokens)
		var all []AccountValidator // the old all-tokens check, for reference
		for _, sid := range sids {
			all = append(all, routes.Validators(sid)...)
		}
		metrics, err := NewMetrics(prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		srv, err := New(Options{
			PublicURL: testPublicURL, Routes: routes, TokenKeys: [][]byte{testKey}, Metrics: metrics, Log: logr.Discard(),
			// Throttling would answer most of these 429 without any check:
			// measure the check itself.
			Limits: Limits{SignatureFailureBurst: -1},
		})
		if err != nil {
			b.Fatal(err)
		}
		handler := srv.Handler()
		target := sids[n-1] // the last account: a linear search would find it last

		b.Run(fmt.Sprintf("webhook/accounts=%d", n), func(b *testing.B) {
			form := voiceForm(target, newCallSID(), "+15550001", "+14155550042")
			body := form.Encode()
			sig := sign("guessed", testPublicURL+VoicePath, form)
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, VoicePath, strings.NewReader(body))
				req.Header.Set("Content-Type", contentTypeFormURLEncode)
				req.Header.Set(signatureHeader, sig)
				rec := httptest.NewRecorder()
				handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusForbidden {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
		b.Run(fmt.Sprintf("upgrade/accounts=%d", n), func(b *testing.B) {
			path := StreamPath + "/" + target
			sig := sign("guessed", testStreamURL+"/"+target, nil)
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, path, nil)
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "websocket")
				req.Header.Set("Sec-WebSocket-Version", "13")
				req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
				req.Header.Set(signatureHeader, sig)
				rec := httptest.NewRecorder()
				handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusForbidden {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
		b.Run(fmt.Sprintf("upgrade_all_tokens/accounts=%d", n), func(b *testing.B) {
			uri := StreamPath
			sig := sign("guessed", testStreamURL, nil)
			b.ReportAllocs()
			for b.Loop() {
				for _, v := range all {
					if srv.sig.checkUpgrade(uri, sig, []AccountValidator{v}) {
						b.Fatal("validated")
					}
				}
			}
		})
		b.Run(fmt.Sprintf("legacy_upgrade/accounts=%d", n), func(b *testing.B) {
			ts := httptest.NewServer(handler)
			defer ts.Close()
			hdr := http.Header{signatureHeader: {sign("guessed", testStreamURL, nil)}}
			start := []byte(fmt.Sprintf(`{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"accountSid":%q,"callSid":"CA1","streamSid":"MZ1","customParameters":{"to":"+1","token":"v1.1.x"}}}`, target))
			b.ReportAllocs()
			for b.Loop() {
				conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http")+StreamPath, hdr)
				if err != nil {
					b.Fatal(err)
				}
				if err := conn.WriteMessage(websocket.TextMessage, start); err != nil {
					b.Fatal(err)
				}
				if _, _, err := conn.ReadMessage(); !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
					b.Fatalf("want a policy violation close, got %v", err)
				}
				_ = conn.Close()
			}
		})
	}
}

// BenchmarkVoiceHandler is the voice webhook's handler in process (no
// network): an accepted call, as the wrk bench sends them, through
// Handler() with a static routing table. Its CPU and allocation profiles
// (-cpuprofile, -memprofile) show the server's own share of a request.
func BenchmarkVoiceHandler(b *testing.B) {
	s := fuzzServer(b)
	handler := s.Handler()
	form := voiceForm(fuzzAccount, newCallSID(), "+15550001", fuzzNumber)
	body := form.Encode()
	sig := sign(fuzzToken, testPublicURL+VoicePath, form)
	req := httptest.NewRequest(http.MethodPost, VoicePath, nil)
	req.Header.Set("Content-Type", contentTypeFormURLEncode)
	req.Header.Set(signatureHeader, sig)
	rd := strings.NewReader(body)
	w := &discardResponse{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		clear(w.h)
		w.code = 0
		handler.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
}

// discardResponse is a ResponseWriter that keeps the status only.
type discardResponse struct {
	h    http.Header
	code int
}

func (d *discardResponse) Header() http.Header { return d.h }
func (d *discardResponse) WriteHeader(code int) {
	if d.code == 0 {
		d.code = code
	}
}

func (d *discardResponse) WriteString(s string) (int, error) {
	d.WriteHeader(http.StatusOK)
	return len(s), nil
}

func (d *discardResponse) Write(p []byte) (int, error) {
	d.WriteHeader(http.StatusOK)
	return len(p), nil
}
