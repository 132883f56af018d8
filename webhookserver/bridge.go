package webhookserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
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

// stallAfter is how long a reader's direct write may block before another
// goroutine takes over reading its side, so that frames from that side are
// queued (and media dropped when the queue is full) instead of waiting
// behind the slow far side.
const stallAfter = 50 * time.Millisecond

// leg is one side of a bridged call: its connection and the queue of frames
// waiting to be written to it. The counters count frames headed to this leg.
type leg struct {
	name string // "twilio" or "agent", for logs
	conn *websocket.Conn
	out  *frameQueue

	relayed, droppedFull, droppedBinary, droppedClosed prometheus.Counter

	// stall fires when a direct write to conn has blocked for stallAfter.
	stall *time.Timer
	// readSet and writeSet are when conn's read and write deadlines were
	// last moved (deadlineSlack). readSet belongs to the side's reader (and
	// its pong handler), writeSet to the holder of the write.
	readSet, writeSet time.Time

	timerMu    sync.Mutex
	ping       *time.Timer // pings conn every PingInterval until finished
	pinging    bool
	closeTimer *time.Timer // closes conn if the peer does not answer our close frame
}

func newLeg(name, direction string, conn *websocket.Conn, l Limits, m *Metrics) *leg {
	return &leg{
		name:          name,
		conn:          conn,
		out:           newFrameQueue(l.QueueFrames, l.QueueBytes, l.ControlReserve),
		relayed:       m.FramesRelayed.WithLabelValues(direction),
		droppedFull:   m.FramesDropped.WithLabelValues(direction, dropBackpressure),
		droppedBinary: m.FramesDropped.WithLabelValues(direction, dropBinary),
		droppedClosed: m.FramesDropped.WithLabelValues(direction, dropClosed),
	}
}

// direction is one way through the bridge: frames read from src, written to dst.
type direction struct {
	src, dst                    *leg
	closedOutcome, errorOutcome string
}

// bridge relays text frames unchanged between the caller's stream (Twilio)
// and the number's agent, in both directions.
//
// Each direction has one reader, which writes every frame to the far side
// itself while that side keeps up: two goroutines per call (the handler's
// and one more), one wake-up per frame. A write that blocks for stallAfter
// (the far side stopped reading) hands the reading over to a new goroutine,
// which queues frames in the far side's bounded queue, dropping media when
// it is full and waiting (bounded) with control frames; the blocked writer,
// once its write returns, drains the queue, then stops, and the direction is
// back to one goroutine (frameQueue).
//
// When a side's reader ends (the peer closed or failed) the other side's
// input is closed: whoever holds its write delivers what is queued (a final
// "stop" or the agent's last audio), then sends a close frame. A write that
// fails closes its connection, which ends that side's reader and so, by the
// same rule, the other side. Every write has a deadline and every close frame
// a bounded wait for the peer's reply, so run always returns.
type bridge struct {
	twilio, agent *leg
	limits        Limits
	log           logr.Logger
	logKV         []any          // the call's key-value pairs, logged with every line (callLog)
	wg            sync.WaitGroup // readers and writers

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
// side ended the call, or shutdown when ctx ended first. The caller's
// goroutine reads Twilio's side.
func (b *bridge) run(ctx context.Context) string {
	fromTwilio := &direction{src: b.twilio, dst: b.agent, closedOutcome: outcomeCallerClosed, errorOutcome: outcomeCallerError}
	fromAgent := &direction{src: b.agent, dst: b.twilio, closedOutcome: outcomeAgentClosed, errorOutcome: outcomeAgentError}
	for _, d := range []*direction{fromTwilio, fromAgent} {
		l := d.src
		l.conn.SetPongHandler(func(string) error { return b.extendRead(l) })
		_ = b.extendRead(l)
		b.startPing(l)
		// The dst's stall timer starts a reader of src: dst is written by src's reader only.
		d.dst.stall = time.AfterFunc(time.Hour, func() { b.takeOver(d) })
		d.dst.stall.Stop()
	}
	var force *time.Timer
	stopWatch := context.AfterFunc(ctx, func() {
		b.end(outcomeShutdown)
		b.closeInput(b.twilio)
		b.closeInput(b.agent)
		// A write blocked on a stalled peer must not hold shutdown past CloseTimeout.
		b.mu.Lock()
		force = time.AfterFunc(b.limits.CloseTimeout, func() {
			_ = b.twilio.conn.Close()
			_ = b.agent.conn.Close()
		})
		b.mu.Unlock()
	})
	b.wg.Add(2)
	go func() { defer b.wg.Done(); b.read(fromAgent) }()
	func() { defer b.wg.Done(); b.read(fromTwilio) }()
	b.wg.Wait()
	stopWatch()
	b.mu.Lock()
	if force != nil {
		force.Stop()
	}
	b.mu.Unlock()
	for _, l := range []*leg{b.twilio, b.agent} {
		l.stall.Stop()
		l.stopTimers()
		_ = l.conn.Close()
	}
	return b.result()
}

// debug logs at V(1) with the call's pairs.
func (b *bridge) debug(msg string, kv ...any) {
	if l := b.log.V(1); l.Enabled() {
		callLog{log: l, kv: b.logKV}.Info(msg, kv...)
	}
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

// deadlineSlack: a deadline is moved only when it was last moved this long
// ago, and then set this much further out, so that a side sending 50 frames/s
// costs one timer update per second instead of one per frame. A peer thus
// gets StreamIdleTimeout (WriteTimeout for a write) plus up to deadlineSlack.
const deadlineSlack = time.Second

// extendRead pushes l's read deadline StreamIdleTimeout past now (see deadlineSlack).
func (b *bridge) extendRead(l *leg) error {
	now := time.Now()
	if now.Sub(l.readSet) < deadlineSlack {
		return nil
	}
	l.readSet = now
	return l.conn.SetReadDeadline(now.Add(b.limits.StreamIdleTimeout + deadlineSlack))
}

// extendWrite gives the next write to l at least WriteTimeout (see deadlineSlack).
func (b *bridge) extendWrite(l *leg) {
	now := time.Now()
	if now.Sub(l.writeSet) < deadlineSlack {
		return
	}
	l.writeSet = now
	_ = l.conn.SetWriteDeadline(now.Add(b.limits.WriteTimeout + deadlineSlack))
}

// read relays frames from d.src to d.dst until d.src ends, or until its
// reading is taken over while it waits on a write (takeOver): it then
// drains d.dst's queue instead.
func (b *bridge) read(d *direction) {
	src, dst := d.src, d.dst
	for {
		typ, frame, err := readFrame(src.conn)
		if err != nil {
			if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived) {
				b.end(d.closedOutcome)
			} else {
				b.end(d.errorOutcome)
				b.debug("Stream side ended", "side", src.name, "error", err.Error())
			}
			b.closeInput(dst)
			return
		}
		_ = b.extendRead(src)
		if b.relay(d, typ, *frame) {
			putFrame(frame)
			b.drain(dst) // another goroutine reads src now
			return
		}
		putFrame(frame)
	}
}

// relay passes one frame read from d.src on to d.dst: written at once, or
// queued, or dropped. It reports whether the reading was taken over while
// the frame was being written (takeOver).
func (b *bridge) relay(d *direction, typ int, data []byte) (handedOff bool) {
	dst := d.dst
	if typ != websocket.TextMessage {
		// Media Streams is JSON text only; Twilio flags binary frames (31950).
		dst.droppedBinary.Inc()
		return false
	}
	direct, err := dst.out.offer(data, isMediaFrame, b.limits.ControlEnqueueTimeout)
	switch {
	case direct:
		return b.writeDirect(dst, data)
	case errors.Is(err, errQueueFull):
		dst.droppedFull.Inc()
	case errors.Is(err, errQueueClosed):
		dst.droppedClosed.Inc()
	case err != nil:
		// The far side has not taken a frame for a long time: give up on it.
		callLog{log: b.log, kv: b.logKV}.Info("Stream side stalled; ending the call", "side", dst.name)
		dst.droppedFull.Inc()
		dst.out.fail()
		_ = dst.conn.Close()
	}
	return false
}

// writeDirect writes a frame the reader claimed the write of. It reports
// whether the reading was taken over meanwhile (the write was slow).
func (b *bridge) writeDirect(dst *leg, data []byte) (handedOff bool) {
	dst.stall.Reset(stallAfter)
	b.writeFrame(dst, data)
	dst.stall.Stop()
	return dst.out.directDone()
}

// takeOver runs when a direct write to d.dst has blocked for stallAfter: this
// goroutine becomes d.src's reader, so the blocked writer's side keeps being
// read (and its frames queued) while it waits.
func (b *bridge) takeOver(d *direction) {
	if !d.dst.out.takeOver() {
		return
	}
	// The blocked writer is counted in wg until it returns: Add cannot race Wait.
	b.wg.Add(1)
	defer b.wg.Done()
	b.read(d)
}

// drain writes what is queued for l, then gives the write up, and closes l
// when its input was closed meanwhile.
func (b *bridge) drain(l *leg) {
	for {
		data, ok, finish := l.out.next()
		if !ok {
			if finish {
				b.finish(l)
			}
			return
		}
		b.writeFrame(l, data)
	}
}

// writeFrame writes one frame to l; a failed write fails l for good.
func (b *bridge) writeFrame(l *leg, data []byte) {
	b.extendWrite(l)
	if err := l.conn.WriteMessage(websocket.TextMessage, data); err != nil {
		b.debug("Write to stream side failed", "side", l.name, "error", err.Error())
		l.out.fail()
		_ = l.conn.Close()
		return
	}
	l.relayed.Inc()
}

// closeInput closes l's input and, when no write to l is in progress, closes l.
func (b *bridge) closeInput(l *leg) {
	if l.out.closeInput() {
		b.finish(l)
	}
}

// finish closes l cleanly once everything for it was written: a close
// frame, then a bounded wait for the peer's answer.
func (b *bridge) finish(l *leg) {
	code := websocket.CloseNormalClosure
	if b.result() == outcomeShutdown {
		code = websocket.CloseGoingAway
	}
	l.timerMu.Lock()
	l.pinging = false
	l.ping.Stop()
	l.timerMu.Unlock()
	closeFrame(l.conn, code, "", b.limits.WriteTimeout)
	// Wait (bounded) for the peer to answer the close frame, then drop the connection.
	l.timerMu.Lock()
	l.closeTimer = time.AfterFunc(b.limits.CloseTimeout, func() { _ = l.conn.Close() })
	l.timerMu.Unlock()
}

// startPing pings l every PingInterval until it is finished: idle
// connections stay alive and dead peers are detected (the read deadline is
// extended by every frame and pong). A timer, not a goroutine per side.
func (b *bridge) startPing(l *leg) {
	l.timerMu.Lock()
	defer l.timerMu.Unlock()
	l.pinging = true
	l.ping = time.AfterFunc(b.limits.PingInterval, func() {
		if l.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(b.limits.WriteTimeout)) != nil {
			return
		}
		l.timerMu.Lock()
		defer l.timerMu.Unlock()
		if l.pinging {
			l.ping.Reset(b.limits.PingInterval)
		}
	})
}

func (l *leg) stopTimers() {
	l.timerMu.Lock()
	defer l.timerMu.Unlock()
	l.pinging = false
	if l.ping != nil {
		l.ping.Stop()
	}
	if l.closeTimer != nil {
		l.closeTimer.Stop()
	}
}

// readBufferSize is where a frame buffer starts; Media Streams frames are
// ~400 bytes. It grows for larger frames (up to MaxMessageBytes).
const readBufferSize = 1024

// maxPooledFrame is the largest frame buffer kept for reuse.
const maxPooledFrame = 16 << 10

// frameBufs are the readers' frame buffers. A reader takes one once a frame
// has begun to arrive and puts it back once the frame is relayed (queued
// frames are copies), so a call waiting for its next frame holds none: no
// allocation per frame, and no buffer per direction per call.
var frameBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, readBufferSize)
	return &b
}}

// readFrame reads the next message into a buffer from frameBufs (growing it
// when the message does not fit); the caller puts it back (putFrame).
func readFrame(c *websocket.Conn) (int, *[]byte, error) {
	typ, r, err := c.NextReader()
	if err != nil {
		return 0, nil, err
	}
	frame := frameBufs.Get().(*[]byte)
	buf := (*frame)[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			*frame = buf
			return typ, frame, nil
		}
		if err != nil {
			*frame = buf
			putFrame(frame)
			return 0, nil, err
		}
	}
}

// putFrame returns a frame buffer to frameBufs.
func putFrame(frame *[]byte) {
	if cap(*frame) <= maxPooledFrame {
		*frame = (*frame)[:0]
		frameBufs.Put(frame)
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
