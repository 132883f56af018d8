package sampleagent

import (
	"context"
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

const (
	// DefaultMarkEvery sends a mark once per second of caller audio.
	DefaultMarkEvery = 50
	// DefaultIdleTimeout ends a stream that sent nothing for this long.
	DefaultIdleTimeout = 60 * time.Second

	writeTimeout    = 10 * time.Second
	closeTimeout    = 5 * time.Second
	maxMessageBytes = 64 << 10
)

// Options configure an Agent. The zero value is usable.
type Options struct {
	// MarkEvery sends a mark after every N caller media frames; 0 means
	// DefaultMarkEvery, a negative value never sends marks.
	MarkEvery int
	// IdleTimeout ends a stream that sent nothing for this long; 0 means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Logger receives one line per stream start and end; nil discards.
	Logger *slog.Logger
	// RequireHeader, when its Name is set, refuses (401) a handshake that
	// does not carry this header with this value: the agent's credentials,
	// which the webhook server sends from the number's
	// spec.agent.headersSecretRef.
	RequireHeader struct{ Name, Value string }
}

// Agent is an http.Handler that upgrades each request to a Media Streams
// WebSocket and plays the agent side of the call. It is safe for concurrent
// use; each stream is handled on its request's goroutine.
type Agent struct {
	opts     Options
	upgrader websocket.Upgrader

	mu      sync.Mutex
	stats   Stats
	conns   map[*websocket.Conn]struct{}
	closing bool
	wg      sync.WaitGroup
}

// New returns an Agent with o's defaults applied.
func New(o Options) *Agent {
	if o.MarkEvery == 0 {
		o.MarkEvery = DefaultMarkEvery
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Agent{
		opts: o,
		// Twilio (and the bridge) are not browsers; there is no Origin to check.
		upgrader: websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }},
		conns:    map[*websocket.Conn]struct{}{},
	}
}

// Handler returns the agent's HTTP surface: the Media Streams WebSocket at
// path, GET /stats, and GET /healthz.
func (a *Agent) Handler(path string) (http.Handler, error) {
	if !strings.HasPrefix(path, "/") || path == "/stats" || path == "/healthz" {
		return nil, fmt.Errorf("media path %q: must start with / and not be /stats or /healthz", path)
	}
	mux := http.NewServeMux()
	mux.Handle(path, a)
	mux.Handle("/stats", a.StatsHandler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux, nil
}

// ServeHTTP upgrades the request and handles one stream until stop, the
// peer's close, an error, IdleTimeout or Shutdown. After Shutdown it answers
// 503 without upgrading.
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	closing := a.closing
	if !closing {
		a.wg.Add(1)
	}
	a.mu.Unlock()
	if closing {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	defer a.wg.Done()

	if h := a.opts.RequireHeader; h.Name != "" &&
		subtle.ConstantTimeCompare([]byte(r.Header.Get(h.Name)), []byte(h.Value)) != 1 {
		a.update(func(s *Stats) { s.Unauthorized++ })
		http.Error(w, "missing or wrong "+h.Name, http.StatusUnauthorized)
		return
	}
	conn, err := a.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered the request
	}
	a.update(func(s *Stats) { s.LastQuery = r.URL.RawQuery })
	a.track(conn, true)
	defer a.track(conn, false)
	defer conn.Close()
	conn.SetReadLimit(maxMessageBytes)
	(&stream{agent: a, conn: conn}).run()
}

// Shutdown stops accepting streams, asks every live stream to close (1001
// going away) and waits for them to end. When ctx ends first it closes the
// remaining connections and returns ctx's error. It does not close the
// listener; call http.Server.Shutdown for that.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	a.closing = true
	conns := make([]*websocket.Conn, 0, len(a.conns))
	for c := range a.conns {
		conns = append(conns, c)
	}
	a.mu.Unlock()

	msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "agent shutting down")
	for _, c := range conns {
		_ = c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(writeTimeout))
	}
	done := make(chan struct{})
	go func() {
		a.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		a.mu.Lock()
		for c := range a.conns {
			_ = c.Close()
		}
		a.mu.Unlock()
		<-done
		return fmt.Errorf("shut down sample agent: %w", ctx.Err())
	}
}

func (a *Agent) track(c *websocket.Conn, live bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if live {
		a.conns[c] = struct{}{}
	} else {
		delete(a.conns, c)
	}
}
