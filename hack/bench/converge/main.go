// Command converge measures how fast the operator takes over N numbers and
// what it costs: it runs the real controllers against a real kube-apiserver
// (envtest) and the Twilio emulator with per-call latency and a per-account
// concurrency cap, then prints time to all-Ready against the floor, Twilio
// calls by kind, 429s, Kubernetes API requests, and the steady-state Twilio
// calls per poll interval.
//
//	go run ./hack/bench/converge -n 1000 -latency 50ms
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/controllers"
	"github.com/loquent/twilio-voice-operator/internal/controlplane"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
	"go.uber.org/zap/zapcore"
)

const (
	accountSID = "AC00000000000000000000000000000001"
	authToken  = "benchToken"
	voiceURL   = "https://voice.example.com" + controllers.VoicePath
)

type options struct {
	n           int
	latency     time.Duration
	concurrency int
	poll        time.Duration
	workers     int
	qps         float64
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 1000, "TwilioPhoneNumbers to converge")
	flag.DurationVar(&o.latency, "latency", 50*time.Millisecond, "emulated Twilio latency per call")
	flag.IntVar(&o.concurrency, "concurrency", 10, "Twilio's per-account concurrency cap (the emulator answers 429 above it) and the account's maxConcurrentRequests")
	flag.DurationVar(&o.poll, "poll", 15*time.Second, "operator poll interval; steady state is measured over 3 intervals")
	flag.IntVar(&o.workers, "workers", 64, "concurrent TwilioPhoneNumber reconciles")
	flag.Float64Var(&o.qps, "kube-api-qps", 500, "operator's Kubernetes client QPS (burst 2×)")
	flag.Parse()
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "converge:", err)
		os.Exit(1)
	}
}

// countingTransport counts Kubernetes API requests by verb.
type countingTransport struct {
	next  http.RoundTripper
	mu    sync.Mutex
	verbs map[string]int
	total atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	verb := r.Method
	if r.URL.Query().Get("watch") == "true" {
		verb = "WATCH"
	}
	c.mu.Lock()
	c.verbs[verb]++
	c.mu.Unlock()
	c.total.Add(1)
	return c.next.RoundTrip(r)
}

func run(o options) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(twiliov1.AddToScheme(scheme))

	env, cfg, err := controlplane.Start(repoRoot(), true)
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()

	sim := twiliosim.New()
	sim.AddAccount(twiliosim.Account{SID: accountSID, AuthToken: authToken})
	for i := range o.n {
		sim.AddNumber(twiliosim.Number{AccountSID: accountSID, PhoneNumber: e164(i), VoiceURL: fmt.Sprintf("https://old.example.com/voice/%d", i)})
	}
	simURL, err := sim.Start("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer func() { _ = sim.Close() }()
	sim.SetLatency(o.latency)
	sim.SetConcurrencyLimit(o.concurrency)

	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "twilio"}, StringData: map[string]string{"authToken": authToken}}
	acct := &twiliov1.TwilioAccount{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "main"},
		Spec: twiliov1.TwilioAccountSpec{AccountSID: accountSID, CredentialsSecretRef: twiliov1.SecretReference{Name: "twilio"},
			APIURL: simURL, MaxConcurrentRequests: int32(o.concurrency)},
	}
	for _, obj := range []client.Object{ns, secret, acct} {
		if err := k8s.Create(ctx, obj); err != nil {
			return err
		}
	}
	// All objects exist before the operator starts, so what is timed is the
	// operator's work alone: account verification included.
	if err := createNumbers(ctx, k8s, ns.Name, o.n); err != nil {
		return err
	}

	mgrCfg := rest.CopyConfig(cfg)
	mgrCfg.QPS, mgrCfg.Burst = float32(o.qps), int(2*o.qps)
	counter := &countingTransport{verbs: map[string]int{}}
	mgrCfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { counter.next = rt; return counter }
	mgr, err := ctrl.NewManager(mgrCfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		return err
	}
	if err := controllers.Setup(ctx, mgr, controllers.Options{VoiceURL: voiceURL, PollInterval: o.poll, ConcurrentReconciles: o.workers}); err != nil {
		return err
	}
	mgrCtx, stopMgr := context.WithCancel(ctx)
	mgrDone := make(chan struct{})
	defer func() { stopMgr(); <-mgrDone }() // before env.Stop: no errors from a vanished API server
	start := time.Now()
	go func() { defer close(mgrDone); _ = mgr.Start(mgrCtx) }()
	if err := waitFor(ctx, 30*time.Minute, func() (bool, error) { return allReady(ctx, k8s, ns.Name, o.n) }); err != nil {
		return err
	}
	converge := time.Since(start)
	k8sConverge, convergeVerbs := counter.total.Load(), counter.snapshot()
	reqs := sim.Requests()
	stats := sim.Stats()

	byKind := map[string]int{}
	tooMany := 0
	for _, r := range reqs {
		byKind[r.Kind]++
		if r.Status == http.StatusTooManyRequests {
			tooMany++
		}
	}
	needed := len(reqs) - tooMany
	floor := time.Duration(float64(needed) * float64(o.latency) / float64(o.concurrency))

	// Steady state: every number polls once per interval (jittered up to +20%).
	sim.ResetRequests()
	k8sSteadyBefore := counter.reset()
	const intervals = 3
	time.Sleep(intervals * o.poll)
	steady := map[string]int{}
	for _, r := range sim.Requests() {
		steady[r.Kind]++
	}
	k8sSteady := counter.total.Load() - k8sSteadyBefore

	fmt.Printf("converge: %d numbers, Twilio latency %s, per-account concurrency %d, %d workers, kube QPS %.0f\n\n",
		o.n, o.latency, o.concurrency, o.workers, o.qps)
	fmt.Printf("%-44s %s\n", "operator start to all Ready", converge.Round(time.Millisecond))
	fmt.Printf("%-44s %s  (%d calls × %s ÷ %d)\n", "floor", floor.Round(time.Millisecond), needed, o.latency, o.concurrency)
	fmt.Printf("%-44s %.2f×  (target ≤ 2×)\n", "time / floor", converge.Seconds()/floor.Seconds())
	fmt.Printf("%-44s %s\n", "Twilio calls by kind", kinds(byKind))
	fmt.Printf("%-44s %d  (emulator max in flight %d; target 0)\n", "429s", tooMany, stats.MaxInFlight)
	fmt.Printf("%-44s %d  (%.1f per number; %s)\n", "Kubernetes API requests while converging", k8sConverge, float64(k8sConverge)/float64(o.n), convergeVerbs)
	fmt.Printf("%-44s %s  (target: ≤ %d list per interval)\n", fmt.Sprintf("steady-state Twilio calls in %d intervals of %s", intervals, o.poll), kinds(steady), int(math.Ceil(float64(o.n)/1000)))
	fmt.Printf("%-44s %d\n", fmt.Sprintf("Kubernetes API requests in %d intervals", intervals), k8sSteady)
	var evs eventsv1.EventList
	if err := k8s.List(ctx, &evs, client.InNamespace(ns.Name)); err != nil {
		return err
	}
	reasons := map[string]int{}
	for _, e := range evs.Items {
		reasons[e.Reason]++
	}
	fmt.Printf("%-44s %s\n", "events by reason", kinds(reasons))
	return nil
}

func createNumbers(ctx context.Context, k8s client.Client, ns string, n int) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			obj := &twiliov1.TwilioPhoneNumber{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("n%05d", i)},
				Spec: twiliov1.TwilioPhoneNumberSpec{AccountRef: twiliov1.LocalObjectReference{Name: "main"}, PhoneNumber: e164(i),
					Agent: &twiliov1.AgentSpec{URL: "ws://agent.agents.svc:8080/media"}},
			}
			if err := k8s.Create(ctx, obj); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func allReady(ctx context.Context, k8s client.Client, ns string, n int) (bool, error) {
	var list twiliov1.TwilioPhoneNumberList
	if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return false, err
	}
	ready := 0
	for i := range list.Items {
		if meta.IsStatusConditionTrue(list.Items[i].Status.Conditions, twiliov1.ConditionReady) {
			ready++
		}
	}
	return ready == n, nil
}

func waitFor(ctx context.Context, limit time.Duration, done func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		ok, err := done()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("not done after %s", limit)
}

func e164(i int) string { return fmt.Sprintf("+1650555%04d", i) }

func kinds(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for _, k := range keys {
		s += fmt.Sprintf("%s %d, ", k, m[k])
	}
	return s[:len(s)-2]
}

func (c *countingTransport) reset() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.verbs = map[string]int{}
	return c.total.Load()
}

func (c *countingTransport) snapshot() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return kinds(c.verbs)
}

// repoRoot finds the repository from where make (the root) or a developer
// (this directory) runs the benchmark.
func repoRoot() string {
	for _, d := range []string{".", "../../.."} {
		if _, err := os.Stat(filepath.Join(d, "config", "crd", "bases")); err == nil {
			return d
		}
	}
	return "."
}
