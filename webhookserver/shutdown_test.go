package webhookserver

import (
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	. "github.com/onsi/gomega"
)

// TestShutdownDrainsLiveCalls: after SIGTERM readiness is false and new
// calls and stream upgrades get 503, while a live call continues both ways
// until the caller hangs up; then Serve returns, well inside the grace period.
func TestShutdownDrainsLiveCalls(t *testing.T) {
	g := NewWithT(t)
	_, acct, agent, h := routedNumber(t, "+14155550200", false, func(o *Options) { o.ShutdownGracePeriod = 10 * time.Minute })
	c := h.routedCall(g, acct, "+15550001", "+14155550200")
	c.open(nil)
	ac := agent.accept(g)
	ac.next(g)
	ac.next(g)
	g.Expect(h.srv.Ready()).To(BeTrue())

	h.stop() // SIGTERM
	g.Eventually(h.srv.Ready).Should(BeFalse())
	resp := h.post(VoicePath, voiceForm(acct.sid, newCallSID(), "+15550002", "+14155550200"), acct.token)
	g.Expect(readStatus(t, resp)).To(Equal(http.StatusServiceUnavailable), "new calls refused")
	_, resp, err := h.dialStream(acct.token)
	g.Expect(err).To(MatchError(websocket.ErrBadHandshake))
	g.Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable), "new streams refused")

	// The live call still flows both ways.
	for i := 1; i <= 5; i++ {
		c.sendMedia(i)
	}
	for _, want := range c.sent {
		g.Expect(ac.next(g)).To(Equal(want))
	}
	back := agentMedia(c.streamSID, 1)
	ac.send(t, back)
	got, err := c.read()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(back))
	select {
	case <-h.done:
		t.Fatal("Serve returned while a call was live")
	default:
	}

	c.hangUp()
	ac.waitClosed(g)
	g.Eventually(h.done, 30*time.Second).Should(BeClosed())
	g.Expect(h.serveErr).NotTo(HaveOccurred())
	g.Expect(counterValue(h.metrics.Streams.WithLabelValues(outcomeCallerClosed))).To(Equal(1.0))
	g.Expect(counterValue(h.metrics.Streams.WithLabelValues(outcomeShutdown))).To(BeZero())
	g.Expect(counterValue(h.metrics.Requests.WithLabelValues(routeVoice, outcomeUnavailable))).To(Equal(1.0))
	g.Expect(counterValue(h.metrics.Requests.WithLabelValues(routeStream, outcomeUnavailable))).To(Equal(1.0))
}

// TestShutdownGraceExpires: a call still live when the grace period ends is
// closed cleanly on both sides (1001 going away).
func TestShutdownGraceExpires(t *testing.T) {
	g := NewWithT(t)
	_, acct, agent, h := routedNumber(t, "+14155550210", false, func(o *Options) { o.ShutdownGracePeriod = 50 * time.Millisecond })
	c := h.routedCall(g, acct, "+15550001", "+14155550210")
	c.open(nil)
	ac := agent.accept(g)
	ac.next(g)
	ac.next(g)

	h.stop()
	ce := c.readUntilClosed()
	g.Expect(ce).NotTo(BeNil())
	g.Expect(ce.Code).To(Equal(websocket.CloseGoingAway))
	g.Expect(websocket.IsCloseError(ac.waitClosed(g), websocket.CloseGoingAway)).To(BeTrue())
	g.Eventually(h.done, 30*time.Second).Should(BeClosed())
	g.Expect(counterValue(h.metrics.Streams.WithLabelValues(outcomeShutdown))).To(Equal(1.0))
}
