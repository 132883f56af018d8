// Package webhookserver is the data plane of twilio-voice-operator: the HTTP
// server Twilio calls for each TwilioPhoneNumber routed here. It checks every
// request's X-Twilio-Signature against the public URL, answers calls with
// TwiML (recording, then a bidirectional media stream back to itself), and
// bridges each call's media stream to the WebSocket agent the number names.
// Routing comes from an in-memory table kept current by watching the cluster.
package webhookserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/gorilla/websocket"
)

// Paths served on the webhook listener.
const (
	VoicePath     = "/twilio/voice"
	StreamPath    = "/twilio/stream"
	RecordingPath = "/twilio/recording"
	EventsPath    = "/twilio/events"
)

// Limits bounds what one request or stream may cost. Zero fields take the
// defaults from DefaultLimits.
type Limits struct {
	// MaxBodyBytes caps a webhook request body; larger bodies get 413.
	MaxBodyBytes int64
	// MaxMessageBytes caps one WebSocket message from either side.
	MaxMessageBytes int64
	// QueueFrames caps the media frames queued toward one side (~20 ms of audio each).
	QueueFrames int
	// QueueBytes caps the bytes of media frames queued toward one side.
	QueueBytes int
	// ControlReserve is how many non-media frames may queue beyond QueueFrames.
	ControlReserve int
	// ControlEnqueueTimeout is how long a non-media frame may wait for queue
	// room before the far side is considered stalled and the call ended.
	ControlEnqueueTimeout time.Duration
	// StreamIdleTimeout ends a stream side that sent no frame and no pong for this long.
	StreamIdleTimeout time.Duration
	// PingInterval is how often each stream side is pinged.
	PingInterval time.Duration
	// WriteTimeout bounds one WebSocket write.
	WriteTimeout time.Duration
	// StartTimeout bounds the wait for Twilio's connected and start messages.
	StartTimeout time.Duration
	// CloseTimeout bounds the wait for a peer's answer to our close frame.
	CloseTimeout time.Duration
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout of the
	// http.Server, for the webhook routes. They do not limit streams: the
	// upgraded connection's deadlines are cleared and the bridge sets its own
	// per read and write.
	HTTPReadHeaderTimeout, HTTPReadTimeout, HTTPWriteTimeout, HTTPIdleTimeout time.Duration
	// RecordingDedupSize and RecordingDedupTTL bound the set of recording
	// callbacks remembered to recognise duplicates.
	RecordingDedupSize int
	RecordingDedupTTL  time.Duration
}

// DefaultLimits are the limits used for zero Limits fields.
var DefaultLimits = Limits{
	MaxBodyBytes:          64 << 10,
	MaxMessageBytes:       64 << 10,
	QueueFrames:           250, // 5 s of 20 ms frames
	QueueBytes:            512 << 10,
	ControlReserve:        32,
	ControlEnqueueTimeout: 5 * time.Second,
	StreamIdleTimeout:     60 * time.Second,
	PingInterval:          20 * time.Second,
	WriteTimeout:          10 * time.Second,
	StartTimeout:          10 * time.Second,
	CloseTimeout:          5 * time.Second,
	HTTPReadHeaderTimeout: 5 * time.Second,
	HTTPReadTimeout:       15 * time.Second,
	HTTPWriteTimeout:      15 * time.Second,
	HTTPIdleTimeout:       120 * time.Second,
	RecordingDedupSize:    100_000,
	RecordingDedupTTL:     24 * time.Hour,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	setDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = d.MaxBodyBytes
	}
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = d.MaxMessageBytes
	}
	if l.QueueFrames <= 0 {
		l.QueueFrames = d.QueueFrames
	}
	if l.QueueBytes <= 0 {
		l.QueueBytes = d.QueueBytes
	}
	if l.ControlReserve <= 0 {
		l.ControlReserve = d.ControlReserve
	}
	if l.RecordingDedupSize <= 0 {
		l.RecordingDedupSize = d.RecordingDedupSize
	}
	setDur(&l.ControlEnqueueTimeout, d.ControlEnqueueTimeout)
	setDur(&l.StreamIdleTimeout, d.StreamIdleTimeout)
	setDur(&l.PingInterval, d.PingInterval)
	setDur(&l.WriteTimeout, d.WriteTimeout)
	setDur(&l.StartTimeout, d.StartTimeout)
	setDur(&l.CloseTimeout, d.CloseTimeout)
	setDur(&l.HTTPReadHeaderTimeout, d.HTTPReadHeaderTimeout)
	setDur(&l.HTTPReadTimeout, d.HTTPReadTimeout)
	setDur(&l.HTTPWriteTimeout, d.HTTPWriteTimeout)
	setDur(&l.HTTPIdleTimeout, d.HTTPIdleTimeout)
	setDur(&l.RecordingDedupTTL, d.RecordingDedupTTL)
	return l
}

// Options configures a Server.
type Options struct {
	// PublicURL is the validated https://host (http:// for local demos)
	// through which Twilio reaches the server; signatures are checked over it.
	PublicURL string
	// Routes answers routing and auth-token questions (normally a *Routing).
	Routes RouteSource
	// TokenKeys are the HMAC keys for per-call stream tokens, shared by all
	// replicas: the first signs, every one verifies (a rotation holds two).
	TokenKeys [][]byte
	// TokenTTL is how long a stream token is valid after the call was answered.
	TokenTTL time.Duration
	// AgentDialTimeout bounds connecting to an agent, handshake included.
	AgentDialTimeout time.Duration
	// ShutdownGracePeriod is how long live streams may continue after Serve's
	// context ends.
	ShutdownGracePeriod time.Duration
	// Metrics receives the server's metrics (see NewMetrics).
	Metrics *Metrics
	// Log is the server's logger.
	Log logr.Logger
	// Limits bounds requests and streams; zero fields take DefaultLimits.
	Limits Limits

	// onBridge, when set (tests only), sees every bridge before it runs.
	onBridge func(*bridge)
}

// Server answers Twilio's webhooks and bridges media streams. Create it with
// New; run it with Serve. Its handler is safe for concurrent use.
type Server struct {
	opts    Options
	limits  Limits
	metrics *Metrics
	log     logr.Logger
	sig     signatureChecker
	tokens  atomic.Pointer[tokenSigner]

	hangup         string // rendered once
	answers        answerTemplates
	emptyMessaging string // rendered once

	upgrader websocket.Upgrader
	dialer   *websocket.Dialer

	recordings *dedupSet

	draining atomic.Bool
	streams  streamTracker
	// streamCtx ends when the grace period is over: live bridges then close.
	streamCtx    context.Context
	cancelStream context.CancelFunc
}

// SetTokenKeys replaces the stream token keys (the first signs, every one
// verifies) for the calls answered and the streams started from now on.
func (s *Server) SetTokenKeys(keys [][]byte) error {
	if err := validTokenKeys(keys); err != nil {
		return err
	}
	old := s.tokens.Load()
	s.tokens.Store(&tokenSigner{keys: keys, ttl: old.ttl, now: old.now})
	return nil
}

// New validates opts and builds a Server.
func New(opts Options) (*Server, error) {
	switch {
	case opts.PublicURL == "":
		return nil, errors.New("public URL is required")
	case opts.Routes == nil:
		return nil, errors.New("routes are required")
	case opts.Metrics == nil:
		return nil, errors.New("metrics are required")
	}
	if err := validTokenKeys(opts.TokenKeys); err != nil {
		return nil, err
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = 5 * time.Minute
	}
	if opts.AgentDialTimeout <= 0 {
		opts.AgentDialTimeout = 5 * time.Second
	}
	limits := opts.Limits.withDefaults()
	hangup, err := hangupTwiML()
	if err != nil {
		return nil, err
	}
	empty, err := emptyMessagingTwiML()
	if err != nil {
		return nil, err
	}
	sig := newSignatureChecker(opts.PublicURL)
	answers, err := newAnswerTemplates(opts.PublicURL+RecordingPath, sig.streamURL[0]+StreamPath)
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:           opts,
		limits:         limits,
		metrics:        opts.Metrics,
		log:            opts.Log,
		sig:            sig,
		hangup:         hangup,
		answers:        answers,
		emptyMessaging: empty,
		// Media frames are ~400-byte JSON messages: 1 KiB read buffers and a
		// shared pool of write buffers (held only while writing) instead of
		// gorilla's 4 KiB per direction per socket keep a call's heap small.
		upgrader: websocket.Upgrader{
			HandshakeTimeout: limits.WriteTimeout,
			ReadBufferSize:   1024,
			WriteBufferSize:  1024,
			WriteBufferPool:  wsWriteBuffers,
			// The signature, not the Origin, authenticates the upgrade; Twilio
			// sends no browser Origin.
			CheckOrigin: func(*http.Request) bool { return true },
		},
		dialer: &websocket.Dialer{
			HandshakeTimeout: opts.AgentDialTimeout,
			ReadBufferSize:   1024,
			WriteBufferSize:  1024,
			WriteBufferPool:  wsWriteBuffers,
			Proxy:            http.ProxyFromEnvironment,
		},
		recordings: newDedupSet(limits.RecordingDedupSize, limits.RecordingDedupTTL),
	}
	s.tokens.Store(&tokenSigner{keys: opts.TokenKeys, ttl: opts.TokenTTL, now: time.Now})
	s.streamCtx, s.cancelStream = context.WithCancel(context.Background())
	return s, nil
}

// wsWriteBuffers is shared by every stream's sockets, on both sides.
var wsWriteBuffers = &sync.Pool{}

// Handler returns the handler of the Twilio routes (voice, stream,
// recording, events). Unknown paths get 404.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(VoicePath, s.handleVoice)
	mux.HandleFunc(StreamPath, s.handleStream)
	mux.HandleFunc(RecordingPath, s.handleRecording)
	mux.HandleFunc(EventsPath, s.handleEvents)
	return mux
}

// Ready reports whether the server should receive new calls: the routing
// table is synced and the server is not draining.
func (s *Server) Ready() bool { return !s.draining.Load() && s.opts.Routes.Synced() }

// Draining reports whether shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// Serve serves the Twilio routes on ln until ctx ends, then shuts down:
// readiness turns false and new calls and stream upgrades are refused with
// 503 while the listener stays open; live streams continue until they end or
// ShutdownGracePeriod passes, when they are closed cleanly on both sides;
// then the listener closes and in-flight HTTP requests finish. Serve returns
// after that, or when the listener fails.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.limits.HTTPReadHeaderTimeout,
		ReadTimeout:       s.limits.HTTPReadTimeout,
		WriteTimeout:      s.limits.HTTPWriteTimeout,
		IdleTimeout:       s.limits.HTTPIdleTimeout,
		MaxHeaderBytes:    16 << 10,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		s.draining.Store(true)
		s.cancelStream()
		return fmt.Errorf("serve webhooks: %w", err)
	case <-ctx.Done():
	}

	s.draining.Store(true)
	live := s.streams.count()
	s.log.Info("Draining: refusing new calls, waiting for live streams", "liveStreams", live, "gracePeriod", s.opts.ShutdownGracePeriod)
	grace, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownGracePeriod)
	defer cancel()
	if !s.streams.waitIdle(grace) {
		s.log.Info("Grace period over; closing live streams", "liveStreams", s.streams.count())
	}
	s.cancelStream()
	closing, cancelClosing := context.WithTimeout(context.Background(), s.limits.CloseTimeout+s.limits.WriteTimeout)
	defer cancelClosing()
	s.streams.waitIdle(closing)

	shut, cancelShut := context.WithTimeout(context.Background(), s.limits.HTTPWriteTimeout)
	defer cancelShut()
	if err := srv.Shutdown(shut); err != nil {
		_ = srv.Close()
		return fmt.Errorf("shut down webhook server: %w", err)
	}
	s.log.Info("Webhook server stopped")
	return nil
}

// streamTracker counts live streams. Admission and draining share one lock,
// so no stream is admitted after draining has been observed.
type streamTracker struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed while n == 0; replaced when n leaves 0
}

// admit registers a new stream unless draining; release must follow.
func (t *streamTracker) admit(draining *atomic.Bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if draining.Load() {
		return false
	}
	if t.n == 0 {
		t.idle = make(chan struct{})
	}
	t.n++
	return true
}

func (t *streamTracker) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 {
		close(t.idle)
	}
}

func (t *streamTracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// waitIdle waits until no stream is live or ctx ends; it reports which.
func (t *streamTracker) waitIdle(ctx context.Context) bool {
	for {
		t.mu.Lock()
		if t.n == 0 {
			t.mu.Unlock()
			return true
		}
		idle := t.idle
		t.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return false
		}
	}
}
