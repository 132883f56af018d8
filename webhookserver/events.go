package webhookserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/twilio/twilio-go/twiml"

	"github.com/loquent/twilio-voice-operator/internal/egress"
)

// CloudEvents types of the events the webhook server delivers to a number's
// sink (Route.EventSinkURL). A recording status callback becomes
// EventTypeRecordingPrefix + its RecordingStatus: completed and absent are
// the statuses the answer TwiML asks for (recordingStatusCallbackEvent);
// in-progress, failed, paused, stopped and processing are delivered as
// such if Twilio sends them, any other status as "other" (data.status
// holds it).
const (
	EventTypeRecordingPrefix    = "io.loquent.twilio.recording."
	EventTypeRecordingCompleted = EventTypeRecordingPrefix + "completed"
	EventTypeRecordingAbsent    = EventTypeRecordingPrefix + "absent"
	EventTypeMessageReceived    = "io.loquent.twilio.message.received"
	// EventTypeMessageReply is the type of the event a sink may answer a
	// message.received event with (the CloudEvents HTTP binding's response
	// event): its data (MessageReply) is the SMS/MMS Twilio sends back.
	EventTypeMessageReply = "io.loquent.twilio.message.reply"
	// EventTypeCallPrefix + the CallStatus of a call status callback
	// (queued, initiated, ringing, in-progress, completed, busy, failed,
	// no-answer, canceled; any other as "other").
	EventTypeCallPrefix = "io.loquent.twilio.call."
)

// callStatuses are the CallStatus values with an event type of their own.
var callStatuses = []string{"queued", "initiated", "ringing", "in-progress", "completed", "busy", "failed", "no-answer", "canceled"}

// callEventType is the type of the event of a call status callback.
func callEventType(status string) string {
	if slices.Contains(callStatuses, status) {
		return EventTypeCallPrefix + status
	}
	return EventTypeCallPrefix + "other"
}

// CallData is the data of a call status event.
type CallData struct {
	AccountSID string `json:"accountSid"`
	CallSID    string `json:"callSid"`
	From       string `json:"from"`
	To         string `json:"to"`
	Direction  string `json:"direction,omitempty"`
	CallStatus string `json:"callStatus"`
	// CallDuration is CallDuration in seconds, on completed calls.
	CallDuration *int64 `json:"callDuration,omitempty"`
	Timestamp    string `json:"timestamp,omitempty"`
}

func callData(form url.Values) CallData {
	d := CallData{AccountSID: form.Get("AccountSid"), CallSID: form.Get("CallSid"), From: form.Get("From"), To: form.Get("To"),
		Direction: form.Get("Direction"), CallStatus: form.Get("CallStatus"), Timestamp: form.Get("Timestamp")}
	if n, err := strconv.ParseInt(form.Get("CallDuration"), 10, 64); err == nil && n >= 0 {
		d.CallDuration = &n
	}
	return d
}

// Results of an event, as metric labels.
const (
	eventDelivered = "delivered"
	eventRetried   = "retried"
	eventFailed    = "failed"
	eventNoSink    = "no_sink"
)

// eventTypes are the types an event can have (a fixed set: metric labels).
func eventTypes() []string {
	var out []string
	for _, st := range slices.Concat(recordingStatuses, []string{recordingStatusOther}) {
		out = append(out, EventTypeRecordingPrefix+st)
	}
	for _, st := range append(slices.Clone(callStatuses), "other") {
		out = append(out, EventTypeCallPrefix+st)
	}
	return append(out, EventTypeMessageReceived)
}

// recordingEventType is the type of the event of a recording callback with
// RecordingStatus status.
func recordingEventType(status string) string {
	return EventTypeRecordingPrefix + recordingStatusLabel(status)
}

// EventSource is the source attribute of a number's events: a URI
// reference naming the account and the number, e.g.
// /twilio/accounts/AC…/numbers/+14155550100.
func EventSource(accountSID, number string) string {
	return "/twilio/accounts/" + accountSID + "/numbers/" + number
}

// EventID is the id attribute of an event: the lowercase hex SHA-256 of its
// type and its Twilio keys (RecordingSid and RecordingStatus; MessageSid),
// each followed by a newline. It is the same for every delivery of the same
// Twilio callback (Twilio's retries, any replica), so sinks deduplicate by
// source and id as CloudEvents intends.
func EventID(typ string, keys ...string) string {
	h := sha256.New()
	h.Write([]byte(typ + "\n"))
	for _, k := range keys {
		h.Write([]byte(k + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// RecordingData is the data (application/json) of a recording event, from
// the recording status callback's parameters.
type RecordingData struct {
	// AccountSID, CallSID, RecordingSID and RecordingURL are AccountSid,
	// CallSid, RecordingSid and RecordingUrl.
	AccountSID   string `json:"accountSid"`
	CallSID      string `json:"callSid"`
	RecordingSID string `json:"recordingSid"`
	RecordingURL string `json:"recordingUrl"`
	// To is the number that was called (the event's number).
	To string `json:"to"`
	// Status is RecordingStatus.
	Status string `json:"status"`
	// Duration is RecordingDuration in seconds; absent when Twilio sent none
	// (or not a whole number).
	Duration *int64 `json:"duration,omitempty"`
	// Channels is RecordingChannels; absent when Twilio sent none.
	Channels *int64 `json:"channels,omitempty"`
	// RecordingSource and RecordingStartTime are RecordingSource and
	// RecordingStartTime as Twilio sent them, when it did.
	RecordingSource    string `json:"recordingSource,omitempty"`
	RecordingStartTime string `json:"recordingStartTime,omitempty"`
	// ErrorCode is ErrorCode when it is set and not 0 (e.g. 16101 for an
	// absent recording).
	ErrorCode string `json:"errorCode,omitempty"`
}

// maxMedia bounds the media URLs of a message event (Twilio sends at most 10).
const maxMedia = 10

// MessageData is the data (application/json) of a message.received event,
// from the SMS webhook's parameters.
type MessageData struct {
	// AccountSID, MessageSID, From, To and Body are AccountSid, MessageSid,
	// From, To and Body.
	AccountSID string `json:"accountSid"`
	MessageSID string `json:"messageSid"`
	// MessagingServiceSID is MessagingServiceSid, when Twilio sent one.
	MessagingServiceSID string `json:"messagingServiceSid,omitempty"`
	From                string `json:"from"`
	To                  string `json:"to"`
	Body                string `json:"body"`
	// NumMedia is NumMedia (0 when absent).
	NumMedia int `json:"numMedia"`
	// MediaURLs and MediaContentTypes are MediaUrl0… and
	// MediaContentType0…, in order (at most 10; empty lists without media).
	MediaURLs         []string `json:"mediaUrls"`
	MediaContentTypes []string `json:"mediaContentTypes"`
}

// recordingData reads a recording callback's parameters; to is the number called.
func recordingData(form url.Values, to string) RecordingData {
	d := RecordingData{
		AccountSID: form.Get("AccountSid"), CallSID: form.Get("CallSid"), RecordingSID: form.Get("RecordingSid"),
		RecordingURL: form.Get("RecordingUrl"), To: to, Status: form.Get("RecordingStatus"),
		RecordingSource: form.Get("RecordingSource"), RecordingStartTime: form.Get("RecordingStartTime"),
	}
	if n, err := strconv.ParseInt(form.Get("RecordingDuration"), 10, 64); err == nil && n >= 0 {
		d.Duration = &n
	}
	if n, err := strconv.ParseInt(form.Get("RecordingChannels"), 10, 64); err == nil && n >= 0 {
		d.Channels = &n
	}
	if code := form.Get("ErrorCode"); code != "0" {
		d.ErrorCode = code
	}
	return d
}

// messageData reads an SMS webhook's parameters.
func messageData(form url.Values) MessageData {
	d := MessageData{
		AccountSID: form.Get("AccountSid"), MessageSID: form.Get("MessageSid"), MessagingServiceSID: form.Get("MessagingServiceSid"),
		From: form.Get("From"), To: form.Get("To"), Body: form.Get("Body"),
		MediaURLs: []string{}, MediaContentTypes: []string{},
	}
	if n, err := strconv.Atoi(form.Get("NumMedia")); err == nil && n > 0 {
		d.NumMedia = n
	}
	for i := range min(d.NumMedia, maxMedia) {
		u := form.Get("MediaUrl" + strconv.Itoa(i))
		if u == "" {
			continue
		}
		d.MediaURLs = append(d.MediaURLs, u)
		d.MediaContentTypes = append(d.MediaContentTypes, form.Get("MediaContentType"+strconv.Itoa(i)))
	}
	return d
}

// newEvent builds a CloudEvents 1.0 event with data as JSON, time now.
func newEvent(typ, source, subject, id string, data any) (cloudevents.Event, error) {
	ev := cloudevents.NewEvent(cloudevents.VersionV1)
	ev.SetID(id)
	ev.SetType(typ)
	ev.SetSource(source)
	ev.SetSubject(subject)
	ev.SetTime(time.Now().UTC())
	if err := ev.SetData(cloudevents.ApplicationJSON, data); err != nil {
		return ev, fmt.Errorf("encode the event's data: %w", err)
	}
	return ev, ev.Validate()
}

// eventSender delivers events to sinks with the CloudEvents SDK, in binary
// mode over HTTP, through a client whose every connection is checked by the
// agents' egress policy (a sink URL is tenant input as an agent URL is).
type eventSender struct {
	client  cloudevents.Client
	limits  Limits
	metrics *Metrics
}

// maxSinkAnswerBytes bounds how much of a sink's answer is read (the SDK
// reads a refusal's body into its error).
const maxSinkAnswerBytes = 64 << 10

// eventUserAgent is the User-Agent of event deliveries.
const eventUserAgent = "twilio-voice-operator-webhookserver"

func newEventSender(policy *egress.Policy, limits Limits, m *Metrics) (*eventSender, error) {
	dial := policy.DialContext(&net.Dialer{Timeout: limits.EventAttemptTimeout, KeepAlive: 30 * time.Second})
	transport := &http.Transport{
		// Through a proxy, the sink is checked before the proxy is asked for it.
		Proxy:                  egressProxy(policy, http.ProxyFromEnvironment, "event sink", func(error) {}),
		DialContext:            dial,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           64,
		MaxIdleConnsPerHost:    8,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    limits.EventAttemptTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	hc := http.Client{
		Transport: limitedAnswers{transport},
		// A redirect is not followed (it could lead anywhere): the sink's
		// answer is a refusal like any other non-2xx.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	p, err := cehttp.New(cehttp.WithClient(hc), cehttp.WithHeader("User-Agent", eventUserAgent))
	if err != nil {
		return nil, fmt.Errorf("CloudEvents HTTP protocol: %w", err)
	}
	c, err := cloudevents.NewClient(p)
	if err != nil {
		return nil, fmt.Errorf("CloudEvents client: %w", err)
	}
	return &eventSender{client: c, limits: limits, metrics: m}, nil
}

// limitedAnswers cuts every answer's body to maxSinkAnswerBytes.
type limitedAnswers struct{ next http.RoundTripper }

func (l limitedAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(r)
	if resp != nil && resp.Body != nil {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.LimitReader(resp.Body, maxSinkAnswerBytes), resp.Body}
	}
	return resp, err
}

// deliver sends ev to sink and returns the result (eventDelivered,
// eventRetried or eventFailed), how many attempts it took and the last
// error. Attempts: at most Limits.EventAttempts, each within
// EventAttemptTimeout, after a wait of EventBackoff after the first failure
// and twice as long after each next, all within EventBudget, counted from
// now and not ended by ctx (a Twilio that stopped waiting does not cut a
// delivery short). The sink's 2xx delivers; 408, 429, 5xx and connection
// failures are retried, then the result is eventRetried (the caller answers
// Twilio 503, so that Twilio retries); any other answer (3xx, 4xx), a sink
// URL that is not http(s) and a destination the egress policy refuses fail
// at once, for good.
func (e *eventSender) deliver(ctx context.Context, sink string, ev *cloudevents.Event) (string, int, error) {
	result, attempts, _, err := e.exchange(ctx, sink, ev, false)
	return result, attempts, err
}

// request is deliver, through the SDK's request/response call: it also
// returns the event the sink answered with (the HTTP binding's response
// event, binary or structured), if the sink delivered it with one; nil
// otherwise. An answer the SDK cannot read as an event is no event. The
// answer is bounded as every answer is (limitedAnswers).
func (e *eventSender) request(ctx context.Context, sink string, ev *cloudevents.Event) (string, int, *cloudevents.Event, error) {
	return e.exchange(ctx, sink, ev, true)
}

func (e *eventSender) exchange(ctx context.Context, sink string, ev *cloudevents.Event, wantAnswer bool) (string, int, *cloudevents.Event, error) {
	start := time.Now()
	result, attempts, answer, err := e.attempt(ctx, sink, ev, wantAnswer)
	e.metrics.EventDelivery.WithLabelValues(result).Observe(time.Since(start).Seconds())
	return result, attempts, answer, err
}

func (e *eventSender) attempt(ctx context.Context, sink string, ev *cloudevents.Event, wantAnswer bool) (string, int, *cloudevents.Event, error) {
	if err := checkSinkURL(sink); err != nil {
		return eventFailed, 0, nil, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.limits.EventBudget)
	defer cancel()
	ctx = cloudevents.WithEncodingBinary(cloudevents.ContextWithTarget(ctx, sink))
	wait := e.limits.EventBackoff
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, e.limits.EventAttemptTimeout)
		var answer *cloudevents.Event
		var err error
		var permanent bool
		if wantAnswer {
			// The SDK has read the answer (into answer) before it returns.
			var res error
			answer, res = e.client.Request(actx, *ev)
			err, permanent = requestOutcome(res)
		} else {
			err, permanent = sendOutcome(e.client.Send(actx, *ev))
		}
		acancel()
		switch {
		case err == nil:
			return eventDelivered, attempt, answer, nil
		case permanent:
			return eventFailed, attempt, nil, err
		case attempt >= e.limits.EventAttempts:
			return eventRetried, attempt, nil, err
		}
		if deadline, _ := ctx.Deadline(); time.Until(deadline) <= wait {
			return eventRetried, attempt, nil, err
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return eventRetried, attempt, nil, err
		case <-timer.C:
		}
		wait *= 2
	}
}

// checkSinkURL requires an absolute http:// or https:// URL (the CRD
// validates it too).
func checkSinkURL(sink string) error {
	u, err := url.Parse(sink)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("the event sink %s is not an absolute http:// or https:// URL", redactURL(sink))
	}
	return nil
}

// sendOutcome reads the SDK's result of one attempt: nil when the sink
// accepted the event; otherwise the error, and whether it is permanent.
func sendOutcome(res error) (error, bool) {
	if cloudevents.IsACK(res) {
		return nil, false
	}
	var answer *cehttp.Result
	if errors.As(res, &answer) {
		return fmt.Errorf("the sink answered %w", res), !retryableStatus(answer.StatusCode)
	}
	return undelivered(res)
}

// requestOutcome is sendOutcome for the SDK's request/response call. That
// call reports an answer it cannot read as an event as acknowledged,
// whatever its status (a 503 with a text body included), so the status
// decides here; the answer's body is not quoted (the SDK has consumed it).
func requestOutcome(res error) (error, bool) {
	var answer *cehttp.Result
	if errors.As(res, &answer) {
		code := answer.StatusCode
		if code >= 200 && code < 300 {
			return nil, false
		}
		return fmt.Errorf("the sink answered %d %s", code, http.StatusText(code)), !retryableStatus(code)
	}
	if cloudevents.IsACK(res) {
		return nil, false
	}
	return undelivered(res)
}

// retryableStatus reports whether a sink's non-2xx answer is worth another
// attempt: 408, 429 and 5xx.
func retryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// undelivered reads a result that is no answer of the sink's: the error,
// and whether it is permanent (a refusal by the egress policy, an invalid
// event) or worth another attempt (a connection failure, a timeout).
func undelivered(res error) (error, bool) {
	if _, refused := egress.ReasonOf(res); refused {
		return res, true
	}
	var invalid event.ValidationError
	if errors.As(res, &invalid) {
		return res, true
	}
	return res, false
}

// eventRoute returns the route whose sink gets an event about number for
// accountSID: the number's, when it belongs to that account (a signature
// under one account never routes an event to another account's sink).
func (s *Server) eventRoute(accountSID, number string) (Route, bool) {
	if number == "" {
		return Route{}, false
	}
	route, ok := s.opts.Routes.Lookup(number)
	if !ok || route.AccountSID != accountSID {
		return Route{}, false
	}
	return route, true
}

// sendEvent delivers ev to route's sink and counts it. It returns the
// result, and kv with the event's id and type, the sink (redacted) and the
// attempts added, and the error, if any, as a log value: a refusal by the
// egress policy as the policy words it (what was refused, why, and the
// setting that would allow it), anything else (which may quote the sink's
// answer) cut to the logged length. With wantAnswer, it also returns the
// event the sink answered with, if it delivered with one (see
// eventSender.request).
func (s *Server) sendEvent(ctx context.Context, route Route, ev *cloudevents.Event, kv []any, wantAnswer bool) (string, []any, *cloudevents.Event, error) {
	result, attempts, answer, err := s.events.exchange(ctx, route.EventSinkURL, ev, wantAnswer)
	s.metrics.Events.WithLabelValues(ev.Type(), result).Inc()
	kv = append(kv, "eventId", ev.ID(), "eventType", ev.Type(), "sink", redactURL(route.EventSinkURL), "attempts", attempts)
	if err == nil {
		return result, kv, answer, nil
	}
	var refused *egress.RefusedError
	if errors.As(err, &refused) {
		return result, append(kv, "refusedReason", string(refused.Reason)), nil, refused
	}
	return result, kv, nil, errors.New(logValue(strings.TrimSpace(err.Error())))
}

// logEventFailure logs an event that will not be delivered (eventFailed).
func (s *Server) logEventFailure(what string, err error, kv []any) {
	s.log.Error(err, what+": refused for good (by the sink, or by the egress policy); Twilio is not asked to retry", kv...)
}

// validSID reports whether sid can go into an event's attributes (its
// subject) and id: ASCII letters and digits, at most 64, as Twilio's SIDs
// are (two letters and 32 hex digits).
func validSID(sid string) bool {
	if sid == "" || len(sid) > 64 {
		return false
	}
	for i := 0; i < len(sid); i++ {
		c := sid[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

// callbackEvent is one Twilio callback to deliver as an event.
type callbackEvent struct {
	what               string // for logs: "Recording status", "SMS event", "Call status"
	typ                string
	accountSID, number string // the number the event is about, under the account that signed
	subject, id        string
	sids               []string // Twilio SIDs the event names: letters and digits only
	kv                 []any
	data               func(number string) any
	// wantAnswer asks for the event the sink answers with (message.received:
	// the sink's reply), through the SDK's request/response call.
	wantAnswer bool
}

// deliverCallback delivers cb's event to its number's sink (see
// eventRoute), counts and logs the result. It returns false when the sink
// did not take the event in time and Twilio should be answered 503, so that
// it retries; true when the event was delivered, when there is no sink, and
// when it failed for good (a retry cannot help).
func (s *Server) deliverCallback(ctx context.Context, cb callbackEvent) bool {
	result, _ := s.exchangeCallback(ctx, cb)
	return result != eventRetried
}

// exchangeCallback is deliverCallback, returning the result (eventNoSink
// when there is no sink, eventFailed also when no event could be made of
// the callback) and, with cb.wantAnswer, the event the sink answered with
// when it took the event (nil when it answered none).
func (s *Server) exchangeCallback(ctx context.Context, cb callbackEvent) (string, *cloudevents.Event) {
	kv := cb.kv
	route, routed := s.eventRoute(cb.accountSID, cb.number)
	if !routed || route.EventSinkURL == "" {
		s.metrics.Events.WithLabelValues(cb.typ, eventNoSink).Inc()
		s.log.Info(cb.what, append(kv, "event", "no sink")...)
		return eventNoSink, nil
	}
	kv = append(kv, "object", route.Object.String())
	ev, err := newEvent(cb.typ, EventSource(route.AccountSID, route.Number), cb.subject, cb.id, cb.data(route.Number))
	for _, sid := range cb.sids {
		if err == nil && !validSID(sid) {
			err = fmt.Errorf("%q is not a SID (letters and digits): no event is made of the callback", sid)
		}
	}
	if err != nil {
		s.metrics.Events.WithLabelValues(cb.typ, eventFailed).Inc()
		s.log.Error(err, cb.what+": event not built", kv...)
		return eventFailed, nil
	}
	result, kv, answer, err := s.sendEvent(ctx, route, &ev, kv, cb.wantAnswer)
	switch result {
	case eventRetried:
		s.log.Info(cb.what+": event not delivered; answering 503 so that Twilio retries", append(kv, "error", err.Error())...)
	case eventFailed:
		s.logEventFailure(cb.what+": event not delivered", err, kv)
	default:
		if cb.wantAnswer {
			kv = append(kv, "answered", answer != nil)
		}
		s.log.Info(cb.what, kv...)
	}
	return result, answer
}

// MessageReply is the data (application/json) of a message.reply event: the
// message Twilio sends back to the sender of the message received, as the
// <Message> of the webhook's answer.
type MessageReply struct {
	// Body is the reply's text: at most maxReplyChars characters (Unicode
	// code points), each allowed in XML. It may be empty when MediaURLs is not.
	Body string `json:"body"`
	// MediaURLs are the media of an MMS reply: at most maxMedia absolute
	// https:// URLs, which Twilio fetches.
	MediaURLs []string `json:"mediaUrls,omitempty"`
}

// maxReplyChars is Twilio's limit on a message's body: 1600 characters.
const maxReplyChars = 1600

// Results of the sink's answer to a message.received event, as metric
// labels (Metrics.MessageReplies).
const (
	replyReplied   = "replied"    // answered as a <Message>
	replyNone      = "none"       // the sink answered no event
	replyWrongType = "wrong_type" // an event of another type: ignored
	replyInvalid   = "invalid"    // not a valid event, or bad data: ignored
	replyTooLong   = "too_long"   // a body over maxReplyChars: refused
)

// replyResults are the values of the result label of Metrics.MessageReplies.
var replyResults = []string{replyReplied, replyNone, replyWrongType, replyInvalid, replyTooLong}

// readReply reads the event a sink answered a message.received event with.
// It returns the reply, or the result (replyWrongType, replyInvalid,
// replyTooLong) and why it is refused.
func readReply(answer *cloudevents.Event) (MessageReply, string, error) {
	if err := answer.Validate(); err != nil {
		return MessageReply{}, replyInvalid, fmt.Errorf("not a valid CloudEvent: %w", err)
	}
	if answer.Type() != EventTypeMessageReply {
		return MessageReply{}, replyWrongType, fmt.Errorf("of type %q, not %s", logValue(answer.Type()), EventTypeMessageReply)
	}
	if mt := answer.DataMediaType(); mt != "" && mt != cloudevents.ApplicationJSON && !strings.HasSuffix(mt, "+json") {
		return MessageReply{}, replyInvalid, fmt.Errorf("its data is %q, not application/json", logValue(mt))
	}
	var reply MessageReply
	dec := json.NewDecoder(bytes.NewReader(answer.Data()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&reply); err != nil {
		return MessageReply{}, replyInvalid, fmt.Errorf("its data is not a reply ({\"body\": ..., \"mediaUrls\": [...]}): %s", logValue(err.Error()))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return MessageReply{}, replyInvalid, errors.New("its data holds more than one JSON value")
	}
	switch n := utf8.RuneCountInString(reply.Body); {
	case n > maxReplyChars:
		return MessageReply{}, replyTooLong, fmt.Errorf("its body has %d characters, over Twilio's %d", n, maxReplyChars)
	case !xmlText(reply.Body):
		return MessageReply{}, replyInvalid, errors.New("its body holds a character XML does not allow (a control character)")
	case reply.Body == "" && len(reply.MediaURLs) == 0:
		return MessageReply{}, replyInvalid, errors.New("it has neither body nor mediaUrls")
	case len(reply.MediaURLs) > maxMedia:
		return MessageReply{}, replyInvalid, fmt.Errorf("it has %d mediaUrls, over Twilio's %d", len(reply.MediaURLs), maxMedia)
	}
	for i, m := range reply.MediaURLs {
		if u, err := url.Parse(m); err != nil || u.Scheme != "https" || u.Host == "" || !xmlText(m) {
			return MessageReply{}, replyInvalid, fmt.Errorf("mediaUrls[%d] is not an absolute https:// URL", i)
		}
	}
	return reply, replyReplied, nil
}

// xmlText reports whether s is valid UTF-8 made of characters XML 1.0
// allows (no control characters but tab, line feed and carriage return).
// The TwiML builder escapes markup, not these.
func xmlText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
		case r < 0x20, r == 0xFFFE, r == 0xFFFF:
			return false
		}
	}
	return true
}

// replyTwiML is the messaging TwiML that sends reply: <Message> with the
// body as its text, or, with media, <Body> and a <Media> per URL (Twilio's
// nested form). The builder escapes the text.
func replyTwiML(reply MessageReply) (string, error) {
	msg := twiml.MessagingMessage{Body: reply.Body}
	if len(reply.MediaURLs) > 0 {
		msg.Body = ""
		if reply.Body != "" {
			msg.InnerElements = append(msg.InnerElements, twiml.MessagingBody{Message: reply.Body})
		}
		for _, u := range reply.MediaURLs {
			msg.InnerElements = append(msg.InnerElements, twiml.MessagingMedia{Url: u})
		}
	}
	doc, err := twiml.Messages([]twiml.Element{msg})
	if err != nil {
		return "", fmt.Errorf("render the reply's TwiML: %w", err)
	}
	return doc, nil
}

// messageAnswer is the answer to an SMS webhook whose event the sink took,
// answering with answer (nil: none): the reply it defines as a <Message>,
// else <Response/>. A refused answer is logged (neither the body nor the
// URLs: personal data), and every answer counted (Metrics.MessageReplies).
func (s *Server) messageAnswer(answer *cloudevents.Event, kv []any) string {
	if answer == nil {
		s.metrics.MessageReplies.WithLabelValues(replyNone).Inc()
		return s.emptyMessaging
	}
	kv = append(kv, "replyType", logValue(answer.Type()), "replyId", logValue(answer.ID()))
	reply, result, err := readReply(answer)
	var doc string
	if err == nil {
		doc, err = replyTwiML(reply)
		if err != nil {
			result = replyInvalid
		}
	}
	s.metrics.MessageReplies.WithLabelValues(result).Inc()
	if err != nil {
		s.log.Info("SMS event: the sink's answer is ignored; answering <Response/> (no reply)", append(kv, "result", result, "reason", err.Error())...)
		return s.emptyMessaging
	}
	s.log.Info("SMS event: replying with the sink's message", append(kv, "replyChars", utf8.RuneCountInString(reply.Body), "replyMedia", len(reply.MediaURLs))...)
	return doc
}
