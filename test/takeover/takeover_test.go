package takeover

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	twclient "github.com/twilio/twilio-go/client"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim/callsim"
)

const original = "https://old-platform.example.com/voice"

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// TestWrongPublicURLTakesOverNothing: a typo'd public URL fails the preflight,
// so no number is touched and each says why; the fixed install proceeds.
func TestWrongPublicURLTakesOverNothing(t *testing.T) {
	ns := newNamespace(t)
	createAccount(t, ns)
	sids := map[string]string{}
	for _, name := range []string{"first", "second"} {
		e164 := nextE164()
		sids[name] = emulator.AddNumber(twiliosim.Number{AccountSID: accountSID, PhoneNumber: e164, VoiceURL: original}).SID
		createNumber(t, ns, name, e164, nil)
	}
	wrong := startInstall(t, installOptions{publicURL: "http://" + deadAddr(t), installID: "prod", namespaces: []string{ns}, preflight: true, publish: true})
	g := NewWithT(t)
	for name := range sids {
		n := waitReady(t, ns, name, metav1.ConditionFalse, twiliov1.ReasonWebhookUnreachable)
		_, _, msg := ready(n)
		g.Expect(msg).To(ContainSubstring(wrong.voiceURL))
		g.Expect(msg).To(ContainSubstring("connection refused"))
		g.Expect(n.Status.SavedRouting).To(BeNil(), "nothing saved: nothing was taken over")
	}
	g.Consistently(func(g Gomega) {
		for _, sid := range sids {
			g.Expect(liveNumber(g, sid).VoiceURL).To(Equal(original))
			g.Expect(updates(sid)).To(BeZero())
		}
	}, 2*poll, tick).Should(Succeed())
	g.Expect(eventReasons(g, ns, "first")).To(ContainElement(twiliov1.ReasonWebhookUnreachable))

	// Fixing the public URL (a restart with the right flag) proceeds.
	wrong.stop()
	fixed := startInstall(t, installOptions{publicURL: publicURL, installID: "prod", namespaces: []string{ns}, preflight: true, publish: true})
	for name, sid := range sids {
		n := waitReady(t, ns, name, metav1.ConditionTrue, twiliov1.ReasonConfigured)
		g.Expect(n.Status.SavedRouting.VoiceURL).To(Equal(original))
		g.Expect(liveNumber(g, sid).VoiceURL).To(Equal(fixed.voiceURL))
	}
	g.Expect(append(eventReasons(g, ns, "first"), eventReasons(g, ns, "second")...)).To(ContainElement("PreflightPassed"), "one preflight per account")

	// A real call through the emulator's routing reaches the agent.
	e164 := getNumber(g, ns, "first").Spec.PhoneNumber
	voiceURL, _, _, ok := emulator.EffectiveVoiceURL(e164)
	g.Expect(ok).To(BeTrue())
	res, err := callsim.Place(t.Context(), callsim.Call{VoiceURL: voiceURL, AuthToken: authToken, AccountSID: accountSID,
		From: "+15005550006", To: e164, MediaFrames: 25})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.StopSent).To(BeTrue())
	g.Expect(res.ReceivedMedia).To(BeNumerically(">", 0), "the agent answered")
}

// TestUnreachableAgentReachesEachFallback: a routed number whose agent is
// gone sends the caller to its fallback, as Twilio runs the TwiML after
// </Connect>.
func TestUnreachableAgentReachesEachFallback(t *testing.T) {
	ns := newNamespace(t)
	createAccount(t, ns)
	var mu sync.Mutex
	var oldPlatformHits []bool // whether each request's signature verified
	oldPlatform := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		params := map[string]string{}
		for k := range r.PostForm {
			params[k] = r.PostForm.Get(k)
		}
		validator := twclient.NewRequestValidator(authToken)
		ok := validator.Validate("http://"+r.Host+r.URL.RequestURI(), params, r.Header.Get("X-Twilio-Signature"))
		mu.Lock()
		oldPlatformHits = append(oldPlatformHits, ok)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/xml")
		_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Response><Say>old platform answers</Say></Response>`))
	}))
	defer oldPlatform.Close()

	cases := map[string]*twiliov1.FallbackSpec{
		"say":      {Action: twiliov1.FallbackSay, Message: "Please call back later."},
		"dial":     {Action: twiliov1.FallbackDial, Number: "+14155550199"},
		"original": {Action: twiliov1.FallbackOriginal, OriginalAsVoiceFallback: true},
	}
	numbers := map[string]string{}
	sids := map[string]string{}
	for name, fb := range cases {
		e164 := nextE164()
		numbers[name] = e164
		sids[name] = emulator.AddNumber(twiliosim.Number{AccountSID: accountSID, PhoneNumber: e164, VoiceURL: oldPlatform.URL + "/voice"}).SID
		createNumber(t, ns, name, e164, func(n *twiliov1.TwilioPhoneNumber) { n.Spec.Fallback = fb })
	}
	startInstall(t, installOptions{publicURL: publicURL, installID: "prod", namespaces: []string{ns}, preflight: true, publish: true})
	g := NewWithT(t)
	for name := range cases {
		waitReady(t, ns, name, metav1.ConditionTrue, twiliov1.ReasonConfigured)
	}
	g.Expect(liveNumber(g, sids["original"]).VoiceFallbackURL).To(Equal(oldPlatform.URL+"/voice"), "originalAsVoiceFallback")

	// The agents go away.
	dead := "ws://" + deadAddr(t) + "/media"
	for name := range cases {
		n := getNumber(g, ns, name)
		base := n.DeepCopy()
		n.Spec.Agent.URL = dead
		g.Expect(k8s.Patch(context.Background(), n, client.MergeFrom(base))).To(Succeed())
	}
	call := func(g Gomega, name string) callsim.Result {
		voiceURL, _, _, ok := emulator.EffectiveVoiceURL(numbers[name])
		g.Expect(ok).To(BeTrue())
		res, err := callsim.Place(t.Context(), callsim.Call{VoiceURL: voiceURL, AuthToken: authToken, AccountSID: accountSID,
			From: "+15005550006", To: numbers[name], MediaFrames: 50, FramePeriod: 20 * time.Millisecond})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.StopSent).To(BeFalse(), "the caller did not hang up: the server ended the stream")
		return res
	}
	g.Eventually(func(g Gomega) {
		res := call(g, "say")
		g.Expect(res.Say).To(Equal("Please call back later."))
		g.Expect(res.Hangup).To(BeTrue())
	}, wait, time.Second).Should(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(call(g, "dial").Dialed).To(Equal("+14155550199"))
	}, wait, time.Second).Should(Succeed())
	g.Eventually(func(g Gomega) {
		res := call(g, "original")
		g.Expect(res.Redirects).To(Equal([]string{oldPlatform.URL + "/voice"}))
		g.Expect(res.Say).To(Equal("old platform answers"))
	}, wait, time.Second).Should(Succeed())
	mu.Lock()
	g.Expect(oldPlatformHits).NotTo(BeEmpty())
	g.Expect(oldPlatformHits).NotTo(ContainElement(false), "Twilio signs the redirected request; the old platform verifies it")
	mu.Unlock()

	// With the webhook server unreachable, Twilio asks the number's
	// VoiceFallbackUrl, which is the old platform.
	e164 := numbers["original"]
	voiceURL, _, _, _ := emulator.EffectiveVoiceURL(e164)
	live := liveNumber(g, sids["original"])
	public, _ := url.Parse(publicURL)
	down := deadAddr(t)
	res, err := callsim.Place(t.Context(), callsim.Call{VoiceURL: voiceURL, AuthToken: authToken, AccountSID: accountSID,
		From: "+15005550006", To: e164, FallbackURL: live.VoiceFallbackURL, FallbackMethod: live.VoiceFallbackMethod,
		RewriteURL: func(u *url.URL) *url.URL {
			if u.Host == public.Host {
				u.Host = down
			}
			return u
		}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.UsedFallbackURL).To(BeTrue())
	g.Expect(res.Say).To(Equal("old platform answers"))

	// Hand-back restores the original fallback (none).
	for name := range cases {
		n := getNumber(g, ns, name)
		base := n.DeepCopy()
		n.Spec.VoiceRouting = twiliov1.VoiceRoutingDisabled
		g.Expect(k8s.Patch(context.Background(), n, client.MergeFrom(base))).To(Succeed())
	}
	waitReady(t, ns, "original", metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled)
	live = liveNumber(g, sids["original"])
	g.Expect([]string{live.VoiceURL, live.VoiceFallbackURL}).To(Equal([]string{oldPlatform.URL + "/voice", ""}))
}

// TestTwoInstallsEndContested: two installs (different public URLs, as two
// clusters) declare the same number of one Twilio account. They settle with
// one routing it and the other Contested, without flapping, and neither saves
// the other's URL as the original.
func TestTwoInstallsEndContested(t *testing.T) {
	nsA, nsB := newNamespace(t), newNamespace(t)
	createAccount(t, nsA)
	createAccount(t, nsB)
	e164 := nextE164()
	sid := emulator.AddNumber(twiliosim.Number{AccountSID: accountSID, PhoneNumber: e164, VoiceURL: original}).SID
	createNumber(t, nsA, "shared", e164, nil)
	createNumber(t, nsB, "shared", e164, nil)
	a := startInstall(t, installOptions{publicURL: "https://cluster-a.example.com", installID: "a", namespaces: []string{nsA}})
	b := startInstall(t, installOptions{publicURL: "https://cluster-b.example.com", installID: "b", namespaces: []string{nsB}})

	g := NewWithT(t)
	reasons := func(g Gomega) []string {
		_, ra, _ := ready(getNumber(g, nsA, "shared"))
		_, rb, _ := ready(getNumber(g, nsB, "shared"))
		return []string{ra, rb}
	}
	g.Eventually(reasons, wait, tick).Should(ConsistOf(twiliov1.ReasonConfigured, twiliov1.ReasonContested))
	settled := updates(sid)
	winner := liveNumber(g, sid).VoiceURL
	g.Expect(winner).To(BeElementOf(a.voiceURL, b.voiceURL))
	g.Consistently(func(g Gomega) {
		g.Expect(reasons(g)).To(ConsistOf(twiliov1.ReasonConfigured, twiliov1.ReasonContested))
		g.Expect(liveNumber(g, sid).VoiceURL).To(Equal(winner))
		g.Expect(updates(sid)).To(Equal(settled), "no flapping")
	}, 3*poll, tick).Should(Succeed())
	for _, ns := range []string{nsA, nsB} {
		n := getNumber(g, ns, "shared")
		if n.Status.SavedRouting != nil {
			g.Expect(n.Status.SavedRouting.VoiceURL).To(Equal(original), "%s saved the real original, never the other install's URL", ns)
		}
		_, reason, msg := ready(n)
		if reason == twiliov1.ReasonContested {
			g.Expect(msg).To(ContainSubstring(winner))
		}
	}

	// The winner hands back: the other install takes over from the original.
	winnerNS := nsA
	if winner == b.voiceURL {
		winnerNS = nsB
	}
	n := getNumber(g, winnerNS, "shared")
	base := n.DeepCopy()
	n.Spec.VoiceRouting = twiliov1.VoiceRoutingDisabled
	g.Expect(k8s.Patch(context.Background(), n, client.MergeFrom(base))).To(Succeed())
	other := nsB
	if winnerNS == nsB {
		other = nsA
	}
	later := waitReady(t, other, "shared", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(later.Status.SavedRouting.VoiceURL).To(Equal(original))
}

func eventReasons(g Gomega, ns, name string) []string {
	var list eventsv1.EventList
	g.Expect(k8s.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e.Reason)
		}
	}
	return out
}

// TestCallEventsReachTheSink: a number taken over with spec.events.callStatus,
// spec.messaging and a sink gets, through the real webhook server, the
// recording and the call's completed status as CloudEvents, with Twilio's
// StatusCallback pointed at the webhook server by the take-over; an SMS sent
// to the SmsUrl the take-over set arrives as message.received, and the
// sink's reply event comes back as the TwiML <Message>. The hand-back puts
// the SMS routing back.
func TestCallEventsReachTheSink(t *testing.T) {
	var mu sync.Mutex
	var types []string
	var smsBodies []string
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		typ := r.Header.Get("Ce-Type")
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		types = append(types, typ+" "+r.Header.Get("Ce-Specversion"))
		mu.Unlock()
		if typ != "io.loquent.twilio.message.received" {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		var msg struct{ Body string }
		_ = json.Unmarshal(body, &msg)
		mu.Lock()
		smsBodies = append(smsBodies, msg.Body)
		mu.Unlock()
		w.Header().Set("Ce-Specversion", "1.0")
		w.Header().Set("Ce-Type", "io.loquent.twilio.message.reply")
		w.Header().Set("Ce-Source", "/test/sink")
		w.Header().Set("Ce-Id", r.Header.Get("Ce-Id")+"-reply")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"body": "Got it: ` + msg.Body + `"}`))
	}))
	defer sink.Close()
	ns := newNamespace(t)
	createAccount(t, ns)
	e164 := nextE164()
	const oldSMS = "https://old-platform.example.com/sms"
	sid := emulator.AddNumber(twiliosim.Number{AccountSID: accountSID, PhoneNumber: e164, VoiceURL: original, SmsURL: oldSMS}).SID
	createNumber(t, ns, "events", e164, func(n *twiliov1.TwilioPhoneNumber) {
		n.Spec.Events = &twiliov1.EventsSpec{Sink: &twiliov1.EventSink{URL: sink.URL + "/events"}, CallStatus: true}
		n.Spec.Messaging = twiliov1.MessagingEnabled
	})
	startInstall(t, installOptions{publicURL: publicURL, installID: "prod", namespaces: []string{ns}, preflight: true, publish: true})
	waitReady(t, ns, "events", metav1.ConditionTrue, twiliov1.ReasonConfigured)

	g := NewWithT(t)
	live := liveNumber(g, sid)
	g.Expect(live.StatusCallback).To(HavePrefix(publicURL+"/twilio/status#"), "the take-over points StatusCallback at the webhook server")
	voiceURL, _, _, _ := emulator.EffectiveVoiceURL(e164)
	// The webhook server sees the number's sink moments after the operator published it.
	g.Eventually(func(g Gomega) {
		res, err := callsim.Place(t.Context(), callsim.Call{VoiceURL: voiceURL, AuthToken: authToken, AccountSID: accountSID,
			From: "+15005550006", To: e164, MediaFrames: 10, StatusCallback: live.StatusCallback, StatusCallbackMethod: live.StatusCallbackMethod})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.StatusCallbackStatus).To(Equal(http.StatusNoContent))
		mu.Lock()
		defer mu.Unlock()
		g.Expect(types).To(ContainElements("io.loquent.twilio.recording.completed 1.0", "io.loquent.twilio.call.completed 1.0"))
	}, wait, time.Second).Should(Succeed())

	// An SMS, sent where Twilio would send it.
	smsURL, _, _, _ := emulator.EffectiveSmsURL(e164)
	g.Expect(smsURL).To(HavePrefix(publicURL+"/twilio/events#"), "the take-over points SmsUrl at the webhook server, with connection overrides")
	res, err := callsim.SendSMS(t.Context(), callsim.SMS{URL: smsURL, AuthToken: authToken, AccountSID: accountSID,
		From: "+15005550006", To: e164, Body: "Can you call me back?"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Status).To(Equal(http.StatusOK))
	g.Expect(res.Replies).To(HaveLen(1))
	g.Expect(res.Replies[0].Body).To(Equal("Got it: Can you call me back?"), "the sink's reply is what Twilio sends back")
	mu.Lock()
	g.Expect(smsBodies).To(Equal([]string{"Can you call me back?"}))
	g.Expect(types).To(ContainElement("io.loquent.twilio.message.received 1.0"))
	mu.Unlock()

	// The hand-back restores the SMS routing too.
	g.Eventually(func() error {
		obj := getNumber(g, ns, "events")
		obj.Spec.VoiceRouting = twiliov1.VoiceRoutingDisabled
		return k8s.Update(t.Context(), obj)
	}, wait, tick).Should(Succeed())
	waitReady(t, ns, "events", metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled)
	g.Expect(liveNumber(g, sid).SmsURL).To(Equal(oldSMS))
}
