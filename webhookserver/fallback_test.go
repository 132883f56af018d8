package webhookserver

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	. "github.com/onsi/gomega"
	twclient "github.com/twilio/twilio-go/client"
	"k8s.io/apimachinery/pkg/types"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/sampleagent"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim/callsim"
)

func withFallback(f *twiliov1.FallbackSpec) numberOpt {
	return func(n *twiliov1.TwilioPhoneNumber) { n.Spec.Fallback = f }
}

func sayFallback(msg string) *twiliov1.FallbackSpec {
	return &twiliov1.FallbackSpec{Action: twiliov1.FallbackSay, Message: msg}
}

// saveOriginal writes status.savedRouting as the operator does when it takes
// a number over.
func saveOriginal(t testing.TB, ns, name string, saved *twiliov1.SavedRouting) {
	t.Helper()
	n := &twiliov1.TwilioPhoneNumber{}
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, n); err != nil {
		t.Fatal(err)
	}
	n.Status.SavedRouting = saved
	prev := saved.VoiceURL
	n.Status.PreviousVoiceURL = &prev
	if err := k8s.Status().Update(context.Background(), n); err != nil {
		t.Fatalf("write saved routing: %v", err)
	}
}

// oldPlatform is the voice application a number had before the operator
// took it over, at https://old.example.test/voice; it checks Twilio's
// signature with twilio-go's RequestValidator and says "old platform".
type oldPlatform struct {
	srv   *httptest.Server
	token string

	mu       sync.Mutex
	requests []url.Values
	sigOK    []bool
}

const oldPlatformURL = "https://old.example.test/voice"

func newOldPlatform(t testing.TB, token string) *oldPlatform {
	p := &oldPlatform{token: token}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rv := twclient.NewRequestValidator(p.token)
		ok := rv.ValidateBody("https://old.example.test"+r.URL.RequestURI(), body, r.Header.Get("X-Twilio-Signature"))
		form, _ := url.ParseQuery(string(body))
		p.mu.Lock()
		p.requests = append(p.requests, form)
		p.sigOK = append(p.sigOK, ok)
		p.mu.Unlock()
		if !ok || r.Method != http.MethodPost {
			http.Error(w, "invalid signature", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "text/xml")
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Say>old platform</Say></Response>`)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// simulatedCall is a callsim call to number through the harness (and, for
// old.example.test, to the old platform).
func (h *harness) simulatedCall(acct account, number string, old *oldPlatform) callsim.Call {
	return callsim.Call{
		VoiceURL: testPublicURL + VoicePath, AuthToken: acct.token, AccountSID: acct.sid,
		From: "+15550001", To: number,
		RewriteURL: func(u *url.URL) *url.URL {
			switch {
			case u.Host == "voice.example.test":
				u.Host = h.addr
			case u.Host == "old.example.test" && old != nil:
				u.Host = strings.TrimPrefix(old.srv.URL, "http://")
			default:
				return u
			}
			u.Scheme = map[string]string{"https": "http", "wss": "ws"}[u.Scheme]
			return u
		},
	}
}

// TestFallbackAfterUnreachableAgent places simulated calls (callsim, which
// runs the TwiML after </Connect> once the server closes the stream, as
// Twilio does) to numbers whose agent is unreachable: each kind of fallback
// runs.
func TestFallbackAfterUnreachableAgent(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	dead := closedPortURL(t)
	createNumber(t, ns, "say", "+14155550420", "main", dead, withFallback(sayFallback("We are closed <today> & tomorrow.")))
	createNumber(t, ns, "dial", "+14155550421", "main", dead, withFallback(&twiliov1.FallbackSpec{Action: twiliov1.FallbackDial, Number: "+14155550199"}))
	createNumber(t, ns, "original", "+14155550422", "main", dead, withFallback(&twiliov1.FallbackSpec{Action: twiliov1.FallbackOriginal}))
	saveOriginal(t, ns, "original", &twiliov1.SavedRouting{VoiceURL: oldPlatformURL, VoiceMethod: "POST"})
	old := newOldPlatform(t, acct.token)
	h := startServer(t, ns)
	g.Eventually(func() twiliov1.FallbackAction { r, _ := h.routing.Lookup("+14155550422"); return r.Fallback }).Should(Equal(twiliov1.FallbackOriginal))
	for _, n := range []string{"+14155550420", "+14155550421"} {
		g.Eventually(func() bool { r, ok := h.routing.Lookup(n); return ok && r.AccountSID == acct.sid && r.Fallback != "" }).Should(BeTrue(), n)
	}
	place := func(g Gomega, number string) callsim.Result {
		c := h.simulatedCall(acct, number, old)
		c.MediaFrames = 250 // 5 s: the call ends because the server closes the stream
		res, err := callsim.Place(t.Context(), c)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.StreamHandshakeStatus).To(Equal(http.StatusSwitchingProtocols))
		g.Expect(res.ServerClosed).To(BeTrue())
		g.Expect(res.StopSent).To(BeFalse())
		g.Expect(res.CloseCode).To(Equal(websocket.CloseTryAgainLater))
		return res
	}

	t.Run("say", func(t *testing.T) {
		g := NewWithT(t)
		res := place(g, "+14155550420")
		g.Expect(res.Verbs).To(Equal([]string{"Start", "Connect", "Say", "Hangup"}))
		g.Expect(res.Say).To(Equal("We are closed <today> & tomorrow."))
		g.Expect(res.Hangup).To(BeTrue())
		g.Expect(res.Dialed).To(BeEmpty())
	})
	t.Run("dial", func(t *testing.T) {
		g := NewWithT(t)
		res := place(g, "+14155550421")
		g.Expect(res.Dialed).To(Equal("+14155550199"))
		g.Expect(res.Say).To(BeEmpty())
		g.Expect(res.Hangup).To(BeFalse())
	})
	t.Run("original", func(t *testing.T) {
		g := NewWithT(t)
		res := place(g, "+14155550422")
		g.Expect(res.Redirects).To(Equal([]string{oldPlatformURL}))
		g.Expect(res.Say).To(Equal("old platform"))
		old.mu.Lock()
		defer old.mu.Unlock()
		g.Expect(old.sigOK).To(Equal([]bool{true}), "the old platform got one correctly signed request")
		g.Expect(old.requests[0].Get("CallSid")).To(Equal(res.CallSID))
		g.Expect(old.requests[0].Get("To")).To(Equal("+14155550422"))
		g.Expect(old.requests[0].Get("AccountSid")).To(Equal(acct.sid))
	})
	// Counted once the server's side of the close handshake is over, which
	// may be after the caller's.
	g.Eventually(func() float64 { return counterValue(h.metrics.Streams.WithLabelValues(outcomeAgentUnreachable)) }).Should(Equal(3.0))
}

// TestNoFallbackWhenCallerHangsUp: a call bridged to a reachable agent
// that the caller ends runs nothing after </Connect>, though the number has
// a fallback.
func TestNoFallbackWhenCallerHangsUp(t *testing.T) {
	g := NewWithT(t)
	agent := sampleagent.New(sampleagent.Options{})
	agentHandler, err := agent.Handler("/media")
	g.Expect(err).NotTo(HaveOccurred())
	agentSrv := httptest.NewServer(agentHandler)
	t.Cleanup(agentSrv.Close)

	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	createNumber(t, ns, "support", "+14155550430", "main", "ws://"+agentSrv.Listener.Addr().String()+"/media",
		withFallback(sayFallback("Fallback should not run.")))
	h := startServer(t, ns)
	g.Eventually(func() bool { r, ok := h.routing.Lookup("+14155550430"); return ok && r.AccountSID == acct.sid }).Should(BeTrue())

	c := h.simulatedCall(acct, "+14155550430", nil)
	c.MediaFrames, c.FramePeriod, c.ToneHz = 20, 2*time.Millisecond, 440
	res, err := callsim.Place(t.Context(), c)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Verbs).To(Equal([]string{"Start", "Connect", "Say", "Hangup"}), "the fallback is in the TwiML")
	g.Expect(res.StopSent).To(BeTrue())
	g.Expect(res.ServerClosed).To(BeFalse())
	g.Expect(res.ReceivedMedia).To(BeNumerically(">", 0), "the agent echoed")
	g.Expect(res.Say).To(BeEmpty())
	g.Expect(res.Hangup).To(BeFalse())
	g.Expect(res.Dialed).To(BeEmpty())
	g.Expect(res.Redirects).To(BeEmpty())
	g.Eventually(agent.Stats).Should(HaveField("CompletedCalls", int64(1)))
}

// TestRoutingRendersFallback: the routing table renders a number's
// fallback, and renders it again when spec.fallback or the saved Voice URL
// changes.
func TestRoutingRendersFallback(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createAccount(t, ns, "main")
	createNumber(t, ns, "support", "+14155550440", "main", "ws://agent.invalid/media",
		withFallback(&twiliov1.FallbackSpec{Action: twiliov1.FallbackOriginal, Message: "Bye."}))
	h := startServer(t, ns)
	route := func() Route { r, _ := h.routing.Lookup("+14155550440"); return r }

	g.Eventually(func() twiliov1.FallbackAction { return route().Fallback }).Should(Equal(twiliov1.FallbackSay), "no saved Voice URL yet: Say")
	g.Expect(route().FallbackTwiML).To(Equal("<Say>Bye.</Say><Hangup/>"))

	saveOriginal(t, ns, "support", &twiliov1.SavedRouting{VoiceURL: "https://old.example.test/a?x=1&y=2", VoiceMethod: "GET"})
	g.Eventually(func() string { return route().FallbackTwiML }).Should(Equal(`<Redirect method="GET">https://old.example.test/a?x=1&amp;y=2</Redirect>`))

	saveOriginal(t, ns, "support", &twiliov1.SavedRouting{VoiceURL: "https://old.example.test/b"})
	g.Eventually(func() string { return route().FallbackTwiML }).Should(Equal(`<Redirect method="POST">https://old.example.test/b</Redirect>`))

	n := &twiliov1.TwilioPhoneNumber{}
	g.Expect(k8s.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "support"}, n)).To(Succeed())
	n.Spec.Fallback = nil
	g.Expect(k8s.Update(t.Context(), n)).To(Succeed())
	g.Eventually(func() string { return route().FallbackTwiML }).Should(BeEmpty())
	g.Expect(route().Fallback).To(BeEmpty())
}
