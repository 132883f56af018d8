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

// agent is an echo Media Streams agent on a loopback listener: per stream it
// reads connected and start, then sends every media frame it receives back
// as it came, so the caller times the round trip. The relay and the bridge
// both connect to it.
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

// serve echoes the media of one stream until it closes.
func (a *agent) serve(p *phase, conn *websocket.Conn) {
	if err := readStart(conn); err != nil {
		p.fail(fmt.Errorf("agent: %w", err))
		return
	}
	p.agentConns.Add(1)
	buf := make([]byte, 0, 1024)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(readIdle))
		msg, err := readMessage(conn, buf)
		if err != nil {
			if !normalClose(err) {
				p.fail(fmt.Errorf("agent read: %w", err))
			}
			return
		}
		buf = msg[:0]
		if _, measured, ok := sentAt(msg); ok {
			p.dirs[callerToAgent].received.Add(1)
			_ = conn.SetWriteDeadline(time.Now().Add(writeTimeout))
			if err := conn.WriteMessage(websocket.TextMessage, msg); err != nil {
				p.fail(fmt.Errorf("agent echo: %w", err))
				return
			}
			p.dirs[agentToCaller].sent.Add(1)
			if measured {
				p.dirs[agentToCaller].measuredSent.Add(1)
			}
		}
	}
}

// readStart reads the opening messages (connected, then start).
func readStart(conn *websocket.Conn) error {
	_ = conn.SetReadDeadline(time.Now().Add(readIdle))
	for range 2 {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		var m struct {
			Event string `json:"event"`
			Start struct {
				StreamSID string `json:"streamSid"`
			} `json:"start"`
		}
		if err := json.Unmarshal(data, &m); err != nil {
			return err
		}
		if m.Event == "start" && m.Start.StreamSID != "" {
			return nil
		}
	}
	return errors.New("no start message")
}
