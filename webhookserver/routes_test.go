package webhookserver

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	twclient "github.com/twilio/twilio-go/client"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/loquent/twilio-voice-operator/internal/credentials"
)

func TestSignerMatchesTwilioValidator(t *testing.T) {
	g := NewWithT(t)
	// Twilio's documented example (token 12345).
	docParams := url.Values{"CallSid": {"CA1234567890ABCDE"}, "Caller": {"+12349013030"}, "Digits": {"1234"}, "From": {"+12349013030"}, "To": {"+18005551212"}}
	g.Expect(sign("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", docParams)).To(Equal("0/KCTR6DLpKmkAf8muzZqo1nDgQ="))

	cases := []struct {
		url    string
		params url.Values
	}{
		{testPublicURL + VoicePath, voiceForm(newAccountSID(), newCallSID(), "client:<x>&\"'", "+14155550100")},
		{testPublicURL + RecordingPath + "?a=1&b=%20x", url.Values{"Reason": {"x"}, "ReasonConferenceEnded": {"y"}}},
		{testStreamURL, nil},
		{"https://voice.example.test:8443/twilio/events", url.Values{"Body": {"héllo ✓"}}},
	}
	for _, c := range cases {
		rv := twclient.NewRequestValidator("s3cr3t")
		params := map[string]string{}
		for k, v := range c.params {
			params[k] = v[0]
		}
		g.Expect(rv.Validate(c.url, params, sign("s3cr3t", c.url, c.params))).To(BeTrue(), c.url)
		g.Expect(rv.Validate(c.url, params, sign("other", c.url, c.params))).To(BeFalse(), c.url)
	}
}

// TestVoiceAnswer covers the TwiML answer of a routed number: recording
// first, then the bidirectional stream with from, to and the call's token,
// with values XML-escaped.
func TestVoiceAnswer(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	createNumber(t, ns, "support", "+14155550100", "main", "ws://agent.invalid/media")
	h := startServer(t, ns)

	from := `client:<x>&"'` + "\u00e9"
	var doc twimlDoc
	g.Eventually(func(g Gomega) {
		resp := h.post(VoicePath, voiceForm(acct.sid, newCallSID(), from, "+14155550100"), acct.token)
		body := readBody(t, resp)
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
		g.Expect(resp.Header.Get("Content-Type")).To(HavePrefix("text/xml"))
		doc = parseTwiML(t, body)
		g.Expect(doc.Connect).NotTo(BeNil(), body)
	}).Should(Succeed())

	g.Expect(doc.Order).To(Equal([]string{"Start", "Connect"}))
	g.Expect(doc.Start.Recording).NotTo(BeNil())
	g.Expect(doc.Start.Recording.Channels).To(Equal("dual"))
	g.Expect(doc.Start.Recording.Track).To(Equal("both"))
	// The callback names the called number (query-escaped) and asks Twilio
	// to retry (the connection overrides' fragment).
	g.Expect(doc.Start.Recording.Callback).To(Equal(testPublicURL + RecordingPath + "?to=%2B14155550100" + ConnectionOverrides))
	g.Expect(doc.Start.Recording.Events).To(Equal("completed absent"))
	g.Expect(doc.Connect.Stream.URL).To(Equal(testStreamURL+"/"+acct.sid), "the stream URL names the account")
	p := doc.params()
	g.Expect(p).To(HaveKeyWithValue("from", from))
	g.Expect(p).To(HaveKeyWithValue("to", "+14155550100"))
	g.Expect(p["token"]).To(HavePrefix("v1."))
	g.Expect(counterValue(h.metrics.Requests.WithLabelValues(routeVoice, outcomeOK))).To(BeNumerically(">=", 1))
}

func TestVoiceHangsUpWhenNotRouted(t *testing.T) {
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	other := createAccount(t, ns, "other")
	createNumber(t, ns, "off", "+14155550101", "main", "ws://agent.invalid/media", disabled())
	createNumber(t, ns, "noagent", "+14155550102", "main", "")
	createNumber(t, ns, "elsewhere", "+14155550103", "other", "ws://agent.invalid/media")
	h := startServer(t, ns)
	cases := []struct {
		name, to, outcome string
	}{
		{"unknown number", "+14155559999", outcomeHangupUnknown},
		{"disabled number", "+14155550101", outcomeHangupDisabled},
		{"number without agent", "+14155550102", outcomeHangupNoAgent},
		{"number of another account", "+14155550103", outcomeHangupWrongAcct},
	}
	_ = other
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Eventually(func(g Gomega) {
				resp := h.post(VoicePath, voiceForm(acct.sid, newCallSID(), "+15550001", c.to), acct.token)
				body := readBody(t, resp)
				g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
				g.Expect(resp.Header.Get("Content-Type")).To(HavePrefix("text/xml"))
				doc := parseTwiML(t, body)
				g.Expect(doc.Order).To(Equal([]string{"Say", "Hangup"}), body)
				g.Expect(doc.Say[0]).To(Equal(unavailableMessage))
				g.Expect(counterValue(h.metrics.Requests.WithLabelValues(routeVoice, c.outcome))).To(BeNumerically(">=", 1))
			}).Should(Succeed())
		})
	}
}

func TestVoiceWithoutRecording(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	createNumber(t, ns, "quiet", "+14155550110", "main", "ws://agent.invalid/media", recordingOff())
	h := startServer(t, ns)
	g.Eventually(func(g Gomega) {
		resp := h.post(VoicePath, voiceForm(acct.sid, newCallSID(), "+15550001", "+14155550110"), acct.token)
		doc := parseTwiML(t, readBody(t, resp))
		g.Expect(doc.Order).To(Equal([]string{"Connect"}))
		g.Expect(doc.Start).To(BeNil())
	}).Should(Succeed())
}

// TestWebhookRejections checks every HTTP route refuses what Twilio would
// never send: bad signatures (403), malformed forms (400), oversized bodies
// (413), wrong methods (405) and wrong content types (415).
func TestWebhookRejections(t *testing.T) {
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	other := createAccount(t, ns, "other")
	createNumber(t, ns, "support", "+14155550120", "main", "ws://agent.invalid/media")
	h := startServer(t, ns)
	// Wait until both accounts' tokens are known.
	NewWithT(t).Eventually(func() int { return knownAccounts(h.routing) }).Should(Equal(2))

	routes := map[string]url.Values{
		VoicePath:     voiceForm(acct.sid, newCallSID(), "+15550001", "+14155550120"),
		RecordingPath: {"AccountSid": {acct.sid}, "CallSid": {newCallSID()}, "RecordingSid": {"RE1"}, "RecordingStatus": {"completed"}},
		EventsPath:    {"AccountSid": {acct.sid}, "MessageSid": {"SM1"}, "From": {"+15550001"}, "To": {"+14155550120"}, "Body": {"hi"}},
	}
	label := map[string]string{VoicePath: routeVoice, RecordingPath: routeRecording, EventsPath: routeEvents}
	for path, form := range routes {
		t.Run(path, func(t *testing.T) {
			send := func(method, contentType, body, sig string) int {
				req, err := http.NewRequest(method, "http://"+h.addr+path, strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", contentType)
				if sig != "" {
					req.Header.Set(signatureHeader, sig)
				}
				resp, err := h.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				readBody(t, resp)
				return resp.StatusCode
			}
			const ct = "application/x-www-form-urlencoded"
			good := sign(acct.token, testPublicURL+path, form)
			tampered := url.Values{}
			for k, v := range form {
				tampered[k] = v
			}
			tampered.Set("To", "+19995550000")
			wrongAcct := url.Values{}
			for k, v := range form {
				wrongAcct[k] = v
			}
			wrongAcct.Set("AccountSid", other.sid) // signed with main's token, claims other's

			cases := []struct {
				name           string
				method, ct     string
				body, sig      string
				status         int
				sigFailure     string
				outcomeCounted string
			}{
				{"valid", http.MethodPost, ct, form.Encode(), good, 0, "", ""},
				{"missing signature", http.MethodPost, ct, form.Encode(), "", http.StatusForbidden, sigMissing, outcomeForbidden},
				{"forged signature", http.MethodPost, ct, form.Encode(), sign("guessed", testPublicURL+path, form), http.StatusForbidden, sigInvalid, outcomeForbidden},
				{"tampered params", http.MethodPost, ct, tampered.Encode(), good, http.StatusForbidden, sigInvalid, outcomeForbidden},
				{"signed over the pod's host", http.MethodPost, ct, form.Encode(), sign(acct.token, "http://"+h.addr+path, form), http.StatusForbidden, sigInvalid, outcomeForbidden},
				{"wrong account's token", http.MethodPost, ct, wrongAcct.Encode(), sign(acct.token, testPublicURL+path, wrongAcct), http.StatusForbidden, sigInvalid, outcomeForbidden},
				{"unknown account", http.MethodPost, ct, url.Values{"AccountSid": {newAccountSID()}}.Encode(), good, http.StatusForbidden, sigUnknownAccount, outcomeForbidden},
				{"malformed form", http.MethodPost, ct, "AccountSid=%zz&To=%", good, http.StatusBadRequest, "", outcomeBadRequest},
				{"oversized body", http.MethodPost, ct, "Body=" + strings.Repeat("x", 70<<10), good, http.StatusRequestEntityTooLarge, "", outcomeTooLarge},
				{"GET", http.MethodGet, ct, "", good, http.StatusMethodNotAllowed, "", outcomeMethodNotAllowed},
				{"JSON body", http.MethodPost, "application/json", `{"AccountSid":"x"}`, good, http.StatusUnsupportedMediaType, "", outcomeUnsupportedMedia},
			}
			for _, c := range cases {
				g := NewWithT(t)
				before := counterValue(h.metrics.SignatureFailures.WithLabelValues(label[path], c.sigFailure))
				status := send(c.method, c.ct, c.body, c.sig)
				if c.status == 0 {
					g.Expect(status).To(BeElementOf(http.StatusOK, http.StatusNoContent), c.name)
					continue
				}
				g.Expect(status).To(Equal(c.status), c.name)
				if c.sigFailure != "" {
					g.Expect(counterValue(h.metrics.SignatureFailures.WithLabelValues(label[path], c.sigFailure))).To(Equal(before+1), c.name)
				}
				g.Expect(counterValue(h.metrics.Requests.WithLabelValues(label[path], c.outcomeCounted))).To(BeNumerically(">=", 1), c.name)
			}
		})
	}
}

// TestAuthTokenChangeIsLive: a token the manager re-verified and published
// again (a rotation) is used without a restart, and the old one stops working.
func TestAuthTokenChangeIsLive(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	h := startServer(t, ns)
	form := url.Values{"AccountSid": {acct.sid}, "MessageSid": {"SM1"}}
	g.Eventually(func() int { return readStatus(t, h.post(EventsPath, form, acct.token)) }).Should(Equal(http.StatusOK))

	publishAccount(t, ns, credentials.Account{Namespace: ns, Name: "main", AccountSID: acct.sid, AuthToken: "rotatedToken1"})
	g.Eventually(func() int { return readStatus(t, h.post(EventsPath, form, "rotatedToken1")) }).Should(Equal(http.StatusOK))
	g.Expect(readStatus(t, h.post(EventsPath, form, acct.token))).To(Equal(http.StatusForbidden))
}

func TestRecordingCallbackDuplicates(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	h := startServer(t, ns)
	form := url.Values{
		"AccountSid": {acct.sid}, "CallSid": {newCallSID()}, "RecordingSid": {"RE0123"}, "RecordingStatus": {"completed"},
		"RecordingDuration": {"42"}, "RecordingChannels": {"2"}, "RecordingUrl": {"https://api.twilio.com/x"},
	}
	g.Eventually(func() int { return readStatus(t, h.post(RecordingPath, form, acct.token)) }).Should(Equal(http.StatusNoContent))
	g.Expect(counterValue(h.metrics.RecordingDuplicates)).To(BeZero())
	g.Expect(counterValue(h.metrics.RecordingDuration)).To(Equal(1.0))

	g.Expect(readStatus(t, h.post(RecordingPath, form, acct.token))).To(Equal(http.StatusNoContent))
	g.Expect(counterValue(h.metrics.RecordingDuplicates)).To(Equal(1.0))
	g.Expect(counterValue(h.metrics.RecordingDuration)).To(Equal(1.0))

	// Same recording, another status: not a duplicate.
	form.Set("RecordingStatus", "absent")
	g.Expect(readStatus(t, h.post(RecordingPath, form, acct.token))).To(Equal(http.StatusNoContent))
	g.Expect(counterValue(h.metrics.RecordingDuplicates)).To(Equal(1.0))
	g.Expect(counterValue(h.metrics.RecordingCallbacks.WithLabelValues("completed"))).To(Equal(2.0))
	g.Expect(counterValue(h.metrics.RecordingCallbacks.WithLabelValues("absent"))).To(Equal(1.0))
}

func TestSMSEvent(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	h := startServer(t, ns)
	form := url.Values{"AccountSid": {acct.sid}, "MessageSid": {"SM1"}, "From": {"+15550001"}, "To": {"+14155550100"}, "Body": {"hello <&>"}, "NumMedia": {"0"}}
	g.Eventually(func(g Gomega) {
		resp := h.post(EventsPath, form, acct.token)
		body := readBody(t, resp)
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
		g.Expect(resp.Header.Get("Content-Type")).To(HavePrefix("text/xml"))
		doc := parseTwiML(t, body)
		g.Expect(doc.Order).To(BeEmpty())
	}).Should(Succeed())
}

func secretOf(t testing.TB, ns, name string) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	if err := k8s.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: name}, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func readStatus(t testing.TB, resp *http.Response) int {
	readBody(t, resp)
	return resp.StatusCode
}
