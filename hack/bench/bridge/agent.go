package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// agent is an echo-less Media Streams agent on a loopback listener: per
// stream it reads connected and start, then sends its own timestamped media
// at 50 frames/s toward the caller while timing the caller's frames. Both the
// direct callers and the bridge connect to it.
type agent struct {
	url   string
	phase atomic.Pointer[phase]
	srv   *http.Server
}

func startAgent() (*agent, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &agent{url: "ws://" + ln.Addr().String() + "/media"}
	up := websocket.Upgrader{}
	a.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := a.phase.Load()
		p.wg.Add(1)
		defer p.wg.Done()
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			p.fail(fmt.Errorf("agent upgrade: %w", err))
			return
		}
		defer func() { _ = conn.Close() }()
		a.serve(p, conn)
	})}
	go func() { _ = a.srv.Serve(ln) }()
	return a, nil
}

func (a *agent) serve(p *phase, conn *websocket.Conn) {
	streamSID, err := readStart(conn)
	if err != nil {
		p.fail(fmt.Errorf("agent: %w", err))
		return
	}
	p.agentConns.Add(1)
	fw := newFrameWriter()
	sending := make(chan struct{})
	go func() {
		defer close(sending)
		p.pace(conn, agentToCaller, func(_ int, at int64, measured bool) []byte { return fw.agent(streamSID, at, measured) })
	}()
	if err := p.receive(conn, callerToAgent); !normalClose(err) {
		p.fail(fmt.Errorf("agent read: %w", err))
		_ = conn.Close() // end the sender too
	}
	<-sending
}

// readStart reads the opening messages (connected, then start) and returns
// the stream SID.
func readStart(conn *websocket.Conn) (string, error) {
	_ = conn.SetReadDeadline(time.Now().Add(readIdle))
	for range 2 {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return "", err
		}
		var m struct {
			Event string `json:"event"`
			Start struct {
				StreamSID string `json:"streamSid"`
			} `json:"start"`
		}
		if err := json.Unmarshal(data, &m); err != nil {
			return "", err
		}
		if m.Event == "start" && m.Start.StreamSID != "" {
			return m.Start.StreamSID, nil
		}
	}
	return "", errors.New("no start message")
}
