package webhookserver

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	. "github.com/onsi/gomega"

	"github.com/loquent/twilio-voice-operator/internal/twiliosim/callsim"
)

// replyEvent is the message.reply event a sink answers e with, data as given
// (a MessageReply, or anything else to test bad data).
func replyEvent(t testing.TB, e cloudevents.Event, typ string, data any) *cloudevents.Event {
	t.Helper()
	r := cloudevents.NewEvent()
	r.SetID("reply-" + e.ID())
	r.SetSource("/sinks/test")
	r.SetType(typ)
	if err := r.SetData(cloudevents.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	return &r
}

// replyNumber starts a server whose number routes to a sink answering each
// event with answer's event.
func replyNumber(t *testing.T, number string, answer func(cloudevents.Event) *cloudevents.Event) (*harness, account, *ceSink) {
	t.Helper()
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	sink := newCESink(t)
	sink.answerWith(answer)
	createNumber(t, ns, "support", number, "main", "ws://agent.invalid/media", withSink(sink.url))
	h := startServer(t, ns, fastEvents(3))
	waitSink(t, h, number, sink.url)
	return h, acct, sink
}

func (h *harness) replies(result string) float64 {
	return counterValue(h.metrics.MessageReplies.WithLabelValues(result))
}

// TestMessageReply: a sink that answers the message.received event with a
// message.reply event (binary mode, by the SDK's receiver) has its reply
// sent back: the webhook answers a TwiML <Message>, escaped, with <Body>
// and <Media> for an MMS; Twilio (callsim) reads it as the reply.
func TestMessageReply(t *testing.T) {
	g := NewWithT(t)
	const number = "+14155550620"
	const body = `Thanks <Ann> & "co" — we'll call at 5 ]]> ok`
	media := []string{"https://cdn.example.com/a.png?x=1&y=2", "https://cdn.example.com/b.jpg"}
	var withMedia atomic.Bool
	h, acct, sink := replyNumber(t, number, func(e cloudevents.Event) *cloudevents.Event {
		if e.Type() != EventTypeMessageReceived {
			return nil
		}
		reply := MessageReply{Body: body}
		if withMedia.Load() {
			reply.MediaURLs = media
		}
		return replyEvent(t, e, EventTypeMessageReply, reply)
	})

	res, err := callsim.SendSMS(t.Context(), h.sms(acct, number, ConnectionOverrides))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Status).To(Equal(http.StatusOK))
	g.Expect(res.ContentType).To(Equal(contentTypeXML))
	g.Expect(res.ReplyError).NotTo(HaveOccurred())
	g.Expect(res.Replies).To(Equal([]callsim.SMSReply{{Body: body}}))
	g.Expect(res.Body).To(ContainSubstring(`<Message>Thanks &lt;Ann&gt; &amp; &quot;co&quot; — we&apos;ll call at 5 ]]&gt; ok</Message>`), "escaped by the builder")
	g.Expect(parseTwiML(t, res.Body).Order).To(Equal([]string{"Message"}))
	g.Expect(h.replies(replyReplied)).To(Equal(1.0))
	g.Expect(h.eventsCount(EventTypeMessageReceived, eventDelivered)).To(Equal(1.0))
	g.Expect(counterValue(h.metrics.Requests.WithLabelValues(routeEvents, outcomeOK))).To(Equal(1.0))

	// The sink answered in binary mode: the reply's attributes were ce- headers.
	sink.mu.Lock()
	g.Expect(sink.answerHeaders).To(HaveLen(1))
	g.Expect(sink.answerHeaders[0].Get("Ce-Type")).To(Equal(EventTypeMessageReply))
	sink.mu.Unlock()

	// An MMS reply: <Body> and a <Media> per URL, in order.
	withMedia.Store(true)
	res, err = callsim.SendSMS(t.Context(), h.sms(acct, number, ConnectionOverrides))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Replies).To(Equal([]callsim.SMSReply{{Body: body, MediaURLs: media}}))
	g.Expect(res.Body).To(ContainSubstring(`<Media>https://cdn.example.com/a.png?x=1&amp;y=2</Media><Media>https://cdn.example.com/b.jpg</Media></Message>`))
	g.Expect(h.replies(replyReplied)).To(Equal(2.0))
}

// TestMessageReplyRefused: answers that are no reply are ignored, counted
// by result, and the webhook answers <Response/>: never a plain-text body,
// which Twilio would send as an SMS.
func TestMessageReplyRefused(t *testing.T) {
	const number = "+14155550621"
	var answer atomic.Pointer[func(cloudevents.Event) *cloudevents.Event]
	h, acct, _ := replyNumber(t, number, func(e cloudevents.Event) *cloudevents.Event { return (*answer.Load())(e) })
	reply := func(typ string, data any) func(cloudevents.Event) *cloudevents.Event {
		return func(e cloudevents.Event) *cloudevents.Event { return replyEvent(t, e, typ, data) }
	}
	textReply := func(e cloudevents.Event) *cloudevents.Event {
		r := replyEvent(t, e, EventTypeMessageReply, nil)
		_ = r.SetData(cloudevents.TextPlain, "hello")
		return r
	}
	invalidEvent := func(e cloudevents.Event) *cloudevents.Event {
		r := replyEvent(t, e, EventTypeMessageReply, MessageReply{Body: "hi"})
		r.SetSource("")
		return r
	}
	tooMany := make([]string, 11)
	for i := range tooMany {
		tooMany[i] = "https://cdn.example.com/m.png"
	}
	want := map[string]float64{}
	for _, tc := range []struct {
		name   string
		answer func(cloudevents.Event) *cloudevents.Event
		result string
	}{
		{"no event", func(cloudevents.Event) *cloudevents.Event { return nil }, replyNone},
		{"another type", reply("io.loquent.twilio.message.received", MessageReply{Body: "hi"}), replyWrongType},
		{"2000 characters", reply(EventTypeMessageReply, MessageReply{Body: strings.Repeat("é", 2000)}), replyTooLong},
		{"1601 characters", reply(EventTypeMessageReply, MessageReply{Body: strings.Repeat("a", 1601)}), replyTooLong},
		{"not JSON", textReply, replyInvalid},
		{"a JSON string", reply(EventTypeMessageReply, "hello"), replyInvalid},
		{"an unknown field", reply(EventTypeMessageReply, map[string]any{"body": "hi", "mediaUrl": "https://x.example/a"}), replyInvalid},
		{"empty", reply(EventTypeMessageReply, MessageReply{}), replyInvalid},
		{"a control character", reply(EventTypeMessageReply, MessageReply{Body: "a\x00b"}), replyInvalid},
		{"an http media URL", reply(EventTypeMessageReply, MessageReply{Body: "hi", MediaURLs: []string{"http://cdn.example.com/a.png"}}), replyInvalid},
		{"a relative media URL", reply(EventTypeMessageReply, MessageReply{MediaURLs: []string{"/a.png"}}), replyInvalid},
		{"11 media", reply(EventTypeMessageReply, MessageReply{Body: "hi", MediaURLs: tooMany}), replyInvalid},
		{"an invalid event", invalidEvent, replyInvalid},
	} {
		g := NewWithT(t)
		answer.Store(&tc.answer)
		res, err := callsim.SendSMS(t.Context(), h.sms(acct, number, ConnectionOverrides))
		g.Expect(err).NotTo(HaveOccurred(), tc.name)
		g.Expect(res.Status).To(Equal(http.StatusOK), tc.name)
		g.Expect(res.ContentType).To(Equal(contentTypeXML), tc.name)
		g.Expect(res.Body).To(Equal(h.srv.emptyMessaging), tc.name)
		g.Expect(res.Replies).To(BeEmpty(), tc.name)
		want[tc.result]++
		for _, result := range replyResults {
			g.Expect(h.replies(result)).To(Equal(want[result]), tc.name+": "+result)
		}
	}
	g := NewWithT(t)
	g.Expect(h.eventsCount(EventTypeMessageReceived, eventDelivered)).To(Equal(13.0), "each was delivered")

	// 1600 characters (not bytes) is Twilio's limit: replied.
	long := strings.Repeat("é", maxReplyChars)
	f := reply(EventTypeMessageReply, MessageReply{Body: long})
	answer.Store(&f)
	res, err := callsim.SendSMS(t.Context(), h.sms(acct, number, ConnectionOverrides))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Replies).To(Equal([]callsim.SMSReply{{Body: long}}))
}

// TestMessageReplyAfterTwilioRetry: the sink is down for the first
// delivery; Twilio retries (503, per the connection overrides), the event
// is delivered again with the same id and the reply to that delivery is
// sent. A sink that deduplicates by id answers a repeat with its reply.
func TestMessageReplyAfterTwilioRetry(t *testing.T) {
	g := NewWithT(t)
	const number = "+14155550622"
	h, acct, sink := replyNumber(t, number, func(e cloudevents.Event) *cloudevents.Event {
		return replyEvent(t, e, EventTypeMessageReply, MessageReply{Body: "Got it"})
	})
	sink.failFirst.Store(3)
	res, err := callsim.SendSMS(t.Context(), h.sms(acct, number, ConnectionOverrides))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Attempts).To(Equal(2), "503 (3 sink attempts), then delivered")
	g.Expect(res.Replies).To(Equal([]callsim.SMSReply{{Body: "Got it"}}))
	g.Expect(h.eventsCount(EventTypeMessageReceived, eventRetried)).To(Equal(1.0))
	g.Expect(h.replies(replyReplied)).To(Equal(1.0))

	// Twilio's retry crossing the answer: delivered again, replied again.
	m := h.sms(acct, number, ConnectionOverrides)
	m.MessageSID = res.MessageSID
	again, err := callsim.SendSMS(t.Context(), m)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(again.Replies).To(Equal(res.Replies))
	g.Expect(sink.uniqueIDs()).To(Equal([]string{EventID(EventTypeMessageReceived, res.MessageSID)}))
}

// TestMessageReplyStructured: a sink that answers in structured mode
// (application/cloudevents+json) is read as well; an event answered with a
// refusal (4xx) is no reply: the refusal stands.
func TestMessageReplyStructured(t *testing.T) {
	g := NewWithT(t)
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		id := r.Header.Get("Ce-Id")
		w.Header().Set("Content-Type", "application/cloudevents+json; charset=utf-8")
		w.WriteHeader(int(status.Load()))
		_ = json.NewEncoder(w).Encode(map[string]any{
			"specversion": "1.0", "id": "r-" + id, "source": "/sinks/structured", "type": EventTypeMessageReply,
			"datacontenttype": "application/json", "data": map[string]any{"body": "Structured & fine", "mediaUrls": []string{"https://cdn.example.com/s.png"}},
		})
	}))
	t.Cleanup(srv.Close)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	const number = "+14155550623"
	createNumber(t, ns, "support", number, "main", "ws://agent.invalid/media", withSink(srv.URL))
	h := startServer(t, ns, fastEvents(3))
	waitSink(t, h, number, srv.URL)

	res, err := callsim.SendSMS(t.Context(), h.sms(acct, number, ConnectionOverrides))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Replies).To(Equal([]callsim.SMSReply{{Body: "Structured & fine", MediaURLs: []string{"https://cdn.example.com/s.png"}}}))

	status.Store(http.StatusBadRequest)
	res, err = callsim.SendSMS(t.Context(), h.sms(acct, number, ConnectionOverrides))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Body).To(Equal(h.srv.emptyMessaging))
	g.Expect(h.eventsCount(EventTypeMessageReceived, eventFailed)).To(Equal(1.0))
	g.Expect(h.replies(replyReplied)).To(Equal(1.0), "a refusal's event is not read")

	status.Store(http.StatusServiceUnavailable)
	res, err = callsim.SendSMS(t.Context(), h.sms(acct, number, ""))
	g.Expect(err).To(MatchError(callsim.ErrWebhookFailed))
	g.Expect(res.Status).To(Equal(http.StatusServiceUnavailable), "a 503 with an event is still a 503")
}

// TestReplyTwiML: the TwiML of a reply, with and without media.
func TestReplyTwiML(t *testing.T) {
	g := NewWithT(t)
	doc, err := replyTwiML(MessageReply{Body: "a<b"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(doc).To(Equal(`<?xml version="1.0" encoding="UTF-8"?><Response><Message>a&lt;b</Message></Response>`))
	doc, err = replyTwiML(MessageReply{MediaURLs: []string{"https://m.example/1"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(doc).To(Equal(`<?xml version="1.0" encoding="UTF-8"?><Response><Message><Media>https://m.example/1</Media></Message></Response>`))
}
