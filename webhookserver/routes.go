package webhookserver

import (
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"github.com/gorilla/websocket"

	"github.com/loquent/twilio-voice-operator/internal/preflight"
)

// Request outcomes, as metric labels.
const (
	outcomeOK                = "ok"
	outcomeDuplicate         = "duplicate"
	outcomeHangupUnknown     = "hangup_unknown_number"
	outcomeHangupDisabled    = "hangup_disabled"
	outcomeHangupNoAgent     = "hangup_no_agent"
	outcomeHangupWrongAcct   = "hangup_account_mismatch"
	outcomeForbidden         = "forbidden"
	outcomeBadRequest        = "bad_request"
	outcomeTooLarge          = "too_large"
	outcomeMethodNotAllowed  = "method_not_allowed"
	outcomeUnsupportedMedia  = "unsupported_media_type"
	outcomeUnavailable       = "unavailable"
	outcomeOverCapacity      = "over_capacity"
	outcomeThrottled         = "throttled"
	outcomeNotFound          = "not_found"
	outcomeUpgraded          = "upgraded"
	outcomeUpgradeFailed     = "upgrade_failed"
	outcomeInternalError     = "internal_error"
	outcomePreflight         = "preflight" // a preflight (internal/preflight), whatever it found
	contentTypeXML           = "text/xml; charset=utf-8"
	contentTypeFormURLEncode = "application/x-www-form-urlencoded"
)

// outcomeSinkUnavailable: the event could not be delivered to its sink in
// time; 503 asks Twilio to send the callback again.
const outcomeSinkUnavailable = "sink_unavailable"

// handleVoice answers an inbound call: TwiML that records (if the number
// records), connects the call's media stream back to this server and then
// runs the number's fallback (when the stream ends without the call being
// hung up), or a short message and a hang-up when the number is not routed
// here. A preflight (a signed request whose form has preflight.FormField
// "1") is answered by handlePreflight instead.
func (s *Server) handleVoice(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.refuseMethod(w, routeVoice, http.MethodPost)
		return
	}
	if !s.Ready() {
		s.respond(w, routeVoice, outcomeUnavailable, http.StatusServiceUnavailable)
		return
	}
	form, ok := s.readSignedForm(w, r, routeVoice)
	if !ok {
		return
	}
	callSID, to, from, accountSID := form.Get("CallSid"), form.Get("To"), form.Get("From"), form.Get("AccountSid")
	if callSID == "" || to == "" || !validAccountSID(accountSID) {
		s.respond(w, routeVoice, outcomeBadRequest, http.StatusBadRequest)
		return
	}
	// Key-value pairs, not log.WithValues: that builds a logger per call
	// (about 4 % of the handler's CPU), while most answers are sampled away.
	callKV := []any{"callSid", logValue(callSID), "to", logValue(to)}

	route, found := s.opts.Routes.Lookup(to)
	outcome := outcomeOK
	switch {
	case !found:
		outcome = outcomeHangupUnknown
	case !route.Enabled:
		outcome = outcomeHangupDisabled
	case route.AccountSID != accountSID:
		outcome = outcomeHangupWrongAcct
	case route.AgentURL == "":
		outcome = outcomeHangupNoAgent
	}
	if form.Get(preflight.FormField) == "1" {
		s.handlePreflight(w, r, s.log.WithValues(callKV...), route, found, outcome, accountSID, from, to)
		return
	}
	if outcome != outcomeOK {
		s.log.Info("Refusing call: number not routed here", append(callKV, "reason", outcome, "object", route.Object.String())...)
		s.writeXML(w, routeVoice, outcome, s.hangup)
		return
	}
	doc := s.answers.render(route.Record, route.FallbackTwiML, accountSID, from, to, s.tokens.Load().issue(callSID, to, accountSID))
	// One slice, not callKV appended to (a second allocation per call).
	s.log.Info("Answering call", "callSid", callKV[1], "to", callKV[3], "object", route.Object.String(), "record", route.Record, "fallback", string(route.Fallback))
	s.writeXML(w, routeVoice, outcomeOK, doc)
}

// handlePreflight answers a preflight (internal/preflight) with what a call
// to the number would get, outcome being the call's routing outcome: the
// hang-up TwiML, or the answer TwiML with preflight.StreamToken instead of
// a stream token (no token is issued; the stream endpoint refuses it) after
// opening the agent's WebSocket once, as a call's stream would (s.dialAgent:
// same dialer, egress policy and timeout), and closing it at once. What it
// found goes in the preflight.Header* response headers (HeaderRoute only
// when the route belongs to the request's account). A preflight is not
// a call: it is counted under its own outcome, logged at V(1) only, and
// touches no stream or token state.
func (s *Server) handlePreflight(w http.ResponseWriter, r *http.Request, log logr.Logger, route Route, found bool, outcome, accountSID, from, to string) {
	h := w.Header()
	// The route is named only to the holder of its own account's token: a
	// number routed through another account's object is not revealed.
	if found && route.AccountSID == accountSID {
		h.Set(preflight.HeaderRoute, route.Object.String())
	}
	if outcome != outcomeOK {
		h.Set(preflight.HeaderOutcome, outcome)
		log.V(1).Info("Preflight: number not routed here", "reason", outcome, "object", route.Object.String())
		s.writeXML(w, routeVoice, outcomePreflight, s.hangup)
		return
	}
	h.Set(preflight.HeaderOutcome, preflight.OutcomeOK)
	agentResult := preflight.AgentOK
	agent, err := s.dialAgent(r.Context(), route.AgentURL, route.AgentHeaders)
	if err != nil {
		agentResult = "failed: " + agentDialOutcome(err) + ": " + headerSafe(err.Error())
	} else {
		closeFrame(agent, websocket.CloseNormalClosure, "", s.limits.WriteTimeout)
		_ = agent.Close()
	}
	h.Set(preflight.HeaderAgent, agentResult)
	log.V(1).Info("Preflight answered", "object", route.Object.String(), "agent", agentResult)
	s.writeXML(w, routeVoice, outcomePreflight, s.answers.render(route.Record, route.FallbackTwiML, accountSID, from, to, preflight.StreamToken))
}

// maxHeaderValue bounds an error reported in a response header.
const maxHeaderValue = 512

// headerSafe makes v fit in a response header: control characters become
// spaces, and it is cut to maxHeaderValue bytes (on a rune boundary).
func headerSafe(v string) string {
	if len(v) > maxHeaderValue {
		cut := maxHeaderValue
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		v = v[:cut]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, v)
}

// handleRecording handles a recording status callback: a log line and
// metrics, and the event (recordingEventType) delivered to the sink of the
// number called (named by the callback URL's RecordingToParam), once per
// RecordingSid and RecordingStatus. It answers 204, or 503 when the sink did
// not take the event in time, so that Twilio sends the callback again (per
// ConnectionOverrides); only a callback answered 204 is remembered, so
// repeats of it (Twilio retries) are recognised, counted and acknowledged
// without a second delivery.
func (s *Server) handleRecording(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.refuseMethod(w, routeRecording, http.MethodPost)
		return
	}
	form, ok := s.readSignedForm(w, r, routeRecording)
	if !ok {
		return
	}
	recSID, status := form.Get("RecordingSid"), form.Get("RecordingStatus")
	if recSID == "" || status == "" {
		s.respond(w, routeRecording, outcomeBadRequest, http.StatusBadRequest)
		return
	}
	s.metrics.RecordingCallbacks.WithLabelValues(recordingStatusLabel(status)).Inc()
	callSID, accountSID := form.Get("CallSid"), form.Get("AccountSid")
	kv := []any{
		"recordingSid", logValue(recSID), "callSid", logValue(callSID), "accountSid", logValue(accountSID),
		"status", logValue(status), "duration", logValue(form.Get("RecordingDuration")), "channels", logValue(form.Get("RecordingChannels")),
	}
	if code := form.Get("ErrorCode"); code != "" && code != "0" {
		kv = append(kv, "errorCode", logValue(code))
	}
	key := recSID + "\x00" + status
	if s.recordings.contains(key) {
		s.metrics.RecordingDuplicates.Inc()
		s.log.V(1).Info("Duplicate recording callback", kv...)
		s.respond(w, routeRecording, outcomeDuplicate, http.StatusNoContent)
		return
	}
	typ := recordingEventType(status)
	// The signature covers the query: the number is the one this server put
	// in the call's answer. A callback without it (a call answered before
	// the number was put there) has no route, hence no sink.
	to := r.URL.Query().Get(RecordingToParam)
	if !s.deliverCallback(r.Context(), callbackEvent{
		what: "Recording status", typ: typ, accountSID: accountSID, number: to, subject: callSID,
		id: EventID(typ, recSID, status), sids: []string{recSID, callSID}, kv: kv,
		data: func(number string) any { return recordingData(form, number) },
	}) {
		s.respond(w, routeRecording, outcomeSinkUnavailable, http.StatusServiceUnavailable)
		return
	}
	s.recordingHandled(key, form, status)
	s.respond(w, routeRecording, outcomeOK, http.StatusNoContent)
}

// recordingHandled remembers a recording callback answered 204 (see
// Server.recordings) and, the first time, observes its duration.
func (s *Server) recordingHandled(key string, form url.Values, status string) {
	if s.recordings.seen(key) {
		return // handled concurrently by another request
	}
	if d, ok := recordingDuration(form.Get("RecordingDuration"), s.limits.MaxRecordingDuration); ok && status == "completed" {
		s.metrics.RecordingDuration.Observe(d)
	}
}

// handleEvents handles an incoming SMS (SmsStatus received): a log line,
// and the message.received event delivered to the sink of the number it was
// sent to. It answers the sink's reply (a message.reply event answering the
// delivery, see Server.messageAnswer) as a <Message>, else <Response/> (no
// reply); or 503 when the sink did not take the event in time, so that
// Twilio sends the webhook again (per the SmsUrl's connection overrides,
// ConnectionOverrides). A message Twilio sends again is delivered again
// (same event id), and answered with the sink's answer to that delivery.
// Other requests are logged and answered <Response/>.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.refuseMethod(w, routeEvents, http.MethodPost)
		return
	}
	form, ok := s.readSignedForm(w, r, routeEvents)
	if !ok {
		return
	}
	msgSID, accountSID, to := form.Get("MessageSid"), form.Get("AccountSid"), form.Get("To")
	// The message body and the sender are personal data: not logged.
	kv := []any{"messageSid", logValue(msgSID), "accountSid", logValue(accountSID),
		"to", logValue(to), "status", logValue(form.Get("SmsStatus")), "numMedia", logValue(form.Get("NumMedia"))}
	if msgSID == "" || form.Get("SmsStatus") != "received" {
		s.log.Info("SMS event", kv...)
		s.writeXML(w, routeEvents, outcomeOK, s.emptyMessaging)
		return
	}
	const typ = EventTypeMessageReceived
	result, answer := s.exchangeCallback(r.Context(), callbackEvent{
		what: "SMS event", typ: typ, accountSID: accountSID, number: to, subject: msgSID,
		id: EventID(typ, msgSID), sids: []string{msgSID}, kv: kv,
		data:       func(string) any { return messageData(form) },
		wantAnswer: true,
	})
	switch result {
	case eventRetried:
		s.respond(w, routeEvents, outcomeSinkUnavailable, http.StatusServiceUnavailable)
	case eventDelivered:
		s.writeXML(w, routeEvents, outcomeOK, s.messageAnswer(answer, kv))
	default:
		s.writeXML(w, routeEvents, outcomeOK, s.emptyMessaging)
	}
}

// recordingDuration is a RecordingDuration as observed: a finite number of
// seconds, at least 0 (ok is false otherwise: not observed), clamped to max.
func recordingDuration(v string, max time.Duration) (float64, bool) {
	d, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(d) || math.IsInf(d, 0) || d < 0 {
		return 0, false
	}
	return math.Min(d, max.Seconds()), true
}

// readSignedForm reads a form-encoded body (bounded) and checks its
// signature with the auth tokens of its AccountSid. On failure it has already
// answered (429, 413, 415, 400 or 403) and returns false.
func (s *Server) readSignedForm(w http.ResponseWriter, r *http.Request, route string) (url.Values, bool) {
	if !s.allowClient(w, r, route) {
		return nil, false
	}
	// Twilio sends the bare media type: compare before parsing (the parse
	// allocates a map).
	if ct := r.Header.Get("Content-Type"); ct != contentTypeFormURLEncode {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != contentTypeFormURLEncode {
			s.respond(w, route, outcomeUnsupportedMedia, http.StatusUnsupportedMediaType)
			return nil, false
		}
	}
	body, err := readRequestBody(http.MaxBytesReader(w, r.Body, s.limits.MaxBodyBytes), r.ContentLength, s.limits.MaxBodyBytes)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.respond(w, route, outcomeTooLarge, http.StatusRequestEntityTooLarge)
		} else {
			s.respond(w, route, outcomeBadRequest, http.StatusBadRequest)
		}
		return nil, false
	}
	form, err := url.ParseQuery(string(body.b))
	bodyBuffers.Put(body)
	if err != nil {
		s.respond(w, route, outcomeBadRequest, http.StatusBadRequest)
		return nil, false
	}
	sig := r.Header.Get(signatureHeader)
	if sig == "" {
		s.refuseSignature(w, r, route, sigMissing)
		return nil, false
	}
	validators := s.opts.Routes.Validators(form.Get("AccountSid"))
	if len(validators) == 0 {
		s.refuseSignature(w, r, route, sigUnknownAccount)
		return nil, false
	}
	if !s.sig.checkForm(r, form, sig, validators, route == routeRecording || route == routeEvents || route == routeStatus) {
		s.refuseSignature(w, r, route, sigInvalid)
		return nil, false
	}
	return form, true
}

// refuseSignature answers 403 and charges the failure to the client.
func (s *Server) refuseSignature(w http.ResponseWriter, r *http.Request, route, reason string) {
	s.metrics.SignatureFailures.WithLabelValues(route, reason).Inc()
	if s.throttle != nil {
		s.throttle.failed(clientKey(r))
	}
	s.log.Info("Refusing request: bad signature", "route", route, "reason", reason)
	s.respond(w, route, outcomeForbidden, http.StatusForbidden)
}

// allowClient answers 429 and returns false when r's client failed
// authentication too often lately (see failureThrottle).
func (s *Server) allowClient(w http.ResponseWriter, r *http.Request, route string) bool {
	if s.throttle == nil {
		return true
	}
	ok, wait := s.throttle.allowed(clientKey(r))
	if ok {
		return true
	}
	s.metrics.Throttled.WithLabelValues(route).Inc()
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	s.respond(w, route, outcomeThrottled, http.StatusTooManyRequests)
	return false
}

func (s *Server) refuseMethod(w http.ResponseWriter, route, allow string) {
	w.Header().Set("Allow", allow)
	s.respond(w, route, outcomeMethodNotAllowed, http.StatusMethodNotAllowed)
}

// respond answers with a bare status and counts it.
func (s *Server) respond(w http.ResponseWriter, route, outcome string, status int) {
	s.metrics.Requests.WithLabelValues(route, outcome).Inc()
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	http.Error(w, http.StatusText(status), status)
}

func (s *Server) writeXML(w http.ResponseWriter, route, outcome, doc string) {
	if route == routeVoice && outcome == outcomeOK {
		s.voiceOK.Inc() // the counter looked up once (New)
	} else {
		s.metrics.Requests.WithLabelValues(route, outcome).Inc()
	}
	h := w.Header()
	h["Content-Type"] = xmlContentType // shared, never modified: no allocation per answer
	h["Content-Length"] = []string{strconv.Itoa(len(doc))}
	_, _ = io.WriteString(w, doc)
}

// xmlContentType is the Content-Type header value of TwiML answers.
var xmlContentType = []string{contentTypeXML}

// handleStatus turns a call status callback (the number's StatusCallback,
// set by the operator with spec.events.callStatus) into a call event for
// the number's sink: 204 once delivered (or with no sink), 503 when the
// sink did not take it in time, so that Twilio retries (ConnectionOverrides).
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		s.refuseMethod(w, routeStatus, http.MethodPost)
		return
	}
	form, ok := s.readSignedForm(w, r, routeStatus)
	if !ok {
		return
	}
	callSID, status, accountSID, to := form.Get("CallSid"), form.Get("CallStatus"), form.Get("AccountSid"), form.Get("To")
	if callSID == "" || status == "" {
		s.respond(w, routeStatus, outcomeBadRequest, http.StatusBadRequest)
		return
	}
	typ := callEventType(status)
	kv := []any{"callSid", logValue(callSID), "accountSid", logValue(accountSID), "to", logValue(to), "status", logValue(status)}
	if !s.deliverCallback(r.Context(), callbackEvent{
		what: "Call status", typ: typ, accountSID: accountSID, number: to, subject: callSID,
		id: EventID(typ, callSID, status), sids: []string{callSID}, kv: kv,
		data: func(string) any { return callData(form) },
	}) {
		s.respond(w, routeStatus, outcomeSinkUnavailable, http.StatusServiceUnavailable)
		return
	}
	s.respond(w, routeStatus, outcomeOK, http.StatusNoContent)
}
