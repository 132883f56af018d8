package webhookserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// Stream outcomes, as metric labels.
const (
	outcomeCallerClosed     = "caller_closed"
	outcomeCallerError      = "caller_error"
	outcomeAgentClosed      = "agent_closed"
	outcomeAgentError       = "agent_error"
	outcomeShutdown         = "shutdown"
	outcomeAgentUnreachable = "agent_unreachable"
	outcomeAgentRefused     = "agent_refused" // the egress policy refused the agent's address (agentDialOutcome)
	outcomeTokenInvalid     = "token_invalid"
	outcomeHandshakeFailed  = "handshake_failed"
	outcomeNotRouted        = "not_routed"
)

// Reasons a frame is dropped, as metric labels.
const (
	dropBackpressure = "backpressure"
	dropBinary       = "binary"
	dropClosed       = "closed"
)

// leg is one side of a bridged call: its connection and the queue of frames
// waiting to be written to it. The counters count frames headed to this leg.
type leg struct {
	name string // "twilio" or "agent", for logs
	conn *websocket.Conn
	out  *frameQueue

	relayed, droppedFull, droppedBinary, droppedClosed prometheus.Counter

	writerDone chan struct{} // closed when the writer has finished
	closeTimer *time.Timer   // closes conn if the peer does not answer our close frame
	timerMu    sync.Mutex
}

func newLeg(name, direction string, conn *websocket.Conn, l Limits, m *Metrics) *leg {
	return &leg{
		name:          name,
		conn:          conn,
		out:           newFrameQueue(l.QueueFrames, l.QueueBytes, l.ControlReserve),
		writerDone:    make(chan struct{}),
		relayed:       m.FramesRelayed.WithLabelValues(direction),
		droppedFull:   m.FramesDropped.WithLabelValues(direction, dropBackpressure),
		droppedBinary: m.FramesDropped.WithLabelValues(direction, dropBinary),
		droppedClosed: m.FramesDropped.WithLabelValues(direction, dropClosed),
	}
}

// bridge relays text frames unchanged between the caller's stream (Twilio)
// and the number's agent, in both directions, through bounded queues.
//
// Each side has a reader (pushing into the other side's queue) and a writer
// (draining its own queue). When a side's reader ends (the peer closed or
// failed) the other side's queue is closed for input: its writer delivers what
// is queued (a final "stop" or the agent's last audio), then sends a close
// frame. A writer that fails closes its connection, which ends that side's
// reader and so, by the same rule, the other side. Every write has a deadline
// and every close frame a bounded wait for the peer's reply, so run always
// returns.
type bridge struct {
	twilio, agent *leg
	limits        Limits
	log           logr.Logger

	mu      sync.Mutex // guards outcome and the shutdown timer
	outcome string     // the first reason the call ended
}

func newBridge(twilioConn, agentConn *websocket.Conn, l Limits, m *Metrics, log logr.Logger) *bridge {
	return &bridge{
		twilio: newLeg("twilio", dirAgentToTwilio, twilioConn, l, m),
		agent:  newLeg("agent", dirTwilioToAgent, agentConn, l, m),
		limits: l,
		log:    log,
	}
}

// run bridges until both sides are closed and returns the outcome: which
// side ended the call, or shutdown when ctx ended first.
func (b *bridge) run(ctx context.Context) string {
	var wg sync.WaitGroup
	for _, l := range []*leg{b.twilio, b.agent} {
		l.conn.SetPongHandler(func(string) error { return b.extendRead(l) })
		_ = b.extendRead(l)
		wg.Add(2)
		go func() { defer wg.Done(); b.write(l) }()
		go func() { defer wg.Done(); b.ping(l) }()
	}
	wg.Add(2)
	go func() { defer wg.Done(); b.read(b.twilio, b.agent, outcomeCallerClosed, outcomeCallerError) }()
	go func() { defer wg.Done(); b.read(b.agent, b.twilio, outcomeAgentClosed, outcomeAgentError) }()

	var force *time.Timer
	stopWatch := context.AfterFunc(ctx, func() {
		b.end(outcomeShutdown)
		b.twilio.out.closeInput()
		b.agent.out.closeInput()
		// A writer blocked on a stalled peer must not hold shutdown past CloseTimeout.
		b.mu.Lock()
		force = time.AfterFunc(b.limits.CloseTimeout, func() {
			_ = b.twilio.conn.Close()
			_ = b.agent.conn.Close()
		})
		b.mu.Unlock()
	})
	wg.Wait()
	stopWatch()
	b.mu.Lock()
	if force != nil {
		force.Stop()
	}
	b.mu.Unlock()
	for _, l := range []*leg{b.twilio, b.agent} {
		l.stopCloseTimer()
		_ = l.conn.Close()
	}
	return b.result()
}

func (b *bridge) end(outcome string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.outcome == "" {
		b.outcome = outcome
	}
}

func (b *bridge) result() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.outcome
}

func (b *bridge) extendRead(l *leg) error {
	return l.conn.SetReadDeadline(time.Now().Add(b.limits.StreamIdleTimeout))
}

// read relays frames from src into dst's queue until src ends.
func (b *bridge) read(src, dst *leg, closedOutcome, errorOutcome string) {
	defer dst.out.closeInput()
	for {
		typ, data, err := src.conn.ReadMessage()
		if err != nil {
			if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived) {
				b.end(closedOutcome)
			} else {
				b.end(errorOutcome)
				b.log.V(1).Info("Stream side ended", "side", src.name, "error", err.Error())
			}
			return
		}
		_ = b.extendRead(src)
		if typ != websocket.TextMessage {
			// Media Streams is JSON text only; Twilio flags binary frames (31950).
			dst.droppedBinary.Inc()
			continue
		}
		if isMediaFrame(data) {
			switch err := dst.out.offerMedia(data); {
			case errors.Is(err, errQueueFull):
				dst.droppedFull.Inc()
			case errors.Is(err, errQueueClosed):
				dst.droppedClosed.Inc()
			}
			continue
		}
		switch err := dst.out.pushControl(data, b.limits.ControlEnqueueTimeout); {
		case errors.Is(err, errQueueClosed):
			dst.droppedClosed.Inc()
		case err != nil:
			// The far side has not taken a frame for a long time: give up on it.
			b.log.Info("Stream side stalled; ending the call", "side", dst.name)
			dst.droppedFull.Inc()
			dst.out.fail()
			_ = dst.conn.Close()
		}
	}
}

// write drains l's queue into l's connection, then closes it cleanly.
func (b *bridge) write(l *leg) {
	defer close(l.writerDone)
	for {
		data, ok := l.out.pop()
		if !ok {
			break
		}
		_ = l.conn.SetWriteDeadline(time.Now().Add(b.limits.WriteTimeout))
		if err := l.conn.WriteMessage(websocket.TextMessage, data); err != nil {
			b.log.V(1).Info("Write to stream side failed", "side", l.name, "error", err.Error())
			l.out.fail()
			_ = l.conn.Close()
			return
		}
		l.relayed.Inc()
	}
	code := websocket.CloseNormalClosure
	if b.result() == outcomeShutdown {
		code = websocket.CloseGoingAway
	}
	closeFrame(l.conn, code, "", b.limits.WriteTimeout)
	// Wait (bounded) for the peer to answer the close frame, then drop the connection.
	l.timerMu.Lock()
	l.closeTimer = time.AfterFunc(b.limits.CloseTimeout, func() { _ = l.conn.Close() })
	l.timerMu.Unlock()
}

func (l *leg) stopCloseTimer() {
	l.timerMu.Lock()
	defer l.timerMu.Unlock()
	if l.closeTimer != nil {
		l.closeTimer.Stop()
	}
}

// ping keeps idle connections alive and detects dead peers (the read
// deadline is extended by every frame and pong).
func (b *bridge) ping(l *leg) {
	t := time.NewTicker(b.limits.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-l.writerDone:
			return
		case <-t.C:
			if err := l.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(b.limits.WriteTimeout)); err != nil {
				return
			}
		}
	}
}

// closeFrame sends a close frame; errors mean the connection is already gone.
func closeFrame(c *websocket.Conn, code int, text string, timeout time.Duration) {
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(timeout))
}

var mediaPrefix = []byte(`"event"`)

// isMediaFrame reports whether a frame is a Media Streams "media" message,
// the only kind that may be dropped. The fast path accepts frames whose first
// key is "event" with value "media" (Twilio's and most agents' layout, with or
// without spaces); anything else is decoded, and what cannot be decoded is
// treated as control, so it is never dropped.
func isMediaFrame(data []byte) bool {
	rest := bytes.TrimLeft(data, " \t\r\n")
	if len(rest) > 0 && rest[0] == '{' {
		rest = bytes.TrimLeft(rest[1:], " \t\r\n")
		if bytes.HasPrefix(rest, mediaPrefix) {
			rest = bytes.TrimLeft(rest[len(mediaPrefix):], " \t\r\n")
			if len(rest) > 0 && rest[0] == ':' {
				rest = bytes.TrimLeft(rest[1:], " \t\r\n")
				return bytes.HasPrefix(rest, []byte(`"media"`))
			}
		}
	}
	var e struct {
		Event string `json:"event"`
	}
	if json.Unmarshal(data, &e) != nil {
		return false
	}
	return e.Event == "media"
}
