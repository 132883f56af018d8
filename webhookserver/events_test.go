package webhookserver

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/credentials"
	"github.com/loquent/twilio-voice-operator/internal/egress"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim/callsim"
)

// ceSink is a CloudEvents sink as a Knative broker or an Argo Events
// webhook source would be: the SDK's HTTP receive handler, on loopback. It
// can be down (503) for its first requests, or refuse every event; it
// answers with the event its answer function returns, if any (the SDK's
// response event).
type ceSink struct {
	srv *httptest.Server
	url string
	// failFirst requests are answered 503 (the sink is down); refuse, when
	// set, answers every request with that status.
	failFirst atomic.Int32
	refuse    atomic.Int32
	requests  atomic.Int32

	mu      sync.Mutex
	events  []cloudevents.Event
	headers []http.Header // of the requests whose events were received
	answer  func(cloudevents.Event) *cloudevents.Event
	// answerHeaders are the headers of the sink's answers to those requests.
	answerHeaders []http.Header
}

// answerWith makes the sink answer each event it receives with f's event
// (nil: none).
func (s *ceSink) answerWith(f func(cloudevents.Event) *cloudevents.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answer = f
}

func newCESink(t testing.TB) *ceSink {
	t.Helper()
	s := &ceSink{}
	p, err := cloudevents.NewHTTP()
	if err != nil {
		t.Fatal(err)
	}
	receive, err := cloudevents.NewHTTPReceiveHandler(context.Background(), p, func(_ context.Context, e cloudevents.Event) (*cloudevents.Event, cloudevents.Result) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.events = append(s.events, e)
		if s.answer != nil {
			return s.answer(e), nil
		}
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := s.requests.Add(1); n <= s.failFirst.Load() {
			http.Error(w, "sink down", http.StatusServiceUnavailable)
			return
		}
		if code := s.refuse.Load(); code != 0 {
			http.Error(w, "refused", int(code))
			return
		}
		s.mu.Lock()
		s.headers = append(s.headers, r.Header.Clone())
		s.mu.Unlock()
		receive.ServeHTTP(w, r)
		s.mu.Lock()
		s.answerHeaders = append(s.answerHeaders, w.Header().Clone())
		s.mu.Unlock()
	}))
	s.url = s.srv.URL + "/voice/default"
	t.Cleanup(s.srv.Close)
	return s
}

// received returns the events received so far.
func (s *ceSink) received() []cloudevents.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]cloudevents.Event(nil), s.events...)
}

// uniqueIDs are the distinct ids among the received events: what a sink
// that deduplicates by id keeps.
func (s *ceSink) uniqueIDs() []string {
	var ids []string
	seen := map[string]bool{}
	for _, e := range s.received() {
		if !seen[e.ID()] {
			seen[e.ID()] = true
			ids = append(ids, e.ID())
		}
	}
	return ids
}

func withSink(u string) numberOpt {
	return func(n *twiliov1.TwilioPhoneNumber) {
		n.Spec.Events = &twiliov1.EventsSpec{Sink: &twiliov1.EventSink{URL: u}}
	}
}

// fastEvents makes event delivery quick to test: attempts 10 ms apart.
func fastEvents(attempts int) func(*Options) {
	return func(o *Options) {
		o.Limits.EventAttempts = attempts
		o.Limits.EventBackoff = 10 * time.Millisecond
		o.Limits.EventAttemptTimeout = 2 * time.Second
		o.Limits.EventBudget = 5 * time.Second
	}
}

// waitSink waits until number routes to sink.
func waitSink(t testing.TB, h *harness, number, sink string) {
	t.Helper()
	NewWithT(t).Eventually(func() string { r, _ := h.routing.Lookup(number); return r.EventSinkURL }, 30*time.Second, 10*time.Millisecond).
		Should(Equal(sink), number)
}

// eventsCount reads twilio_webhook_events_total{type,result}.
func (h *harness) eventsCount(typ, result string) float64 {
	return counterValue(h.metrics.Events.WithLabelValues(typ, result))
}

// recordingCallback is a recording status callback as Twilio sends it to
// the URL the answer named (the query naming the called number).
func recordingCallback(acct account, callSID, recSID, to string) (string, url.Values) {
	return RecordingPath + "?" + RecordingToParam + "=" + url.QueryEscape(to), url.Values{
		"AccountSid": {acct.sid}, "CallSid": {callSID}, "RecordingSid": {recSID}, "RecordingStatus": {"completed"},
		"RecordingUrl":      {"https://api.twilio.com/2010-04-01/Accounts/" + acct.sid + "/Recordings/" + recSID},
		"RecordingDuration": {"2"}, "RecordingChannels": {"2"}, "RecordingSource": {"StartCallRecordingTwiML"},
		"RecordingStartTime": {"Mon, 02 Jan 2026 15:04:05 +0000"}, "ErrorCode": {"0"},
	}
}

// TestRecordingEventReachesSink places a call end to end (callsim: the
// voice webhook, the media stream, then the recording status callback at
// the URL the answer named) and reads the CloudEvent the sink received.
func TestRecordingEventReachesSink(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	agent := newTestAgent(t, false)
	sink := newCESink(t)
	const number = "+14155550600"
	createNumber(t, ns, "support", number, "main", agent.url, withSink(sink.url))
	h := startServer(t, ns, fastEvents(3))
	waitSink(t, h, number, sink.url)

	c := h.simulatedCall(acct, number, nil)
	c.MediaFrames = 10
	c.FramePeriod = -1
	res, err := callsim.Place(t.Context(), c)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Recording).NotTo(BeNil())
	g.Expect(res.Recording.RecordingStatusCallback).To(Equal(testPublicURL + RecordingPath + "?to=%2B14155550600" + ConnectionOverrides))
	g.Expect(res.RecordingCallbackStatus).To(Equal(http.StatusNoContent))
	g.Expect(res.RecordingCallbackAttempts).To(Equal(1))

	events := sink.received()
	g.Expect(events).To(HaveLen(1))
	e := events[0]
	g.Expect(e.SpecVersion()).To(Equal("1.0"))
	g.Expect(e.Type()).To(Equal(EventTypeRecordingCompleted))
	g.Expect(e.Source()).To(Equal("/twilio/accounts/" + acct.sid + "/numbers/" + number))
	g.Expect(e.Subject()).To(Equal(res.CallSID))
	g.Expect(e.ID()).To(Equal(EventID(EventTypeRecordingCompleted, res.RecordingSID, "completed")))
	g.Expect(e.ID()).To(MatchRegexp(`^[0-9a-f]{64}$`))
	g.Expect(e.Time()).To(BeTemporally("~", time.Now(), time.Minute))
	g.Expect(e.DataContentType()).To(Equal("application/json"))
	var data map[string]any
	g.Expect(json.Unmarshal(e.Data(), &data)).To(Succeed())
	g.Expect(data).To(Equal(map[string]any{
		"accountSid": acct.sid, "callSid": res.CallSID, "recordingSid": res.RecordingSID,
		"recordingUrl": "https://api.twilio.com/2010-04-01/Accounts/" + acct.sid + "/Recordings/" + res.RecordingSID,
		"to":           number, "status": "completed", "duration": 1.0, "channels": 2.0,
		"recordingSource": "StartCallRecordingTwiML", "recordingStartTime": data["recordingStartTime"],
	}))
	_, err = time.Parse(time.RFC1123Z, data["recordingStartTime"].(string))
	g.Expect(err).NotTo(HaveOccurred())

	// Binary mode: the attributes are ce- headers and the body is the data.
	sink.mu.Lock()
	hdr := sink.headers[0]
	sink.mu.Unlock()
	g.Expect(hdr.Get("Ce-Specversion")).To(Equal("1.0"))
	g.Expect(hdr.Get("Ce-Type")).To(Equal(EventTypeRecordingCompleted))
	g.Expect(hdr.Get("Content-Type")).To(Equal("application/json"))

	g.Expect(h.eventsCount(EventTypeRecordingCompleted, eventDelivered)).To(Equal(1.0))
	g.Expect(counterValue(h.metrics.EventDelivery.WithLabelValues(eventDelivered).(prometheus.Histogram))).To(Equal(1.0))
	g.Expect(counterValue(h.metrics.RecordingDuration)).To(Equal(1.0))
}

// TestMessageEventReachesSink sends an inbound MMS (callsim.SendSMS, signed
// over the SmsUrl the operator would set) and reads the CloudEvent.
func TestMessageEventReachesSink(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	sink := newCESink(t)
	const number = "+14155550601"
	createNumber(t, ns, "support", number, "main", "ws://agent.invalid/media", withSink(sink.url))
	h := startServer(t, ns, fastEvents(3))
	waitSink(t, h, number, sink.url)

	res, err := callsim.SendSMS(t.Context(), h.sms(acct, number, ConnectionOverrides, "https://api.twilio.com/media/ME1", "https://api.twilio.com/media/ME2"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Status).To(Equal(http.StatusOK))
	g.Expect(res.ContentType).To(HavePrefix("text/xml"))
	g.Expect(parseTwiML(t, res.Body).Order).To(BeEmpty(), "no reply")
	g.Expect(res.Replies).To(BeEmpty())
	g.Expect(counterValue(h.metrics.MessageReplies.WithLabelValues(replyNone))).To(Equal(1.0), "the sink answered 2xx without an event")

	events := sink.received()
	g.Expect(events).To(HaveLen(1))
	e := events[0]
	g.Expect(e.Type()).To(Equal(EventTypeMessageReceived))
	g.Expect(e.Source()).To(Equal("/twilio/accounts/" + acct.sid + "/numbers/" + number))
	g.Expect(e.Subject()).To(Equal(res.MessageSID))
	g.Expect(e.ID()).To(Equal(EventID(EventTypeMessageReceived, res.MessageSID)))
	g.Expect(e.DataContentType()).To(Equal("application/json"))
	var data MessageData
	g.Expect(json.Unmarshal(e.Data(), &data)).To(Succeed())
	g.Expect(data).To(Equal(MessageData{
		AccountSID: acct.sid, MessageSID: res.MessageSID, From: "+15005550006", To: number, Body: "Hi <there> & bye",
		NumMedia: 2, MediaURLs: []string{"https://api.twilio.com/media/ME1", "https://api.twilio.com/media/ME2"},
		MediaContentTypes: []string{callsim.DefaultMediaContentType, callsim.DefaultMediaContentType},
	}))
	g.Expect(h.eventsCount(EventTypeMessageReceived, eventDelivered)).To(Equal(1.0))

	// Without media the lists are empty, not null.
	res, err = callsim.SendSMS(t.Context(), h.sms(acct, number, ""))
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(sink.received).Should(HaveLen(2))
	g.Expect(string(sink.received()[1].Data())).To(ContainSubstring(`"mediaUrls":[]`))
	g.Expect(sink.received()[1].Subject()).To(Equal(res.MessageSID))
}

// sms is an inbound SMS to number through the harness, at the SmsUrl the
// operator would set (EventsPath with fragment).
func (h *harness) sms(acct account, number, fragment string, media ...string) callsim.SMS {
	return callsim.SMS{
		URL: testPublicURL + EventsPath + fragment, AuthToken: acct.token, AccountSID: acct.sid,
		From: "+15005550006", To: number, Body: "Hi <there> & bye", MediaURLs: media,
		RewriteURL: func(u *url.URL) *url.URL { u.Scheme, u.Host = "http", h.addr; return u },
	}
}

// TestEventSinkDownTwilioRetries: the sink is down for its first requests.
// The server tries twice per Twilio request, answers 503, and the emulated
// Twilio retries per the callback URL's connection overrides until the
// event is delivered. A repeat of the callback is a duplicate here, and on
// another replica (which has not seen it) is delivered again with the same
// id: a sink that deduplicates by id keeps one event.
func TestEventSinkDownTwilioRetries(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	agent := newTestAgent(t, false)
	sink := newCESink(t)
	sink.failFirst.Store(4)
	const number = "+14155550602"
	createNumber(t, ns, "support", number, "main", agent.url, withSink(sink.url))
	h := startServer(t, ns, fastEvents(2))
	waitSink(t, h, number, sink.url)

	c := h.simulatedCall(acct, number, nil)
	c.MediaFrames = 5
	c.FramePeriod = -1
	res, err := callsim.Place(t.Context(), c)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.RecordingCallbackAttempts).To(Equal(3), "503, 503, then 204")
	g.Expect(res.RecordingCallbackStatus).To(Equal(http.StatusNoContent))
	g.Expect(sink.requests.Load()).To(Equal(int32(5)), "2 + 2 attempts while down, then 1")
	g.Expect(sink.received()).To(HaveLen(1))
	id := EventID(EventTypeRecordingCompleted, res.RecordingSID, "completed")
	g.Expect(sink.received()[0].ID()).To(Equal(id))
	g.Expect(h.eventsCount(EventTypeRecordingCompleted, eventRetried)).To(Equal(2.0))
	g.Expect(h.eventsCount(EventTypeRecordingCompleted, eventDelivered)).To(Equal(1.0))
	g.Expect(counterValue(h.metrics.Requests.WithLabelValues(routeRecording, outcomeSinkUnavailable))).To(Equal(2.0))
	g.Expect(counterValue(h.metrics.RecordingDuplicates)).To(BeZero(), "a retry after a failed delivery is not a duplicate")
	g.Expect(counterValue(h.metrics.RecordingDuration)).To(Equal(1.0), "observed once")

	// Twilio sends it once more (its retry crossed the answer): a duplicate.
	path, form := recordingCallback(acct, res.CallSID, res.RecordingSID, number)
	g.Expect(readStatus(t, h.post(path, form, acct.token))).To(Equal(http.StatusNoContent))
	g.Expect(counterValue(h.metrics.RecordingDuplicates)).To(Equal(1.0))
	g.Expect(sink.received()).To(HaveLen(1))

	// Another replica receives it: delivered again, with the same id.
	other := startServer(t, ns, fastEvents(2))
	waitSink(t, other, number, sink.url)
	g.Expect(readStatus(t, other.post(path, form, acct.token))).To(Equal(http.StatusNoContent))
	g.Expect(sink.received()).To(HaveLen(2))
	g.Expect(sink.received()[1].ID()).To(Equal(id))
	g.Expect(sink.uniqueIDs()).To(Equal([]string{id}), "the event arrives once, deduplicated by id")

	// A message while the sink is down: the same, through SendSMS.
	sink.requests.Store(0)
	sink.failFirst.Store(2)
	msg, err := callsim.SendSMS(t.Context(), h.sms(acct, number, ConnectionOverrides))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(msg.Attempts).To(Equal(2))
	g.Expect(msg.Status).To(Equal(http.StatusOK))
	g.Expect(sink.received()).To(HaveLen(3))
	g.Expect(sink.received()[2].ID()).To(Equal(EventID(EventTypeMessageReceived, msg.MessageSID)))
	g.Expect(h.eventsCount(EventTypeMessageReceived, eventRetried)).To(Equal(1.0))
}

// Without retries asked for (no fragment), a failed delivery is lost: the
// server answers 503 once and Twilio does not retry.
func TestEventSinkDownWithoutOverridesIsLost(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	sink := newCESink(t)
	sink.failFirst.Store(100)
	const number = "+14155550603"
	createNumber(t, ns, "support", number, "main", "ws://agent.invalid/media", withSink(sink.url))
	h := startServer(t, ns, fastEvents(2))
	waitSink(t, h, number, sink.url)
	res, err := callsim.SendSMS(t.Context(), h.sms(acct, number, ""))
	g.Expect(err).To(MatchError(callsim.ErrWebhookFailed))
	g.Expect(res.Attempts).To(Equal(1))
	g.Expect(res.Status).To(Equal(http.StatusServiceUnavailable))
	g.Expect(sink.requests.Load()).To(Equal(int32(2)))
	g.Expect(sink.received()).To(BeEmpty())
	g.Expect(counterValue(h.metrics.Requests.WithLabelValues(routeEvents, outcomeSinkUnavailable))).To(Equal(1.0))
}

// A sink that refuses an event (4xx other than 408 and 429) refuses it for
// good: no retry, Twilio gets 204, the event is counted failed, and the
// callback is remembered.
func TestEventSinkRefusalIsPermanent(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	sink := newCESink(t)
	sink.refuse.Store(http.StatusBadRequest)
	const number = "+14155550604"
	createNumber(t, ns, "support", number, "main", "ws://agent.invalid/media", withSink(sink.url))
	h := startServer(t, ns, fastEvents(3))
	waitSink(t, h, number, sink.url)
	path, form := recordingCallback(acct, newCallSID(), "RE0000000000000000000000000000a1", number)
	g.Expect(readStatus(t, h.post(path, form, acct.token))).To(Equal(http.StatusNoContent))
	g.Expect(sink.requests.Load()).To(Equal(int32(1)))
	g.Expect(h.eventsCount(EventTypeRecordingCompleted, eventFailed)).To(Equal(1.0))
	g.Expect(counterValue(h.metrics.EventDelivery.WithLabelValues(eventFailed).(prometheus.Histogram))).To(Equal(1.0))
	g.Expect(readStatus(t, h.post(path, form, acct.token))).To(Equal(http.StatusNoContent))
	g.Expect(counterValue(h.metrics.RecordingDuplicates)).To(Equal(1.0))
	g.Expect(sink.requests.Load()).To(Equal(int32(1)))

	// 429 and 408 are retried, like 5xx.
	sink.refuse.Store(http.StatusTooManyRequests)
	path, form = recordingCallback(acct, newCallSID(), "RE0000000000000000000000000000a2", number)
	g.Expect(readStatus(t, h.post(path, form, acct.token))).To(Equal(http.StatusServiceUnavailable))
	g.Expect(sink.requests.Load()).To(Equal(int32(4)))
}

// TestAccountDefaultSink: a number without its own sink gets its account's
// (spec.events.sink.url as the manager publishes it); its own wins.
func TestAccountDefaultSink(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	accountSink, numberSink := newCESink(t), newCESink(t)
	publishAccount(t, ns, credentials.Account{Namespace: ns, Name: "main", AccountSID: acct.sid, AuthToken: acct.token, EventSinkURL: accountSink.url})
	createNumber(t, ns, "plain", "+14155550605", "main", "ws://agent.invalid/media")
	createNumber(t, ns, "own", "+14155550606", "main", "ws://agent.invalid/media", withSink(numberSink.url))
	h := startServer(t, ns, fastEvents(3))
	waitSink(t, h, "+14155550605", accountSink.url)
	waitSink(t, h, "+14155550606", numberSink.url)

	for _, number := range []string{"+14155550605", "+14155550606"} {
		_, err := callsim.SendSMS(t.Context(), h.sms(acct, number, ConnectionOverrides))
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(accountSink.received()).To(HaveLen(1))
	g.Expect(accountSink.received()[0].Source()).To(HaveSuffix("/numbers/+14155550605"))
	g.Expect(numberSink.received()).To(HaveLen(1))
	g.Expect(numberSink.received()[0].Source()).To(HaveSuffix("/numbers/+14155550606"))

	// The account's sink changes live.
	publishAccount(t, ns, credentials.Account{Namespace: ns, Name: "main", AccountSID: acct.sid, AuthToken: acct.token})
	waitSink(t, h, "+14155550605", "")
	_, err := callsim.SendSMS(t.Context(), h.sms(acct, "+14155550605", ConnectionOverrides))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(accountSink.received()).To(HaveLen(1))
	g.Expect(h.eventsCount(EventTypeMessageReceived, eventNoSink)).To(Equal(1.0))
}

// TestEventSinkRefusedByEgress: the agents' egress policy applies to sinks.
// A loopback sink (loopback not allowed here) is never contacted, nor is a
// link-local one (cloud metadata); either is counted failed, and Twilio
// gets 204 (retrying cannot help).
func TestEventSinkRefusedByEgress(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	sink := newCESink(t)
	createNumber(t, ns, "loop", "+14155550607", "main", "ws://agent.invalid/media", withSink(sink.url))
	createNumber(t, ns, "meta", "+14155550608", "main", "ws://agent.invalid/media", withSink("http://169.254.169.254/latest/meta-data"))
	strict, err := egress.New(egress.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	h := startServer(t, ns, fastEvents(3), func(o *Options) { o.AgentEgress = strict })
	waitSink(t, h, "+14155550607", sink.url)
	waitSink(t, h, "+14155550608", "http://169.254.169.254/latest/meta-data")

	for _, number := range []string{"+14155550607", "+14155550608"} {
		path, form := recordingCallback(acct, newCallSID(), "RE00000000000000000000000000"+strings.TrimPrefix(number, "+14155"), number)
		start := time.Now()
		g.Expect(readStatus(t, h.post(path, form, acct.token))).To(Equal(http.StatusNoContent), number)
		g.Expect(time.Since(start)).To(BeNumerically("<", 2*time.Second), "refused at once, not retried")
	}
	g.Expect(sink.requests.Load()).To(BeZero(), "never contacted")
	g.Expect(h.eventsCount(EventTypeRecordingCompleted, eventFailed)).To(Equal(2.0))
	g.Expect(h.eventsCount(EventTypeRecordingCompleted, eventRetried)).To(BeZero())
}

// TestNoSinkNoDelivery: without a sink, callbacks are logged and counted as
// before (204, <Response/>); so are callbacks that name no number, a number
// not routed here, or a number of another account.
func TestNoSinkNoDelivery(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	other := createAccount(t, ns, "other")
	sink := newCESink(t)
	createNumber(t, ns, "plain", "+14155550609", "main", "ws://agent.invalid/media")
	createNumber(t, ns, "theirs", "+14155550610", "other", "ws://agent.invalid/media", withSink(sink.url))
	h := startServer(t, ns, fastEvents(3))
	waitSink(t, h, "+14155550610", sink.url)

	for i, to := range []string{"+14155550609", "", "+14155550699", "+14155550610"} {
		path, form := recordingCallback(acct, newCallSID(), "RE0000000000000000000000000000b"+string(rune('0'+i)), to)
		if to == "" {
			path = RecordingPath
		}
		g.Expect(readStatus(t, h.post(path, form, acct.token))).To(Equal(http.StatusNoContent), to)
	}
	g.Expect(h.eventsCount(EventTypeRecordingCompleted, eventNoSink)).To(Equal(4.0))

	resp := h.post(EventsPath, url.Values{"AccountSid": {acct.sid}, "MessageSid": {"SM1"}, "SmsStatus": {"received"},
		"From": {"+15550001"}, "To": {"+14155550610"}, "Body": {"x"}}, acct.token)
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(parseTwiML(t, readBody(t, resp)).Order).To(BeEmpty())
	g.Expect(h.eventsCount(EventTypeMessageReceived, eventNoSink)).To(Equal(1.0))
	g.Expect(sink.requests.Load()).To(BeZero(), "another account's number: its sink gets nothing of this account")
	_ = other
}

// TestEventIDs: ids are stable per Twilio callback and differ between
// statuses, recordings and types.
func TestEventIDs(t *testing.T) {
	g := NewWithT(t)
	a := EventID(EventTypeRecordingCompleted, "RE1", "completed")
	g.Expect(a).To(Equal(EventID(EventTypeRecordingCompleted, "RE1", "completed")))
	g.Expect(a).NotTo(Equal(EventID(EventTypeRecordingAbsent, "RE1", "absent")))
	g.Expect(a).NotTo(Equal(EventID(EventTypeRecordingCompleted, "RE2", "completed")))
	g.Expect(EventID(EventTypeRecordingPrefix+"other", "RE1", "x")).NotTo(Equal(EventID(EventTypeRecordingPrefix+"other", "RE1", "y")))
	g.Expect(EventID("a", "bc")).NotTo(Equal(EventID("ab", "c")))
	g.Expect(recordingEventType("absent")).To(Equal(EventTypeRecordingAbsent))
	g.Expect(recordingEventType("weird")).To(Equal(EventTypeRecordingPrefix + "other"))
	g.Expect(eventTypes()).To(ContainElements(EventTypeRecordingCompleted, EventTypeRecordingAbsent, EventTypeMessageReceived))
}

// TestEventDeliveryOutcomes: which sink answers are retried within the
// budget (408, 429, 5xx, no answer) and which fail at once (3xx, other 4xx,
// a URL that is not http(s)); the budget bounds a sink that never answers.
// The same with the request/response call (message.received), which the
// SDK would otherwise report acknowledged for any answer that is no event.
func TestEventDeliveryOutcomes(t *testing.T) {
	metrics, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	policy, err := egress.New(egress.Options{AllowLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	limits := Limits{EventAttempts: 3, EventBackoff: 5 * time.Millisecond, EventAttemptTimeout: 200 * time.Millisecond, EventBudget: time.Second}.withDefaults()
	sender, err := newEventSender(policy, limits, metrics)
	if err != nil {
		t.Fatal(err)
	}
	var status atomic.Int32
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body) // then a closed connection ends r's context
		switch code := int(status.Load()); code {
		case 0: // never answers in time
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		case http.StatusTemporaryRedirect:
			http.Redirect(w, r, "http://169.254.169.254/", code)
		case http.StatusBadRequest: // a large refusal: read only in part
			w.WriteHeader(code)
			_, _ = w.Write([]byte(strings.Repeat("x", 1<<20)))
		default:
			w.WriteHeader(code)
		}
	}))
	t.Cleanup(srv.Close)
	ev, err := newEvent(EventTypeMessageReceived, EventSource("AC1", "+1"), "SM1", EventID(EventTypeMessageReceived, "SM1"), MessageData{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		status   int
		result   string
		attempts int
	}{
		{http.StatusAccepted, eventDelivered, 1},
		{http.StatusOK, eventDelivered, 1},
		{http.StatusTemporaryRedirect, eventFailed, 1},
		{http.StatusBadRequest, eventFailed, 1},
		{http.StatusNotFound, eventFailed, 1},
		{http.StatusRequestTimeout, eventRetried, 3},
		{http.StatusTooManyRequests, eventRetried, 3},
		{http.StatusInternalServerError, eventRetried, 3},
		{http.StatusBadGateway, eventRetried, 3},
		{0, eventRetried, 3},
	} {
		for _, wantAnswer := range []bool{false, true} {
			status.Store(int32(tc.status))
			hits.Store(0)
			start := time.Now()
			result, attempts, answer, err := sender.exchange(context.Background(), srv.URL, &ev, wantAnswer)
			if result != tc.result || attempts != tc.attempts || int(hits.Load()) != tc.attempts {
				t.Errorf("sink answering %d (request/response %t): result %s after %d attempts (%d requests), want %s after %d (err %v)",
					tc.status, wantAnswer, result, attempts, hits.Load(), tc.result, tc.attempts, err)
			}
			if (err == nil) != (result == eventDelivered) {
				t.Errorf("sink answering %d (request/response %t): error %v with result %s", tc.status, wantAnswer, err, result)
			}
			if answer != nil {
				t.Errorf("sink answering %d without an event: answered %v", tc.status, answer)
			}
			if d := time.Since(start); d > 2*limits.EventBudget {
				t.Errorf("sink answering %d: took %s, over the budget %s", tc.status, d, limits.EventBudget)
			}
		}
	}
	for _, bad := range []string{"ftp://sink.example/", "sink.example/x", "http://"} {
		if result, attempts, _ := sender.deliver(context.Background(), bad, &ev); result != eventFailed || attempts != 0 {
			t.Errorf("sink %q: result %s after %d attempts, want failed at once", bad, result, attempts)
		}
		if result, attempts, _, _ := sender.request(context.Background(), bad, &ev); result != eventFailed || attempts != 0 {
			t.Errorf("sink %q (request/response): result %s after %d attempts, want failed at once", bad, result, attempts)
		}
	}
}

// TestEventData: the data of events from Twilio's parameters, including
// what Twilio leaves out or gets wrong.
func TestEventData(t *testing.T) {
	g := NewWithT(t)
	absent := recordingData(url.Values{"AccountSid": {"AC1"}, "CallSid": {"CA1"}, "RecordingSid": {"RE1"},
		"RecordingStatus": {"absent"}, "ErrorCode": {"16101"}, "RecordingDuration": {"x"}}, "+1")
	b, err := json.Marshal(absent)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(b)).To(MatchJSON(`{"accountSid":"AC1","callSid":"CA1","recordingSid":"RE1","recordingUrl":"","to":"+1",
		"status":"absent","errorCode":"16101"}`))

	m := messageData(url.Values{"AccountSid": {"AC1"}, "MessageSid": {"SM1"}, "From": {"+2"}, "To": {"+1"}, "Body": {""},
		"NumMedia": {"12"}, "MediaUrl0": {"u0"}, "MediaUrl2": {"u2"}, "MediaContentType2": {"image/gif"}, "MediaUrl11": {"u11"}})
	g.Expect(m.NumMedia).To(Equal(12))
	g.Expect(m.MediaURLs).To(Equal([]string{"u0", "u2"}), "at most 10, missing ones skipped")
	g.Expect(m.MediaContentTypes).To(Equal([]string{"", "image/gif"}))
	g.Expect(messageData(url.Values{"NumMedia": {"-1"}}).NumMedia).To(BeZero())
}

// TestCallStatusEventReachesSink: a call status callback at StatusPath (the
// number's StatusCallback with spec.events.callStatus) becomes a call event,
// signed over the URL with its fragment; Twilio's repeat has the same id.
func TestCallStatusEventReachesSink(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	sink := newCESink(t)
	const number = "+14155550611"
	createNumber(t, ns, "support", number, "main", "ws://agent.invalid/media", withSink(sink.url))
	h := startServer(t, ns, fastEvents(1))
	waitSink(t, h, number, sink.url)

	callSID := newCallSID()
	form := url.Values{"AccountSid": {acct.sid}, "CallSid": {callSID}, "CallStatus": {"completed"}, "From": {"+15005550006"},
		"To": {number}, "Direction": {"inbound"}, "CallDuration": {"42"}, "Timestamp": {"Mon, 30 Nov 2026 10:00:00 +0000"}}
	signed := func() *http.Response {
		// Signed over the URL with the fragment the operator sets, as Twilio may.
		return h.postSigned(StatusPath, form, sign(acct.token, testPublicURL+StatusPath+ConnectionOverrides, form))
	}
	resp := signed()
	g.Expect(resp.StatusCode).To(Equal(http.StatusNoContent))
	g.Expect(sink.received()).To(HaveLen(1))
	e := sink.received()[0]
	g.Expect(e.Type()).To(Equal(EventTypeCallPrefix + "completed"))
	g.Expect(e.Subject()).To(Equal(callSID))
	g.Expect(e.ID()).To(Equal(EventID(EventTypeCallPrefix+"completed", callSID, "completed")))
	var data CallData
	g.Expect(json.Unmarshal(e.Data(), &data)).To(Succeed())
	g.Expect(data.CallDuration).To(Equal(ptrInt64(42)))
	g.Expect(data.To).To(Equal(number))

	// Twilio's retry of the same callback is the same event.
	g.Expect(signed().StatusCode).To(Equal(http.StatusNoContent))
	g.Expect(sink.uniqueIDs()).To(HaveLen(1))

	// A forged one is refused.
	g.Expect(h.postSigned(StatusPath, form, sign("made-up-token0123", testPublicURL+StatusPath, form)).StatusCode).To(Equal(http.StatusForbidden))
}

func ptrInt64(v int64) *int64 { return &v }
