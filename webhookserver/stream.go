package webhookserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

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

// handleStream accepts Twilio's media stream WebSocket for a call this server
// answered and bridges it to the number's agent.
//
// Authentication: the upgrade must carry an X-Twilio-Signature over the
// stream URL (no params). The upgrade names no account, so it is accepted if
// it validates under any known account's auth token; the "start" message must
// then name one of the accounts that validated, and carry the per-call token
// issued by the voice webhook for exactly that call SID, called number and
// account.
func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		s.refuseMethod(w, routeStream, http.MethodGet)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		s.respond(w, routeStream, outcomeBadRequest, http.StatusBadRequest)
		return
	}
	if !s.opts.Routes.Synced() || !s.streams.admit(&s.draining) {
		s.respond(w, routeStream, outcomeUnavailable, http.StatusServiceUnavailable)
		return
	}
	defer s.streams.release()

	sig := r.Header.Get(signatureHeader)
	if sig == "" {
		s.refuseSignature(w, routeStream, sigMissing)
		return
	}
	accounts := s.sig.checkUpgrade(r, sig, s.opts.Routes.AllValidators())
	if len(accounts) == 0 {
		s.refuseSignature(w, routeStream, sigInvalid)
		return
	}
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		// The upgrader has answered with an HTTP error.
		s.metrics.Requests.WithLabelValues(routeStream, outcomeUpgradeFailed).Inc()
		return
	}
	s.metrics.Requests.WithLabelValues(routeStream, outcomeUpgraded).Inc()
	s.metrics.ActiveStreams.Inc()
	defer s.metrics.ActiveStreams.Dec()
	// http.Server's ReadTimeout/WriteTimeout are deadlines on the connection,
	// and a hijacked connection keeps whatever deadlines it has. In practice
	// net/http clears the read deadline before a hijack (its background read)
	// and gorilla clears the write deadline after the handshake, but the
	// stream must not depend on either: clear both, then every read and write
	// below sets its own (TestStreamOutlivesHTTPTimeouts).
	_ = conn.NetConn().SetDeadline(time.Time{})
	conn.SetReadLimit(s.limits.MaxMessageBytes)

	outcome := s.serveStream(s.streamCtx, conn, accounts)
	s.metrics.Streams.WithLabelValues(outcome).Inc()
}

// serveStream runs one accepted stream to its end and returns its outcome.
func (s *Server) serveStream(ctx context.Context, twilio *websocket.Conn, accounts []string) string {
	defer func() { _ = twilio.Close() }()
	log := s.log

	opening, start, err := s.readStart(twilio)
	if err != nil {
		log.Info("Stream refused: no valid start message", "error", err.Error())
		s.closeTwilio(twilio, websocket.CloseProtocolError, "expected connected and start")
		return outcomeHandshakeFailed
	}
	to := start.Start.CustomParameters[paramTo]
	log = log.WithValues("callSid", start.Start.CallSID, "streamSid", start.Start.StreamSID, "to", to)

	if !slices.Contains(accounts, start.Start.AccountSID) {
		log.Info("Stream refused: start names an account the upgrade was not signed for")
		s.closeTwilio(twilio, websocket.ClosePolicyViolation, "")
		return outcomeTokenInvalid
	}
	if err := s.tokens.Load().verify(start.Start.CustomParameters[paramToken], start.Start.CallSID, to, start.Start.AccountSID); err != nil {
		log.Info("Stream refused: bad stream token", "reason", err.Error())
		s.closeTwilio(twilio, websocket.ClosePolicyViolation, "")
		return outcomeTokenInvalid
	}
	route, ok := s.opts.Routes.Lookup(to)
	if !ok || !route.Enabled || route.AgentURL == "" || route.AccountSID != start.Start.AccountSID {
		log.Info("Stream refused: number no longer routed here")
		s.closeTwilio(twilio, websocket.CloseNormalClosure, "number not routed")
		return outcomeNotRouted
	}
	log = log.WithValues("agent", redactURL(route.AgentURL))

	agent, err := s.dialAgent(ctx, route.AgentURL)
	if err != nil {
		log.Info("Agent unreachable; closing the call's stream", "error", err.Error())
		s.closeTwilio(twilio, websocket.CloseTryAgainLater, "agent unavailable")
		return outcomeAgentUnreachable
	}
	defer func() { _ = agent.Close() }()
	agent.SetReadLimit(s.limits.MaxMessageBytes)

	// The agent speaks Media Streams: it gets Twilio's own opening messages.
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
	b := newBridge(twilio, agent, s.limits, s.metrics, log)
	if s.opts.onBridge != nil {
		s.opts.onBridge(b)
	}
	outcome := b.run(ctx)
	log.Info("Stream ended", "outcome", outcome)
	return outcome
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
// missing) and "start". It returns them raw, to be forwarded unchanged.
func (s *Server) readStart(c *websocket.Conn) ([][]byte, startMessage, error) {
	var start startMessage
	var opening [][]byte
	_ = c.SetReadDeadline(time.Now().Add(s.limits.StartTimeout))
	for len(opening) < 2 {
		typ, data, err := c.ReadMessage()
		if err != nil {
			return nil, start, fmt.Errorf("read opening message: %w", err)
		}
		if typ != websocket.TextMessage {
			return nil, start, errors.New("binary frame before start")
		}
		var m startMessage
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, start, fmt.Errorf("decode opening message: %w", err)
		}
		opening = append(opening, data)
		switch m.Event {
		case "connected":
			if len(opening) > 1 {
				return nil, start, errors.New("connected sent twice")
			}
		case "start":
			if m.Start.CallSID == "" || m.Start.AccountSID == "" {
				return nil, start, errors.New("start without callSid or accountSid")
			}
			return opening, m, nil
		default:
			return nil, start, fmt.Errorf("unexpected %q before start", m.Event)
		}
	}
	return nil, start, errors.New("no start message")
}

// dialAgent opens the agent's WebSocket within the dial timeout and observes
// how long it took.
func (s *Server) dialAgent(ctx context.Context, agentURL string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.AgentDialTimeout)
	defer cancel()
	began := time.Now()
	conn, resp, err := s.dialer.DialContext(ctx, agentURL, nil)
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
	return u.Redacted()
}
