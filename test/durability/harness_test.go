package durability

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/loquent/twilio-voice-operator/controllers"
)

// errDead is what every request of a crashed manager gets: once it "died",
// nothing it would still send reaches the API server or Twilio.
var errDead = errors.New("injected crash: this manager is dead")

// What a crash came right after, for the printed counts.
const (
	afterKubeWrite   = "kube write"
	afterTwilioWrite = "Twilio write"
)

// incarnation is one run of the manager. It dies (crash) right after its
// crashAfter-th successful write, Kubernetes or Twilio: that write is applied,
// its answer is never seen, and every request after it fails.
type incarnation struct {
	crashAfter atomic.Int64 // -1: never
	writes     atomic.Int64
	dead       atomic.Bool
	crashedBy  atomic.Value // string: afterKubeWrite or afterTwilioWrite
	mu         sync.Mutex
	log        []string // what each write was, in order
	cancel     context.CancelFunc
	done       chan struct{}
}

// wrote counts a successful write and reports whether the manager dies now.
func (inc *incarnation) wrote(kind string, req *http.Request) bool {
	inc.mu.Lock()
	inc.log = append(inc.log, kind+" "+req.Method+" "+req.URL.Path)
	inc.mu.Unlock()
	if inc.writes.Add(1) != inc.crashAfter.Load() || !inc.dead.CompareAndSwap(false, true) {
		return false
	}
	inc.crashedBy.Store(kind)
	inc.cancel()
	return true
}

// kubeTransport sits between a manager and the API server: it makes watch
// events arrive lag late (a busy API server), and kills the manager after
// its chosen write.
type kubeTransport struct {
	next http.RoundTripper
	inc  *incarnation
	lag  time.Duration
}

func (t *kubeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.inc.dead.Load() {
		return nil, errDead
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if req.Method != http.MethodGet && resp.StatusCode < 300 && strings.Contains(req.URL.Path, "/twiliophonenumbers") {
		if t.inc.wrote(afterKubeWrite, req) {
			_ = resp.Body.Close()
			return nil, errDead
		}
	}
	if req.URL.Query().Get("watch") == "true" && t.lag > 0 {
		resp.Body = newLaggedBody(resp.Body, t.lag)
	}
	return resp, nil
}

// twilioTransport carries the manager's Twilio calls and kills it after its
// chosen write.
type twilioTransport struct {
	next http.RoundTripper
	inc  *incarnation
}

func (t *twilioTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.inc.dead.Load() {
		return nil, errDead
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	update := req.Method == http.MethodPost && strings.Contains(req.URL.Path, "/IncomingPhoneNumbers/PN")
	purchase := req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/IncomingPhoneNumbers.json")
	release := req.Method == http.MethodDelete && strings.Contains(req.URL.Path, "/IncomingPhoneNumbers/PN")
	if (update || purchase || release) && resp.StatusCode < 300 {
		if t.inc.wrote(afterTwilioWrite, req) {
			_ = resp.Body.Close()
			return nil, errDead
		}
	}
	return resp, nil
}

// laggedBody hands out each chunk of a watch stream lag after it arrived.
type laggedBody struct {
	src    io.ReadCloser
	lag    time.Duration
	chunks chan chunk
	stop   chan struct{}
	once   sync.Once
	cur    []byte
}

type chunk struct {
	data []byte
	at   time.Time
	err  error
}

func newLaggedBody(src io.ReadCloser, lag time.Duration) *laggedBody {
	b := &laggedBody{src: src, lag: lag, chunks: make(chan chunk, 4096), stop: make(chan struct{})}
	go b.pump()
	return b
}

func (b *laggedBody) pump() {
	for {
		buf := make([]byte, 32<<10)
		n, err := b.src.Read(buf)
		c := chunk{data: buf[:n], at: time.Now(), err: err}
		select {
		case b.chunks <- c:
		case <-b.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

func (b *laggedBody) Read(p []byte) (int, error) {
	for len(b.cur) == 0 {
		var c chunk
		select {
		case c = <-b.chunks:
		case <-b.stop:
			return 0, io.ErrClosedPipe
		}
		if wait := time.Until(c.at.Add(b.lag)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-b.stop:
				t.Stop()
				return 0, io.ErrClosedPipe
			}
		}
		b.cur = c.data
		if len(b.cur) == 0 && c.err != nil {
			return 0, c.err
		}
	}
	n := copy(p, b.cur)
	b.cur = b.cur[n:]
	return n, nil
}

func (b *laggedBody) Close() error {
	b.once.Do(func() { close(b.stop) })
	return b.src.Close()
}

// supervisor keeps one manager running, restarting it each time it crashes,
// until stopCrashing: from then on the running incarnation (or the next one)
// never crashes.
type supervisor struct {
	cfg     *rest.Config
	opts    controllers.Options
	lag     time.Duration
	rng     *rand.Rand
	maxLife int64 // an incarnation dies after 1..maxLife writes
	// crashAt, when > 0, makes the first incarnation die right after exactly
	// that many writes and every later one live on.
	crashAt int64

	mu       sync.Mutex
	calm     bool
	current  *incarnation
	crashes  map[string]int
	finished chan struct{}
}

func (s *supervisor) start(ctx context.Context) error {
	s.crashes = map[string]int{}
	s.finished = make(chan struct{})
	inc, err := s.spawn(ctx)
	if err != nil {
		return err
	}
	go func() {
		defer close(s.finished)
		for {
			select {
			case <-inc.done:
			case <-ctx.Done():
				<-inc.done
				return
			}
			if by, ok := inc.crashedBy.Load().(string); ok {
				s.mu.Lock()
				s.crashes[by]++
				s.mu.Unlock()
			}
			if ctx.Err() != nil {
				return
			}
			next, err := s.spawn(ctx)
			if err != nil {
				panic(err) // a broken harness, not a finding
			}
			inc = next
		}
	}()
	return nil
}

// spawn starts one incarnation of the manager.
func (s *supervisor) spawn(ctx context.Context) (*incarnation, error) {
	s.mu.Lock()
	inc := &incarnation{done: make(chan struct{})}
	switch {
	case s.calm:
		inc.crashAfter.Store(-1)
	case s.crashAt > 0:
		inc.crashAfter.Store(s.crashAt)
		s.calm = true
	default:
		inc.crashAfter.Store(1 + s.rng.Int64N(s.maxLife))
	}
	s.current = inc
	s.mu.Unlock()

	cfg := rest.CopyConfig(s.cfg)
	cfg.QPS, cfg.Burst = 500, 1000
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return &kubeTransport{next: rt, inc: inc, lag: s.lag}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr(true)},
	})
	if err != nil {
		return nil, err
	}
	_ = mgr.AddHealthzCheck("ping", healthz.Ping)
	opts := s.opts
	opts.Transport = &twilioTransport{next: http.DefaultTransport, inc: inc}
	opts.Controller = controller.Options{SkipNameValidation: ptr(true)}
	mctx, cancel := context.WithCancel(ctx)
	inc.cancel = cancel
	if err := controllers.Setup(mctx, mgr, opts); err != nil {
		cancel()
		return nil, err
	}
	go func() {
		defer close(inc.done)
		_ = mgr.Start(mctx)
	}()
	return inc, nil
}

// stopCrashing lets the running incarnation live on (and any later one).
func (s *supervisor) stopCrashing() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calm = true
	if s.current != nil {
		s.current.crashAfter.Store(-1)
	}
}

// resumeCrashing makes later incarnations crash again; the running one is
// killed now so the next one starts with a fresh life.
func (s *supervisor) resumeCrashing() {
	s.mu.Lock()
	s.calm = false
	cur := s.current
	s.mu.Unlock()
	if cur != nil && cur.dead.CompareAndSwap(false, true) {
		cur.crashedBy.Store("kill")
		cur.cancel()
	}
}

func (s *supervisor) crashCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.crashes))
	for k, v := range s.crashes {
		out[k] = v
	}
	return out
}

func ptr[T any](v T) *T { return &v }
