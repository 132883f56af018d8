package webhookserver

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/gorilla/websocket"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
)

// wsPair returns both ends of one WebSocket over loopback: the server's
// (accepted) and the client's (dialled).
func wsPair(t *testing.T) (server, client *websocket.Conn) {
	t.Helper()
	accepted := make(chan *websocket.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		accepted <- c
	}))
	t.Cleanup(srv.Close)
	client, resp, err := websocket.DefaultDialer.Dial("ws://"+srv.Listener.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	server = <-accepted
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return server, client
}

// bridgeUnderTest is a bridge between two loopback WebSockets: the test
// plays Twilio (caller) and the agent (agent) at the far ends.
type bridgeUnderTest struct {
	b               *bridge
	metrics         *Metrics
	caller, agent   *websocket.Conn
	outcome         chan string
	cancel          context.CancelFunc
	callerToAgentDr prometheus.Counter
}

func startBridge(t *testing.T, l Limits) *bridgeUnderTest {
	t.Helper()
	twilioSide, caller := wsPair(t)
	agent, agentSide := wsPair(t)
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	u := &bridgeUnderTest{
		b:       newBridge(twilioSide, agentSide, l.withDefaults(), m, logr.Discard()),
		metrics: m, caller: caller, agent: agent, outcome: make(chan string, 1),
		callerToAgentDr: m.FramesDropped.WithLabelValues(dirTwilioToAgent, dropBackpressure),
	}
	ctx, cancel := context.WithCancel(context.Background())
	u.cancel = cancel
	t.Cleanup(cancel)
	go func() { u.outcome <- u.b.run(ctx) }()
	return u
}

func mediaN(i, size int) []byte {
	return []byte(fmt.Sprintf(`{"event":"media","streamSid":"MZ1","media":{"chunk":"%d","payload":"%s"}}`, i, strings.Repeat("A", size)))
}

func markN(i int) []byte {
	return []byte(fmt.Sprintf(`{"event":"mark","streamSid":"MZ1","mark":{"name":"m%d"}}`, i))
}

// TestBridgeBackpressure: while the agent does not read, the caller's side
// keeps being read (its media dropped once the bounded queue is full, never
// before); every control frame is delivered, and every frame that is
// delivered comes in the order sent; the other direction keeps flowing.
func TestBridgeBackpressure(t *testing.T) {
	g := NewWithT(t)
	const queueFrames = 8
	u := startBridge(t, Limits{QueueFrames: queueFrames, QueueBytes: 1 << 20, ControlEnqueueTimeout: time.Minute, WriteTimeout: time.Minute})
	// The agent stalls: nothing reads its socket for now.

	// Before any backpressure, nothing is dropped: a reading agent gets it all.
	// (The agent is not reading yet, but a few small frames fit its socket.)
	for i := range 5 {
		g.Expect(u.caller.WriteMessage(websocket.TextMessage, mediaN(i, 10))).To(Succeed())
	}
	time.Sleep(100 * time.Millisecond)
	g.Expect(counterValue(u.callerToAgentDr)).To(BeZero(), "no drops without backpressure")

	// Big frames fill the socket buffers; a mark every 10 frames.
	sent, marks := 5, 0
	for counterValue(u.callerToAgentDr) < 50 && sent < 20000 {
		if sent%10 == 0 {
			g.Expect(u.caller.WriteMessage(websocket.TextMessage, markN(marks))).To(Succeed())
			marks++
		}
		g.Expect(u.caller.WriteMessage(websocket.TextMessage, mediaN(sent, 16<<10))).To(Succeed())
		sent++
	}
	g.Expect(counterValue(u.callerToAgentDr)).To(BeNumerically(">=", 50), "the caller's side is still read while the agent stalls")
	_, high, _ := u.b.agent.out.stats()
	g.Expect(high).To(BeNumerically("<=", queueFrames+DefaultLimits.ControlReserve))

	// The other direction is not held up by the stalled one.
	g.Expect(u.agent.WriteMessage(websocket.TextMessage, []byte(`{"event":"media","media":{"payload":"back"}}`))).To(Succeed())
	_ = u.caller.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, back, err := u.caller.ReadMessage()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(back)).To(ContainSubstring("back"))

	// The agent reads again: every mark arrives, and everything in order.
	g.Expect(u.caller.WriteMessage(websocket.TextMessage, markN(marks))).To(Succeed())
	marks++
	_ = u.agent.SetReadDeadline(time.Now().Add(30 * time.Second))
	nextMedia, nextMark, media := 0, 0, 0
	for nextMark < marks {
		_, msg, err := u.agent.ReadMessage()
		g.Expect(err).NotTo(HaveOccurred(), "after %d media, mark %d of %d", media, nextMark, marks)
		var n int
		switch {
		case isMediaFrame(msg):
			_, err = fmt.Sscanf(string(msg), `{"event":"media","streamSid":"MZ1","media":{"chunk":"%d"`, &n)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(n).To(BeNumerically(">=", nextMedia), "media in order")
			nextMedia = n + 1
			media++
		default:
			_, err = fmt.Sscanf(string(msg), `{"event":"mark","streamSid":"MZ1","mark":{"name":"m%d"`, &n)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(n).To(Equal(nextMark), "no mark dropped, marks in order")
			nextMark++
		}
	}
	g.Expect(float64(media)+counterValue(u.callerToAgentDr)).To(Equal(float64(sent)), "every media frame delivered or counted as dropped")
}

// TestBridgeClosesDeadPeer: a peer that answers pings keeps the call up past
// the idle timeout; one that stops answering (nothing reads its socket, so
// no pong) is closed by the read deadline, and the caller is closed cleanly.
func TestBridgeClosesDeadPeer(t *testing.T) {
	g := NewWithT(t)
	u := startBridge(t, Limits{StreamIdleTimeout: 300 * time.Millisecond, PingInterval: 50 * time.Millisecond, CloseTimeout: time.Second})
	// The caller answers pings all along (gorilla answers them while reading).
	callerClosed := make(chan error, 1)
	go func() {
		for {
			if _, _, err := u.caller.ReadMessage(); err != nil {
				callerClosed <- err
				return
			}
		}
	}()
	// The agent answers pings for a while: well past the idle timeout (and
	// its slack), the call is still up.
	var dead atomic.Bool
	u.agent.SetPingHandler(func(data string) error {
		if dead.Load() {
			return nil // a dead peer: no pong
		}
		return u.agent.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	go func() {
		for {
			if _, _, err := u.agent.ReadMessage(); err != nil {
				return
			}
		}
	}()
	g.Consistently(u.outcome, 3*time.Second).ShouldNot(Receive(), "pongs keep an idle call up")
	dead.Store(true)
	// The agent is dead now: the read deadline ends the call.
	var outcome string
	g.Eventually(u.outcome, 10*time.Second).Should(Receive(&outcome))
	g.Expect(outcome).To(Equal(outcomeAgentError))
	var err error
	g.Eventually(callerClosed, 10*time.Second).Should(Receive(&err))
	g.Expect(websocket.IsCloseError(err, websocket.CloseNormalClosure)).To(BeTrue(), "caller closed cleanly: %v", err)
}
