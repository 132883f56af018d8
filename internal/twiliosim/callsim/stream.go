package callsim

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

const (
	writeTimeout   = 10 * time.Second
	maxServerFrame = 1 << 20
)

// errStreamEnded reports a send after stop was sent or after the server's
// close frame arrived; the simulator then stays silent, as Twilio does.
var errStreamEnded = errors.New("stream ended")

// session is one media stream from the caller's side. Writes come from the
// sending goroutine (runStream) and from the reader (mark echoes), so they
// are serialised by mu, which also assigns sequence numbers in wire order.
type session struct {
	conn      *websocket.Conn
	streamSID string

	mu            sync.Mutex
	seq           int
	stopped       bool // stop was sent
	closeReceived bool // the server's close frame arrived
	serverFirst   bool // ... before stop was sent

	readDone chan struct{}
	recv     received // owned by readLoop until readDone is closed
}

type received struct {
	media, marks, clears, invalid int
	payloads                      []string
	audioBytes                    int
	digest                        hash.Hash
	closeCode                     int
}

// runStream opens the <Connect><Stream> WebSocket and plays the caller's
// side of the call. The upgrade is signed over the stream URL exactly as
// written in the TwiML (wss://host/path) with no params: twilio-facts.md §5.1
// reports that Twilio signs the wss:// URL, and validating against https://
// fails; that rule is unconfirmed for Media Streams, and this is the choice.
func runStream(ctx context.Context, c Call, s streamInstruction, res *Result) error {
	target, err := c.deliveryURL(s.URL)
	if err != nil {
		return fmt.Errorf("stream URL %q: %w", s.URL, err)
	}
	header := http.Header{}
	header.Set(SignatureHeader, Sign(c.AuthToken, s.URL, nil))
	conn, resp, err := c.Dialer.DialContext(ctx, target, header)
	if resp != nil {
		res.StreamHandshakeStatus = resp.StatusCode
		_ = resp.Body.Close()
	}
	if err != nil {
		return fmt.Errorf("handshake with %s (Twilio error 31920): %w", s.URL, err)
	}
	defer conn.Close()
	stopWatch := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stopWatch()

	ss := &session{
		conn:      conn,
		streamSID: newSID("MZ"),
		readDone:  make(chan struct{}),
		recv:      received{digest: sha256.New()},
	}
	res.StreamSID = ss.streamSID
	conn.SetReadLimit(maxServerFrame)
	conn.SetCloseHandler(ss.onClose)
	go ss.readLoop()

	sendErr := ss.play(ctx, c, s.Parameters, res)
	if sendErr == nil {
		sendErr = ss.hangUp(c, res)
	}
	ss.awaitClose(c.CloseTimeout)

	r := &ss.recv
	res.ReceivedMedia = r.media
	res.MarksEchoed = r.marks
	res.ClearsReceived = r.clears
	res.InvalidMessages = r.invalid
	res.ReceivedPayloads = r.payloads
	res.ReceivedAudioBytes = r.audioBytes
	res.ReceivedAudioSHA256 = hex.EncodeToString(r.digest.Sum(nil))
	res.CloseCode = r.closeCode
	ss.mu.Lock()
	res.ServerClosed = ss.serverFirst
	closed := ss.closeReceived
	ss.mu.Unlock()

	if err := ctx.Err(); err != nil {
		return err
	}
	if sendErr != nil && !errors.Is(sendErr, errStreamEnded) && !closed {
		return sendErr
	}
	return nil
}

// play sends connected, start, the paced media frames and the DTMF digits.
// It returns nil early when the server ends the stream.
func (ss *session) play(ctx context.Context, c Call, params map[string]string, res *Result) error {
	connected, _ := json.Marshal(message{Event: "connected", Protocol: "Call", Version: "1.0.0"})
	ss.mu.Lock()
	_ = ss.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	err := ss.conn.WriteMessage(websocket.TextMessage, connected)
	ss.mu.Unlock()
	if err != nil {
		return fmt.Errorf("send connected: %w", err)
	}
	if params == nil {
		params = map[string]string{}
	}
	err = ss.send(message{Event: "start", Start: &startPayload{
		StreamSid:        ss.streamSID,
		AccountSid:       c.AccountSID,
		CallSid:          c.CallSID,
		Tracks:           []string{"inbound"},
		CustomParameters: params,
		MediaFormat:      mediaFormat{Encoding: "audio/x-mulaw", SampleRate: SampleRate, Channels: 1},
	}})
	if err != nil {
		return fmt.Errorf("send start: %w", err)
	}

	var tick <-chan time.Time
	if c.FramePeriod > 0 {
		t := time.NewTicker(c.FramePeriod)
		defer t.Stop()
		tick = t.C
	}
	sent := sha256.New()
	defer func() { res.SentAudioSHA256 = hex.EncodeToString(sent.Sum(nil)) }()

	// Digit j goes after (j+1)·frames/(digits+1) frames: spread evenly,
	// never after the last frame.
	next := 0
	sendDigits := func(framesSent int) error {
		for next < len(c.DTMF) && (next+1)*c.MediaFrames/(len(c.DTMF)+1) <= framesSent {
			err := ss.send(message{Event: "dtmf", DTMF: &dtmfPayload{Track: "inbound_track", Digit: c.DTMF[next]}})
			if err != nil {
				return fmt.Errorf("send dtmf: %w", err)
			}
			next++
			res.SentDTMF++
		}
		return nil
	}
	if err := sendDigits(0); err != nil {
		return err
	}
	for i := range c.MediaFrames {
		if ended, err := ss.pace(ctx, tick); ended || err != nil {
			return err
		}
		audio := toneFrame(c.ToneHz, i)
		err := ss.send(message{Event: "media", Media: &mediaPayload{
			Track:     "inbound",
			Chunk:     strconv.Itoa(i + 1),
			Timestamp: strconv.Itoa(i * frameMillis),
			Payload:   base64.StdEncoding.EncodeToString(audio),
		}})
		if err != nil {
			return fmt.Errorf("send media: %w", err)
		}
		sent.Write(audio)
		res.SentMedia++
		if err := sendDigits(i + 1); err != nil {
			return err
		}
	}
	return nil
}

// pace waits for the next tick (not at all when tick is nil). It reports
// ended when the server has ended the stream.
func (ss *session) pace(ctx context.Context, tick <-chan time.Time) (ended bool, err error) {
	if tick == nil {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-ss.readDone:
			return true, nil
		default:
			return false, nil
		}
	}
	select {
	case <-ctx.Done():
		return true, ctx.Err()
	case <-ss.readDone:
		return true, nil
	case <-tick:
		return false, nil
	}
}

// hangUp ends the call from the caller's side: stop, then a normal close
// frame. It sends nothing when the server already closed the stream.
func (ss *session) hangUp(c Call, res *Result) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closeReceived {
		return nil
	}
	ss.seq++
	stop := message{
		Event:          "stop",
		SequenceNumber: strconv.Itoa(ss.seq),
		StreamSid:      ss.streamSID,
		Stop:           &stopPayload{AccountSid: c.AccountSID, CallSid: c.CallSID},
	}
	_ = ss.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	err := ss.conn.WriteJSON(stop)
	ss.stopped = true
	if err != nil {
		return fmt.Errorf("send stop: %w", err)
	}
	res.StopSent = true
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "call ended")
	if err := ss.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(writeTimeout)); err != nil {
		return fmt.Errorf("send close: %w", err)
	}
	return nil
}

// awaitClose waits for the reader to see the server's close frame (or the
// connection end), at most timeout, then forces the connection closed.
func (ss *session) awaitClose(timeout time.Duration) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ss.readDone:
	case <-t.C:
		_ = ss.conn.Close()
		<-ss.readDone
	}
}

// send writes m with the next sequence number and the stream SID.
func (ss *session) send(m message) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.stopped || ss.closeReceived {
		return errStreamEnded
	}
	ss.seq++
	m.SequenceNumber = strconv.Itoa(ss.seq)
	m.StreamSid = ss.streamSID
	_ = ss.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return ss.conn.WriteJSON(m)
}

// onClose records the server's close frame and answers it, as gorilla's
// default handler does.
func (ss *session) onClose(code int, _ string) error {
	ss.mu.Lock()
	ss.closeReceived = true
	ss.serverFirst = !ss.stopped
	ss.mu.Unlock()
	msg := websocket.FormatCloseMessage(code, "")
	err := ss.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(writeTimeout))
	if err != nil && !errors.Is(err, websocket.ErrCloseSent) {
		return err
	}
	return nil
}

// readLoop consumes the server's messages until the connection ends.
func (ss *session) readLoop() {
	defer close(ss.readDone)
	r := &ss.recv
	for {
		typ, data, err := ss.conn.ReadMessage()
		if err != nil {
			r.closeCode = websocket.CloseAbnormalClosure
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				r.closeCode = ce.Code
			}
			return
		}
		if typ != websocket.TextMessage {
			r.invalid++ // Twilio warning 31950: binary frames
			continue
		}
		ss.handle(data)
	}
}

// handle processes one server message; only media, mark and clear are
// allowed (twilio-facts.md §5.3). Marks are echoed at once: the simulator
// plays no audio, so everything queued before a mark has "played". The echo
// is written from the reading goroutine; a server that stops reading while
// flooding the caller can stall it until the write deadline.
func (ss *session) handle(data []byte) {
	r := &ss.recv
	var m message
	if err := json.Unmarshal(data, &m); err != nil || m.StreamSid != ss.streamSID {
		r.invalid++
		return
	}
	switch m.Event {
	case "media":
		if m.Media == nil {
			r.invalid++
			return
		}
		audio, err := base64.StdEncoding.DecodeString(m.Media.Payload)
		if err != nil {
			r.invalid++
			return
		}
		r.media++
		r.audioBytes += len(audio)
		r.digest.Write(audio)
		if len(r.payloads) < MaxKeptPayloads {
			r.payloads = append(r.payloads, m.Media.Payload)
		}
	case "mark":
		if m.Mark == nil {
			r.invalid++
			return
		}
		if ss.send(message{Event: "mark", Mark: &markPayload{Name: m.Mark.Name}}) == nil {
			r.marks++
		}
	case "clear":
		r.clears++
	default:
		r.invalid++ // Twilio error 31924
	}
}
