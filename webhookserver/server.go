// Package webhookserver is the data plane of twilio-voice-operator: the HTTP
// server Twilio calls for each TwilioPhoneNumber routed here. It checks every
// request's X-Twilio-Signature against the public URL, answers calls with
// TwiML (recording, then a bidirectional media stream back to itself),
// bridges each call's media stream to the WebSocket agent the number names,
// and delivers what Twilio reports (recordings, incoming SMS) to the number's
// sink as CloudEvents (events.go). Routing comes from an in-memory table kept
// current by watching the cluster.
package webhookserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/loquent/twilio-voice-operator/internal/egress"
)

// Paths served on the webhook listener. A media stream's path names its
// account: StreamPath + "/" + AccountSid (StreamURLPath), a part of the URL
// Twilio signs, so an upgrade is checked against that one account's tokens.
// StreamPath alone is the legacy form, still served for the streams of calls
// answered before the upgrade to per-account stream URLs (see handleStream).
const (
	VoicePath     = "/twilio/voice"
	StreamPath    = "/twilio/stream"
	RecordingPath = "/twilio/recording"
	EventsPath    = "/twilio/events"
	// StatusPath receives call status callbacks: the operator points a
	// number's StatusCallback here when it asks for call events
	// (spec.events.callStatus), with ConnectionOverrides.
	StatusPath = "/twilio/status"
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

	// MaxStreams caps the media streams open at once on this replica,
	// upgrades still being checked included; over it an upgrade gets 503.
	MaxStreams int
	// MaxConnections caps the HTTP connections open at once on this replica
	// (a connection upgraded to a stream leaves this count for MaxStreams'); a
	// request on a connection accepted over the cap gets 503, and the
	// connection is closed.
	MaxConnections int
	// MaxLegacyPending caps the streams on the legacy path (StreamPath) that
	// wait for their start message: they are authenticated only then.
	MaxLegacyPending int
	// SignatureFailureBurst and SignatureFailureRate throttle clients whose
	// requests fail authentication (signature, stream token): a client may
	// fail SignatureFailureBurst times, then once per 1/SignatureFailureRate
	// seconds; until then its requests get 429 before any check. A negative
	// burst turns throttling off.
	SignatureFailureBurst int
	SignatureFailureRate  float64
	// ThrottleClients bounds how many clients the throttle remembers.
	ThrottleClients int
	// UsedTokensSize bounds how many stream tokens are remembered as used
	// (each until it expires), so that a token opens one stream per replica.
	UsedTokensSize int
	// MaxRecordingDuration is the largest RecordingDuration observed in the
	// histogram; larger values are clamped to it.
	MaxRecordingDuration time.Duration
	// EventAttempts, EventAttemptTimeout, EventBackoff and EventBudget bound
	// the delivery of one event to its sink within one Twilio request: at
	// most EventAttempts attempts, each within EventAttemptTimeout, waiting
	// EventBackoff after the first failure and twice as long after each
	// next, all within EventBudget (well under Twilio's 15 s, so that the
	// server answers, 503 when the sink did not take the event, before
	// Twilio gives up; Twilio then retries per ConnectionOverrides).
	EventAttempts       int
	EventAttemptTimeout time.Duration
	EventBackoff        time.Duration
	EventBudget         time.Duration
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
	HTTPIdleTimeout:       30 * time.Second,
	RecordingDedupSize:    100_000,
	RecordingDedupTTL:     24 * time.Hour,
	MaxStreams:            2000,
	MaxConnections:        4096,
	MaxLegacyPending:      64,
	SignatureFailureBurst: 20,
	SignatureFailureRate:  1,
	ThrottleClients:       10_000,
	UsedTokensSize:        100_000,
	MaxRecordingDuration:  24 * time.Hour,
	EventAttempts:         3,
	EventAttemptTimeout:   3 * time.Second,
	EventBackoff:          time.Second,
	EventBudget:           8 * time.Second,
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
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setInt(&l.MaxStreams, d.MaxStreams)
	setInt(&l.MaxConnections, d.MaxConnections)
	setInt(&l.MaxLegacyPending, d.MaxLegacyPending)
	setInt(&l.ThrottleClients, d.ThrottleClients)
	setInt(&l.UsedTokensSize, d.UsedTokensSize)
	setInt(&l.EventAttempts, d.EventAttempts)
	setDur(&l.EventAttemptTimeout, d.EventAttemptTimeout)
	setDur(&l.EventBackoff, d.EventBackoff)
	setDur(&l.EventBudget, d.EventBudget)
	if l.SignatureFailureBurst == 0 { // negative: off
		l.SignatureFailureBurst = d.SignatureFailureBurst
	}
	if !(l.SignatureFailureRate > 0) {
		l.SignatureFailureRate = d.SignatureFailureRate
	}
	setDur(&l.MaxRecordingDuration, d.MaxRecordingDuration)
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
	// AgentEgress polices agent and event sink destinations on the resolved
	// IP:port at dial time (agent and sink URLs are tenant input). Nil uses
	// the default policy: loopback, link-local, unspecified and multicast
	// refused, no allow-list.
	AgentEgress *egress.Policy
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
	// voiceOK is Requests{route="voice",outcome="ok"}, looked up once.
	voiceOK prometheus.Counter
	tokens  atomic.Pointer[tokenSigner]

	hangup         string // rendered once
	answers        answerTemplates
	emptyMessaging string // rendered once

	upgrader websocket.Upgrader
	dialer   *websocket.Dialer

	// events delivers recording and message events to the numbers' sinks.
	events *eventSender

	// recordings are the recording callbacks handled here (RecordingSid and
	// status): delivered to the sink, refused by it for good, or without
	// one. A callback whose delivery is left to Twilio's retry is not.
	recordings *dedupSet
	// usedTokens are the stream tokens that opened a stream here.
	usedTokens *dedupSet
	throttle   *failureThrottle
	// conns counts open HTTP connections (not yet upgraded); legacyPending
	// the legacy-path streams not yet authenticated.
	conns         atomic.Int64
	legacyPending atomic.Int64

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
	if opts.AgentEgress == nil {
		p, err := egress.New(egress.Options{})
		if err != nil {
			return nil, fmt.Errorf("agent egress policy: %w", err)
		}
		opts.AgentEgress = p
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
	answers, err := newAnswerTemplates(recordingCallbackURL(opts.PublicURL), sig.streamBase+StreamPath+"/")
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:           opts,
		limits:         limits,
		metrics:        opts.Metrics,
		log:            opts.Log,
		sig:            sig,
		voiceOK:        opts.Metrics.Requests.WithLabelValues(routeVoice, outcomeOK),
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
		dialer:     newAgentDialer(opts.AgentDialTimeout, opts.AgentEgress, opts.Metrics),
		recordings: newDedupSet(limits.RecordingDedupSize, limits.RecordingDedupTTL),
		usedTokens: newDedupSet(limits.UsedTokensSize, opts.TokenTTL),
		throttle:   newFailureThrottle(limits.SignatureFailureBurst, limits.SignatureFailureRate, limits.ThrottleClients),
	}
	if s.events, err = newEventSender(opts.AgentEgress, limits, opts.Metrics); err != nil {
		return nil, err
	}
	s.tokens.Store(&tokenSigner{keys: opts.TokenKeys, ttl: opts.TokenTTL, now: time.Now})
	s.streamCtx, s.cancelStream = context.WithCancel(context.Background())
	return s, nil
}

// wsWriteBuffers is shared by every stream's sockets, on both sides.
var wsWriteBuffers = &sync.Pool{}

// bodyBuffer holds a webhook request's body while it is parsed.
type bodyBuffer struct{ b []byte }

// bodyBuffers are reused request body buffers (io.ReadAll allocated and
// grew a new one per request).
var bodyBuffers = sync.Pool{New: func() any { return new(bodyBuffer) }}

// maxPooledBody is the largest body buffer kept for reuse.
const maxPooledBody = 64 << 10

// readRequestBody reads r to its end, as io.ReadAll does (the same errors), into a
// buffer from bodyBuffers, sized from the request's contentLength when that
// is known and at most limit. The caller puts the buffer back when it no
// longer uses its bytes; on error there is none to put back.
func readRequestBody(r io.Reader, contentLength, limit int64) (*bodyBuffer, error) {
	buf := bodyBuffers.Get().(*bodyBuffer)
	b := buf.b[:0]
	if contentLength > 0 && contentLength <= limit && int64(cap(b)) <= contentLength {
		b = make([]byte, 0, contentLength+1) // +1: room to read the EOF without growing
	}
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == nil {
			continue
		}
		if cap(b) <= maxPooledBody {
			buf.b = b
		}
		if err == io.EOF {
			return buf, nil
		}
		bodyBuffers.Put(buf)
		return nil, err
	}
}

// Handler returns the handler of the Twilio routes (voice, stream,
// recording, events). Unknown paths get 404.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(VoicePath, s.handleVoice)
	mux.HandleFunc(StreamPath, s.handleStream)     // legacy: no account in the path
	mux.HandleFunc(StreamPath+"/", s.handleStream) // StreamPath/{AccountSid}
	mux.HandleFunc(RecordingPath, s.handleRecording)
	mux.HandleFunc(EventsPath, s.handleEvents)
	mux.HandleFunc(StatusPath, s.handleStatus)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if over, _ := r.Context().Value(overConnectionCap{}).(bool); over {
			// Accepted over MaxConnections (see Serve): refuse, and close.
			w.Header().Set("Connection", "close")
			s.metrics.CapacityRefusals.WithLabelValues(capConnections).Inc()
			s.respond(w, routeLabel(r.URL.Path), outcomeOverCapacity, http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// overConnectionCap marks, in a connection's context, a connection accepted
// while MaxConnections were already open.
type overConnectionCap struct{}

// Capacity kinds, as metric labels.
const (
	capConnections  = "connections"
	capStreams      = "streams"
	capLegacyStream = "legacy_pending_streams"
)

// routeLabel is the metric route of a path (a fixed set).
func routeLabel(path string) string {
	switch {
	case path == VoicePath:
		return routeVoice
	case path == RecordingPath:
		return routeRecording
	case path == EventsPath:
		return routeEvents
	case path == StatusPath:
		return routeStatus
	case path == StreamPath || strings.HasPrefix(path, StreamPath+"/"):
		return routeStream
	}
	return "other"
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
		// Every accepted connection is counted until it closes or is
		// upgraded (hijacked); those accepted over the cap are marked, and
		// their first request is refused (Handler).
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			if s.conns.Add(1) > int64(s.limits.MaxConnections) {
				return context.WithValue(ctx, overConnectionCap{}, true)
			}
			return ctx
		},
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				s.conns.Add(-1)
			}
		},
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

// Reasons admit refuses a stream.
const (
	admitted = iota
	admitDraining
	admitFull
)

// admit registers a new stream unless draining or max streams are live;
// release must follow an admitted stream.
func (t *streamTracker) admit(draining *atomic.Bool, max int) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if draining.Load() {
		return admitDraining
	}
	if t.n >= max {
		return admitFull
	}
	if t.n == 0 {
		t.idle = make(chan struct{})
	}
	t.n++
	return admitted
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
