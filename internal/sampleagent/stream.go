package sampleagent

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// message is one Media Streams message; only the fields the agent reads or
// writes are declared.
type message struct {
	Event     string `json:"event"`
	StreamSid string `json:"streamSid,omitempty"`
	Start     *struct {
		CallSid          string            `json:"callSid"`
		CustomParameters map[string]string `json:"customParameters"`
	} `json:"start,omitempty"`
	Media *media `json:"media,omitempty"`
	Mark  *mark  `json:"mark,omitempty"`
	DTMF  *struct {
		Digit string `json:"digit"`
	} `json:"dtmf,omitempty"`
}

type media struct {
	Payload string `json:"payload"`
}

type mark struct {
	Name string `json:"name"`
}

// stream is one call; only its own goroutine reads and writes conn (except
// Shutdown's WriteControl, which gorilla allows concurrently).
type stream struct {
	agent     *Agent
	conn      *websocket.Conn
	streamSID string
	callSID   string
	frames    int
	marks     int
	active    bool // counted in ActiveCalls
}

func (s *stream) run() {
	a := s.agent
	defer s.end(false)
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(a.opts.IdleTimeout))
		typ, data, err := s.conn.ReadMessage()
		if err != nil {
			return
		}
		var m message
		if typ != websocket.TextMessage || json.Unmarshal(data, &m) != nil {
			a.update(func(st *Stats) { st.ProtocolErrors++ })
			continue
		}
		if err := s.handle(m); err != nil {
			return
		}
		if m.Event == "stop" {
			s.end(true)
			s.close()
			return
		}
	}
}

// handle processes one message; an error ends the stream.
func (s *stream) handle(m message) error {
	a := s.agent
	switch m.Event {
	case "connected", "stop":
	case "start":
		if m.Start == nil || s.streamSID != "" {
			a.update(func(st *Stats) { st.ProtocolErrors++ })
			return nil
		}
		s.streamSID, s.callSID, s.active = m.StreamSid, m.Start.CallSid, true
		a.update(func(st *Stats) {
			st.Calls++
			st.ActiveCalls++
			st.LastFrom = m.Start.CustomParameters["from"]
			st.LastTo = m.Start.CustomParameters["to"]
			st.LastCallSID = s.callSID
			st.LastStreamSID = s.streamSID
		})
		a.opts.Logger.Info("Stream started", "callSid", s.callSID, "streamSid", s.streamSID)
	case "media":
		if s.streamSID == "" || m.Media == nil {
			a.update(func(st *Stats) { st.ProtocolErrors++ })
			return nil
		}
		a.update(func(st *Stats) { st.FramesIn++ })
		s.frames++
		if err := s.write(message{Event: "media", StreamSid: s.streamSID, Media: &media{Payload: m.Media.Payload}}); err != nil {
			return err
		}
		a.update(func(st *Stats) { st.FramesOut++ })
		if n := a.opts.MarkEvery; n > 0 && s.frames%n == 0 {
			s.marks++
			if err := s.write(message{Event: "mark", StreamSid: s.streamSID, Mark: &mark{Name: "echo-" + strconv.Itoa(s.marks)}}); err != nil {
				return err
			}
			a.update(func(st *Stats) { st.MarksSent++ })
		}
	case "mark":
		a.update(func(st *Stats) { st.MarksEchoed++ })
	case "dtmf":
		if m.DTMF == nil {
			a.update(func(st *Stats) { st.ProtocolErrors++ })
			return nil
		}
		a.update(func(st *Stats) {
			st.Digits += m.DTMF.Digit
			if len(st.Digits) > MaxDigits {
				st.Digits = st.Digits[len(st.Digits)-MaxDigits:]
			}
		})
	default:
		a.update(func(st *Stats) { st.ProtocolErrors++ })
	}
	return nil
}

func (s *stream) write(m message) error {
	_ = s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return s.conn.WriteJSON(m)
}

// end updates the counters once; completed marks a stream ended by stop.
func (s *stream) end(completed bool) {
	if !s.active {
		return
	}
	s.active = false
	s.agent.update(func(st *Stats) {
		st.ActiveCalls--
		if completed {
			st.CompletedCalls++
		}
	})
	s.agent.opts.Logger.Info("Stream ended", "callSid", s.callSID, "streamSid", s.streamSID,
		"frames", s.frames, "marks", s.marks, "completed", completed)
}

// close sends a normal close frame and waits, bounded, for the peer's reply.
func (s *stream) close() {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	err := s.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(writeTimeout))
	if err != nil && !errors.Is(err, websocket.ErrCloseSent) {
		return
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(closeTimeout))
	for {
		if _, _, err := s.conn.ReadMessage(); err != nil {
			return
		}
	}
}
