package webhookserver

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	. "github.com/onsi/gomega"
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
