package webhookserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/gorilla/websocket"
)

// startMessage is the part of Twilio's "start" message the server reads.
type startMessage struct {
	Event string `json:"event"`
	Start struct {
		AccountSID       string            `json:"accountSid"`
		CallSID          string            `json:"callSid"`
		StreamSID        string            `json:"streamSid"`
		CustomParameters map[string]string `json:"customParameters"`
	} `json:"start"`
}

// Stream outcomes of this file, as metric labels (the others are in bridge.go).
const (
	outcomeTokenReused      = "token_reused"
	outcomeSignatureInvalid = "signature_invalid"
	outcomeUpgradedLegacy   = "upgraded_legacy_path"
)

// streamAuth is what an accepted upgrade has proved, and what its start
// message must still prove.
type streamAuth struct {
	// account is the SID the stream URL names; the start message must name
	// the same. Empty on the legacy path.
	account string
	// legacy: the upgrade came on the legacy path, StreamPath with no
	// account, and its signature is still unchecked: it is checked against
	// the tokens of the account the start message names.
	legacy   bool
	uri, sig string
	// client is the throttle key of the caller (clientKey).
	client string
	// settled ends the legacy stream's pending state (idempotent).
	settled func()
}

// handleStream accepts Twilio's media stream WebSocket for a call this server
// answered and bridges it to the number's agent.
//
// Authentication: the stream URL is StreamPath/{AccountSid}, and the upgrade
// must carry an X-Twilio-Signature over it (no params) under that account's
// auth token, so the check costs the same with one account or with
// thousands. The "start" message must then name the same account and carry
// the per-call token the voice webhook issued for exactly that call SID,
// called number and account; a token opens one stream on this replica.
//
// The legacy path StreamPath (no account) is still served for calls answered
// before per-account stream URLs (a rolling upgrade: an old replica answers,
// a new one gets the stream). Its upgrade names no account, and checking it
// against every known account's token is what made a refused upgrade cost
// grow with tenants; instead it is accepted unchecked, and its signature is
// checked once the start message names the account: against that one
// account's tokens, the same condition as before, then the stream token as
// above. Until then it holds one of MaxLegacyPending slots for at most
// StartTimeout, and each failure is charged to the client's throttle.
func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	auth := streamAuth{legacy: r.URL.Path == StreamPath, uri: r.URL.RequestURI(), settled: func() {}}
	if !auth.legacy {
		auth.account = strings.TrimPrefix(r.URL.EscapedPath(), StreamPath+"/")
		if !validAccountSID(auth.account) {
			s.respond(w, routeStream, outcomeNotFound, http.StatusNotFound)
			return
		}
	}
	if r.Method != http.MethodGet {
		s.refuseMethod(w, routeStream, http.MethodGet)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		s.respond(w, routeStream, outcomeBadRequest, http.StatusBadRequest)
		return
	}
	if !s.allowClient(w, r, routeStream) {
		return
	}
	if !s.opts.Routes.Synced() {
		s.respond(w, routeStream, outcomeUnavailable, http.StatusServiceUnavailable)
		return
	}
	switch s.streams.admit(&s.draining, s.limits.MaxStreams) {
	case admitDraining:
		s.respond(w, routeStream, outcomeUnavailable, http.StatusServiceUnavailable)
		return
	case admitFull:
		s.metrics.CapacityRefusals.WithLabelValues(capStreams).Inc()
		s.respond(w, routeStream, outcomeOverCapacity, http.StatusServiceUnavailable)
		return
	}
	// Once upgraded, the stream is served by a goroutine of its own and this
	// handler returns: net/http then drops the connection's state (its 4 KiB
	// read and write buffers, the request, the handler's deep stack), which it
	// would otherwise hold for the whole call. handedOff moves the releases
	// below to that goroutine.
	handedOff := false
	defer func() {
		if !handedOff {
			s.streams.release()
		}
	}()

	auth.sig = r.Header.Get(signatureHeader)
	if auth.sig == "" {
		s.refuseSignature(w, r, routeStream, sigMissing)
		return
	}
	if auth.legacy {
		if s.legacyPending.Add(1) > int64(s.limits.MaxLegacyPending) {
			s.legacyPending.Add(-1)
			s.metrics.CapacityRefusals.WithLabelValues(capLegacyStream).Inc()
			s.respond(w, routeStream, outcomeOverCapacity, http.StatusServiceUnavailable)
			return
		}
		auth.settled = sync.OnceFunc(func() { s.legacyPending.Add(-1) })
		defer func() {
			if !handedOff {
				auth.settled()
			}
		}()
	} else {
		validators := s.opts.Routes.Validators(auth.account)
		if len(validators) == 0 {
			s.refuseSignature(w, r, routeStream, sigUnknownAccount)
			return
		}
		if !s.sig.checkUpgrade(auth.uri, auth.sig, validators) {
			s.refuseSignature(w, r, routeStream, sigInvalid)
			return
		}
	}
	if s.throttle != nil {
		auth.client = clientKey(r)
	}
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		// The upgrader has answered with an HTTP error.
		s.metrics.Requests.WithLabelValues(routeStream, outcomeUpgradeFailed).Inc()
		return
	}
	upgraded := outcomeUpgraded
	if auth.legacy {
		upgraded = outcomeUpgradedLegacy
	}
	s.metrics.Requests.WithLabelValues(routeStream, upgraded).Inc()
	s.metrics.ActiveStreams.Inc()
	handedOff = true
	go s.runStream(conn, auth)
}

// runStream serves an upgraded stream (handleStream) to its end, in its own
// goroutine, then releases what handleStream took for it.
func (s *Server) runStream(conn *websocket.Conn, auth streamAuth) {
	// As net/http does for a handler: a panic ends this stream, not the process.
	defer func() {
		if p := recover(); p != nil {
			s.log.Error(fmt.Errorf("panic: %v", p), "Stream ended by a panic", "stack", string(debug.Stack()))
			_ = conn.Close()
		}
	}()
	defer s.streams.release()
	defer auth.settled()
	defer s.metrics.ActiveStreams.Dec()
	// http.Server's ReadTimeout/WriteTimeout are deadlines on the connection,
	// and a hijacked connection keeps whatever deadlines it has. In practice
	// net/http clears the read deadline before a hijack (its background read)
	// and gorilla clears the write deadline after the handshake, but the
	// stream must not depend on either: clear both, then every read and write
	// below sets its own (TestStreamOutlivesHTTPTimeouts).
	_ = conn.NetConn().SetDeadline(time.Time{})
	conn.SetReadLimit(s.limits.MaxMessageBytes)

	outcome := s.serveStream(s.streamCtx, conn, auth)
	s.metrics.Streams.WithLabelValues(outcome).Inc()
}

// refuseStart ends a stream whose start message did not prove what it must,
// and charges the failure to the client.
func (s *Server) refuseStart(twilio *websocket.Conn, auth streamAuth, log callLog, msg string, kv ...any) {
	log.Info(msg, kv...)
	s.throttle.failed(auth.client)
	s.closeTwilio(twilio, websocket.ClosePolicyViolation, "")
}

// serveStream runs one accepted stream to its end and returns its outcome.
func (s *Server) serveStream(ctx context.Context, twilio *websocket.Conn, auth streamAuth) string {
	defer func() { _ = twilio.Close() }()
	log := callLog{log: s.log}

	opening, start, err := s.readStart(twilio)
	if err != nil {
		if auth.legacy {
			s.throttle.failed(auth.client)
		}
		auth.settled()
		log.Info("Stream refused: no valid start message", "error", logValue(err.Error()))
		s.closeTwilio(twilio, websocket.CloseProtocolError, "expected connected and start")
		return outcomeHandshakeFailed
	}
	to := start.Start.CustomParameters[paramTo]
	token := start.Start.CustomParameters[paramToken]
	log = log.with("callSid", logValue(start.Start.CallSID), "streamSid", logValue(start.Start.StreamSID), "to", logValue(to))

	if auth.legacy {
		validators := s.opts.Routes.Validators(start.Start.AccountSID)
		reason := ""
		switch {
		case len(validators) == 0:
			reason = sigUnknownAccount
		case !s.sig.checkUpgrade(auth.uri, auth.sig, validators):
			reason = sigInvalid
		}
		auth.settled()
		if reason != "" {
			s.metrics.SignatureFailures.WithLabelValues(routeStream, reason).Inc()
			s.refuseStart(twilio, auth, log, "Stream refused: the legacy-path upgrade's signature does not match the account its start names", "reason", reason)
			return outcomeSignatureInvalid
		}
	} else if start.Start.AccountSID != auth.account {
		s.refuseStart(twilio, auth, log, "Stream refused: start names an account other than the stream URL's")
		return outcomeTokenInvalid
	}
	signer := s.tokens.Load()
	exp, err := signer.verifyExp(token, start.Start.CallSID, to, start.Start.AccountSID)
	if err != nil {
		s.refuseStart(twilio, auth, log, "Stream refused: bad stream token", "reason", err.Error())
		return outcomeTokenInvalid
	}
	// Remembered until it expires (and a little longer: expiry is checked in
	// whole seconds), so it cannot open a second stream here.
	if s.usedTokens.seenFor(token, time.Unix(exp, 0).Sub(signer.now())+2*time.Second) {
		s.refuseStart(twilio, auth, log, "Stream refused: stream token already used")
		return outcomeTokenReused
	}
	route, ok := s.opts.Routes.Lookup(to)
	if !ok || !route.Enabled || route.AgentURL == "" || route.AccountSID != start.Start.AccountSID {
		log.Info("Stream refused: number no longer routed here")
		s.closeTwilio(twilio, websocket.CloseNormalClosure, "number not routed")
		return outcomeNotRouted
	}
	log = log.with("agent", redactURL(route.AgentURL))

	agent, err := s.dialAgent(ctx, route.AgentURL, route.AgentHeaders)
	if err != nil {
		outcome := agentDialOutcome(err) // agent_refused or agent_unreachable
		log.Info("Agent not dialled; closing the call's stream", "outcome", outcome, "error", err.Error())
		s.closeTwilio(twilio, websocket.CloseTryAgainLater, "agent unavailable")
		return outcome
	}
	defer func() { _ = agent.Close() }()
	agent.SetReadLimit(s.limits.MaxMessageBytes)

	// The agent speaks Media Streams: it gets Twilio's own opening messages,
	// the start message without the stream token.
	relayed := s.metrics.FramesRelayed.WithLabelValues(dirTwilioToAgent)
	for _, m := range opening {
		_ = agent.SetWriteDeadline(time.Now().Add(s.limits.WriteTimeout))
		if err := agent.WriteMessage(websocket.TextMessage, m); err != nil {
			log.Info("Agent failed during the opening; closing the call's stream", "error", err.Error())
			closeFrame(agent, websocket.CloseNormalClosure, "", s.limits.WriteTimeout)
			s.closeTwilio(twilio, websocket.CloseTryAgainLater, "agent unavailable")
			return outcomeAgentError
		}
		relayed.Inc()
	}
	log.Info("Stream bridged")
	b := newBridge(twilio, agent, s.limits, s.metrics, s.log)
	b.logKV = log.kv
	if s.opts.onBridge != nil {
		s.opts.onBridge(b)
	}
	outcome := b.run(ctx)
	log.Info("Stream ended", "outcome", outcome)
	return outcome
}

// callLog logs with a call's key-value pairs. It replaces a per-call
// logr.WithValues logger: with zap that keeps an encoded copy of the
// values (a buffer of about 1 KiB) for the whole call, while a call logs a
// few lines in all.
type callLog struct {
	log logr.Logger
	kv  []any
}

// with returns l with kv added.
func (l callLog) with(kv ...any) callLog {
	return callLog{log: l.log, kv: append(l.kv[:len(l.kv):len(l.kv)], kv...)}
}

// Info logs msg with l's pairs and kv.
func (l callLog) Info(msg string, kv ...any) {
	l.log.Info(msg, append(l.kv[:len(l.kv):len(l.kv)], kv...)...)
}

// closeTwilio ends a stream that is not (or no longer) bridged: a close
// frame, then a bounded wait for Twilio's answering close frame, discarding
// whatever Twilio still sends, so the WebSocket closes cleanly.
func (s *Server) closeTwilio(c *websocket.Conn, code int, text string) {
	closeFrame(c, code, text, s.limits.WriteTimeout)
	_ = c.SetReadDeadline(time.Now().Add(s.limits.CloseTimeout))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			return
		}
	}
}

// readStart reads Twilio's opening messages: "connected" (tolerated if
// missing) and "start". It returns them as they are to be relayed to the
// agent: "connected" unchanged, "start" without the stream token.
func (s *Server) readStart(c *websocket.Conn) ([][]byte, startMessage, error) {
	var o openingReader
	_ = c.SetReadDeadline(time.Now().Add(s.limits.StartTimeout))
	for {
		typ, data, err := c.ReadMessage()
		if err != nil {
			return nil, startMessage{}, fmt.Errorf("read opening message: %w", err)
		}
		if typ != websocket.TextMessage {
			return nil, startMessage{}, errors.New("binary frame before start")
		}
		done, err := o.feed(data)
		if err != nil {
			return nil, startMessage{}, err
		}
		if done {
			return o.relay, o.start, nil
		}
	}
}

// openingReader reads a stream's opening messages, one at a time (feed).
type openingReader struct {
	relay [][]byte // the messages to relay to the agent
	start startMessage
}

// feed takes the next opening message. It reports done once "start" was
// read; an error refuses the stream.
func (o *openingReader) feed(data []byte) (done bool, err error) {
	top, event, err := decodeMessage(data)
	if err != nil {
		return false, err
	}
	switch event {
	case "connected":
		if len(o.relay) > 0 {
			return false, errors.New("connected sent twice")
		}
		o.relay = append(o.relay, data)
		return false, nil
	case "start":
		start, relayed, err := decodeStart(top)
		if err != nil {
			return false, err
		}
		o.start = start
		o.relay = append(o.relay, relayed)
		return true, nil
	}
	return false, fmt.Errorf("unexpected %q before start", event)
}

// decodeMessage decodes a Media Streams message's top level and its event.
//
// Every message the server reads is decoded exactly once, into maps with
// exact keys, and what it relays of them is re-encoded from those same maps,
// so the agent cannot be shown anything the server did not check: a key
// given twice counts once (the last, as encoding/json does), and a key that
// differs only in case from one the server reads is refused (encoding/json
// matches struct fields case-insensitively; other decoders do not).
func decodeMessage(data []byte) (map[string]json.RawMessage, string, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, "", fmt.Errorf("decode opening message: %w", err)
	}
	if top == nil {
		return nil, "", errors.New("decode opening message: not an object")
	}
	if err := unambiguous(top, "event", "start"); err != nil {
		return nil, "", err
	}
	event, err := stringField(top, "event")
	if err != nil {
		return nil, "", err
	}
	return top, event, nil
}

// decodeStart reads a start message's fields (top is its decoded top level)
// and returns it re-encoded with the stream token removed from
// customParameters, under any spelling of its name.
func decodeStart(top map[string]json.RawMessage) (startMessage, []byte, error) {
	var m startMessage
	m.Event = "start"
	var start map[string]json.RawMessage
	if err := json.Unmarshal(top["start"], &start); err != nil || start == nil {
		return m, nil, errors.New("start message without a start object")
	}
	if err := unambiguous(start, "accountSid", "callSid", "streamSid", "customParameters"); err != nil {
		return m, nil, err
	}
	var err error
	for _, f := range []struct {
		name string
		dst  *string
	}{{"accountSid", &m.Start.AccountSID}, {"callSid", &m.Start.CallSID}, {"streamSid", &m.Start.StreamSID}} {
		if *f.dst, err = stringField(start, f.name); err != nil {
			return m, nil, err
		}
	}
	if m.Start.CallSID == "" || m.Start.AccountSID == "" {
		return m, nil, errors.New("start without callSid or accountSid")
	}
	if raw, ok := start["customParameters"]; ok {
		if err := json.Unmarshal(raw, &m.Start.CustomParameters); err != nil {
			return m, nil, errors.New("start: customParameters is not an object of strings")
		}
		relayed := make(map[string]string, len(m.Start.CustomParameters))
		for k, v := range m.Start.CustomParameters {
			if !strings.EqualFold(k, paramToken) {
				relayed[k] = v
			}
		}
		if start["customParameters"], err = marshalJSON(relayed); err != nil {
			return m, nil, err
		}
	}
	if top["start"], err = marshalJSON(start); err != nil {
		return m, nil, err
	}
	out, err := marshalJSON(top)
	return m, out, err
}

// unambiguous refuses an object holding a key that equals one of names
// only when case is ignored.
func unambiguous(obj map[string]json.RawMessage, names ...string) error {
	for k := range obj {
		for _, n := range names {
			if k != n && strings.EqualFold(k, n) {
				return fmt.Errorf("ambiguous key %q (%q expected)", k, n)
			}
		}
	}
	return nil
}

// stringField returns obj[name] as a string ("" when absent or null).
func stringField(obj map[string]json.RawMessage, name string) (string, error) {
	raw, ok := obj[name]
	if !ok {
		return "", nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", fmt.Errorf("%s is not a string", name)
	}
	return v, nil
}

// marshalJSON encodes v compactly, without HTML escaping (Twilio's messages
// are not escaped so either).
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode start message: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// dialAgent opens the agent's WebSocket, with the number's agent headers on
// the handshake, within the dial timeout and observes how long it took.
func (s *Server) dialAgent(ctx context.Context, agentURL string, headers http.Header) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.AgentDialTimeout)
	defer cancel()
	began := time.Now()
	conn, resp, err := s.dialer.DialContext(ctx, agentURL, headers)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	s.metrics.AgentDial.WithLabelValues(outcome).Observe(time.Since(began).Seconds())
	if err != nil {
		return nil, fmt.Errorf("dial agent: %w", err)
	}
	return conn, nil
}

// redactURL hides credentials an agent URL might carry.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid URL>"
	}
	if u.RawQuery != "" {
		u.RawQuery = "redacted" // an agent URL's query may carry a key
	}
	return u.Redacted()
}
