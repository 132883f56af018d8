package main

import (
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

const (
	framePeriod  = 20 * time.Millisecond
	writeTimeout = 10 * time.Second
	readIdle     = 60 * time.Second
)

// Directions of media.
const (
	callerToAgent = iota
	agentToCaller
)

type direction struct {
	sent, received atomic.Int64
	measuredSent   atomic.Int64         // sent while measuring
	lat            hist                 // frames sent while measuring
	sliceLat       atomic.Pointer[hist] // the same, of the current slice only
}

// phase is one set of calls (direct or bridged): the counters every caller
// and agent connection of the set reports into, and the signals that pace
// them. Senders send only while the phase is active, so the two sets can be
// measured in alternating slices.
type phase struct {
	name string
	dirs [2]direction

	measuring atomic.Bool // frames sent now are timed

	gateMu sync.Mutex
	gate   chan struct{} // closed while active
	active atomic.Bool

	stopSend  chan struct{} // closed: senders stop for good
	hangup    chan struct{} // closed: callers send stop and close
	hardStop  time.Time     // no sender runs past this, whatever happens
	maxFrames int           // nor sends more frames than this

	wg         sync.WaitGroup // every caller and agent connection
	agentConns atomic.Int64
	failures   atomic.Int64
	failMu     sync.Mutex
	failKinds  map[string]int // by message, at most maxFailKinds of them
}

const maxFailKinds = 6

func newPhase(name string, budget time.Duration) *phase {
	return &phase{
		name:      name,
		gate:      make(chan struct{}),
		stopSend:  make(chan struct{}),
		hangup:    make(chan struct{}),
		failKinds: map[string]int{},
		hardStop:  time.Now().Add(budget),
		maxFrames: int(budget/framePeriod) + 1,
	}
}

func (p *phase) fail(err error) {
	p.failures.Add(1)
	p.failMu.Lock()
	defer p.failMu.Unlock()
	if _, ok := p.failKinds[err.Error()]; ok || len(p.failKinds) < maxFailKinds {
		p.failKinds[err.Error()]++
	}
}

// setActive lets the senders send (true) or parks them (false).
func (p *phase) setActive(on bool) {
	p.gateMu.Lock()
	defer p.gateMu.Unlock()
	if on == p.active.Load() {
		return
	}
	p.active.Store(on)
	if on {
		close(p.gate)
	} else {
		p.gate = make(chan struct{})
	}
}

func (p *phase) gateCh() chan struct{} {
	p.gateMu.Lock()
	defer p.gateMu.Unlock()
	return p.gate
}

func (p *phase) sent(d int) int64 { return p.dirs[d].sent.Load() }

// pace sends one frame every 20 ms while the phase is active, starting each
// active stretch after a random offset (so calls are not in lockstep), until
// stopSend, hardStop or maxFrames. A ticker drops ticks when the sender falls
// behind, so an overloaded machine shows as a lower achieved frame rate, not
// as bursts. A parked sender holds no timer.
func (p *phase) pace(conn *websocket.Conn, d int, frame func(seq int, sentAt int64, measured bool) []byte) {
	seq := 0
	for seq < p.maxFrames && time.Now().Before(p.hardStop) {
		select {
		case <-p.stopSend:
			return
		case <-p.gateCh():
		}
		offset := time.NewTimer(rand.N(framePeriod))
		select {
		case <-p.stopSend:
			offset.Stop()
			return
		case <-offset.C:
		}
		t := time.NewTicker(framePeriod)
		for seq < p.maxFrames && time.Now().Before(p.hardStop) && p.active.Load() {
			seq++
			measured := p.measuring.Load()
			_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			if err := conn.WriteMessage(websocket.TextMessage, frame(seq, now(), measured)); err != nil {
				t.Stop()
				p.fail(err)
				return
			}
			p.dirs[d].sent.Add(1)
			if measured {
				p.dirs[d].measuredSent.Add(1)
			}
			select {
			case <-p.stopSend:
				t.Stop()
				return
			case <-t.C:
			}
		}
		t.Stop()
	}
}

// receive reads frames until the connection ends, timing the measured media
// frames of direction d, and returns the error that ended it.
func (p *phase) receive(conn *websocket.Conn, d int) error {
	buf := make([]byte, 0, 1024)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(readIdle))
		msg, err := readMessage(conn, buf)
		if err != nil {
			return err
		}
		at := now()
		buf = msg[:0]
		ts, measured, ok := sentAt(msg)
		if !ok {
			continue
		}
		p.dirs[d].received.Add(1)
		if measured {
			p.dirs[d].lat.record(at - ts)
			if h := p.dirs[d].sliceLat.Load(); h != nil {
				h.record(at - ts)
			}
		}
	}
}

// readMessage reads the next data message into buf's storage.
func readMessage(conn *websocket.Conn, buf []byte) ([]byte, error) {
	_, r, err := conn.NextReader()
	if err != nil {
		return nil, err
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// normalClose reports whether err is the peer's clean close.
func normalClose(err error) bool {
	return websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway)
}

// drained waits until every frame sent has been received, or d passes.
func (p *phase) drained(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if p.dirs[0].received.Load() == p.sent(0) && p.dirs[1].received.Load() == p.sent(1) {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitAll waits for every connection of the phase to end, or d to pass.
func (p *phase) waitAll(d time.Duration) bool {
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}
