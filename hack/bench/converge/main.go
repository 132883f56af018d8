// Command converge measures how fast the operator takes over N numbers and
// what it costs: it runs the real controllers against a real kube-apiserver
// (envtest) and the Twilio emulator with per-call latency and a per-account
// concurrency cap, then prints time to all-Ready against the floor, Twilio
// calls by kind, 429s, Kubernetes API requests, and the steady-state Twilio
// calls per poll interval.
//
// With -accounts K the numbers are spread evenly over K emulated Twilio
// accounts, one namespace each (credentials Secret, TwilioAccount, numbers),
// the way a platform runs one tenant per namespace.
//
//	go run ./hack/bench/converge -n 1000 -latency 50ms
//	go run ./hack/bench/converge -n 10000 -accounts 20
package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	eventsv1 "k8s.io/api/events/v1"
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

const voiceURL = "https://voice.example.com" + controllers.VoicePath

// labelWidth aligns the value column of the printed table.
const labelWidth = 50

type options struct {
	n           int
	accounts    int
	latency     time.Duration
	concurrency int
	poll        time.Duration
	workers     int
	qps         float64
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 1000, "TwilioPhoneNumbers to converge")
	flag.IntVar(&o.accounts, "accounts", 1, "Twilio accounts (one namespace each) the numbers are spread evenly over")
	flag.DurationVar(&o.latency, "latency", 50*time.Millisecond, "emulated Twilio latency per call")
	flag.IntVar(&o.concurrency, "concurrency", 10, "Twilio's per-account concurrency cap (the emulator answers 429 above it) and the account's maxConcurrentRequests")
	flag.DurationVar(&o.poll, "poll", 15*time.Second, "operator poll interval; steady state is measured over 3 intervals")
	flag.IntVar(&o.workers, "workers", 64, "concurrent TwilioPhoneNumber reconciles")
	flag.Float64Var(&o.qps, "kube-api-qps", 500, "operator's Kubernetes client QPS (burst 2×)")
	flag.Parse()
	if o.accounts < 1 || o.n < o.accounts {
		fmt.Fprintln(os.Stderr, "converge: need -accounts ≥ 1 and -n ≥ -accounts")
		os.Exit(2)
	}
	logf.SetLogger(zap.New(zap.WriteTo(logOut), zap.Level(zapcore.ErrorLevel)))
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "converge:", err)
		os.Exit(1)
	}
}

// logOut is the operator's log (errors only), silenced at shutdown.
var logOut = &quietWriter{}

type quietWriter struct{ quiet atomic.Bool }

func (w *quietWriter) Write(p []byte) (int, error) {
	if w.quiet.Load() {
		return len(p), nil
	}
	return os.Stderr.Write(p)
}

// countingTransport counts Kubernetes API requests by verb.
type countingTransport struct {
	mu    sync.Mutex
	verbs map[string]int
	total atomic.Int64
}

// wrap returns a transport that counts in c; a rest.Config's WrapTransport
// is called once per client built from it, each with its own next.
func (c *countingTransport) wrap(next http.RoundTripper) http.RoundTripper {
	return countedTransport{next: next, c: c}
}

type countedTransport struct {
	next http.RoundTripper
	c    *countingTransport
}

func (t countedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	verb := r.Method
	if r.URL.Query().Get("watch") == "true" {
		verb = "WATCH"
	}
	t.c.mu.Lock()
	t.c.verbs[verb]++
	t.c.mu.Unlock()
	t.c.total.Add(1)
	return t.next.RoundTrip(r)
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
	// Stopped before env.Stop, so the bench's own watch ends quietly.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()

	accts := fleet(o.n, o.accounts)
	sim := twiliosim.New()
	addToEmulator(sim, accts)
	simURL, err := sim.Start("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer func() { _ = sim.Close() }()
	sim.SetLatency(o.latency)
	sim.SetConcurrencyLimit(o.concurrency) // per account

	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	setupStart := time.Now()
	if err := createAccounts(ctx, k8s, accts, simURL, o.concurrency); err != nil {
		return err
	}
	// All objects exist before the operator starts, so what is timed is the
	// operator's work alone: account verification included.
	if err := createNumbers(ctx, k8s, accts); err != nil {
		return err
	}
	tracker := newReadyTracker(accts)
	if err := tracker.start(watchCtx, cfg, scheme); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "converge: created %d %s and %d numbers in %s; starting the operator\n",
		o.accounts, plural(o.accounts, "account", "accounts"), o.n, time.Since(setupStart).Round(time.Millisecond))

	mgrCfg := rest.CopyConfig(cfg)
	mgrCfg.QPS, mgrCfg.Burst = float32(o.qps), int(2*o.qps)
	counter := &countingTransport{verbs: map[string]int{}}
	mgrCfg.WrapTransport = counter.wrap
	mgr, err := ctrl.NewManager(mgrCfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		return err
	}
	if err := controllers.Setup(ctx, mgr, controllers.Options{VoiceURL: voiceURL, PollInterval: o.poll, ConcurrentReconciles: o.workers, AllowedAPIURLs: []string{simURL}}); err != nil {
		return err
	}
	mgrCtx, stopMgr := context.WithCancel(ctx)
	mgrDone := make(chan struct{})
	// Before env.Stop: no errors from a vanished API server. Reconciles still
	// running when the manager stops fail with "context canceled"; that is
	// the shutdown, not a finding, so the log is silenced first.
	defer func() { logOut.quiet.Store(true); stopMgr(); <-mgrDone }()
	throttleBefore, cpuBefore := sampleThrottle(), sampleCPU()
	start := time.Now()
	go func() { defer close(mgrDone); _ = mgr.Start(mgrCtx) }()
	allAt, err := tracker.wait(ctx, 30*time.Minute)
	if err != nil {
		return err
	}
	converge := allAt.Sub(start)
	k8sConverge, convergeVerbs := counter.total.Load(), counter.snapshot()
	reqs := sim.Requests()
	stats := sim.Stats()
	throttle, cpu := sampleThrottle().since(throttleBefore), sampleCPU().report(cpuBefore)
	acctDone := tracker.accountsDone()
	fmt.Fprintf(os.Stderr, "converge: all Ready after %s; measuring steady state for %d poll intervals\n",
		converge.Round(time.Millisecond), steadyIntervals)

	byKind := map[string]int{}
	tooManyByKind := map[string]int{}
	perAccount := map[string]int{} // calls the operator needed, by account
	needed := 0
	for _, r := range reqs {
		byKind[r.Kind]++
		if r.Status == http.StatusTooManyRequests {
			tooManyByKind[r.Kind]++
		} else {
			perAccount[r.AccountSID]++
			needed++
		}
	}
	busiest := 0
	for _, c := range perAccount {
		busiest = max(busiest, c)
	}
	// The floor. Twilio caps in-flight requests per account (so does the
	// emulator: SetConcurrencyLimit counts by the account in the request
	// path) and every admitted call holds its account's slot for the latency.
	// Account a, needing calls_a calls (429s excluded: its credential check,
	// its list, and a fresh read and an update per number), therefore takes at
	// least calls_a × latency ÷ cap. Accounts do not share a cap and run side
	// by side, so the whole fleet takes at least the slowest account:
	//
	//	floor = max over accounts of calls_a × latency ÷ cap
	//
	// which, with the numbers spread evenly, is ≈ (calls ÷ accounts) ×
	// latency ÷ cap; with one account it is calls × latency ÷ cap as before.
	// It is Twilio's bound only. The operator's own limits are printed on
	// their own rows: its -workers reconciles, each waiting on at most one
	// Twilio call, bound it at calls × latency ÷ workers (which binds once
	// accounts × cap exceeds workers), and its Kubernetes clients' rate
	// limits make requests wait (measured, not estimated: see throttle.go).
	floor := time.Duration(float64(busiest) * float64(o.latency) / float64(o.concurrency))

	// Steady state: every number polls once per interval (jittered up to +20%).
	sim.ResetRequests()
	k8sSteadyBefore := counter.reset()
	time.Sleep(steadyIntervals * o.poll)
	steady := map[string]int{}
	for _, r := range sim.Requests() {
		steady[r.Kind]++
	}
	k8sSteady := counter.total.Load() - k8sSteadyBefore
	// One paged list (1000 per page) per account per interval.
	lists := 0
	for _, a := range accts {
		lists += int(math.Ceil(float64(a.count) / 1000))
	}

	row := func(label, format string, args ...any) {
		fmt.Printf("%-*s %s\n", labelWidth, label, fmt.Sprintf(format, args...))
	}
	spread := ""
	if o.accounts > 1 {
		each := fmt.Sprint(o.n / o.accounts)
		if o.n%o.accounts != 0 {
			each = fmt.Sprintf("%d–%d", o.n/o.accounts, o.n/o.accounts+1)
		}
		spread = fmt.Sprintf(" (%s numbers and a namespace each)", each)
	}
	fmt.Printf("converge: %d numbers, %d %s%s, Twilio latency %s, per-account concurrency %d, %d workers, kube QPS %.0f\n\n",
		o.n, o.accounts, plural(o.accounts, "account", "accounts"), spread, o.latency, o.concurrency, o.workers, o.qps)
	row("operator start to all Ready", "%s", converge.Round(time.Millisecond))
	if o.accounts > 1 {
		done := slices.SortedFunc(maps.Values(acctDone), time.Time.Compare)
		row("each account's numbers all Ready", "first %s, median %s, last %s",
			done[0].Sub(start).Round(time.Millisecond), done[len(done)/2].Sub(start).Round(time.Millisecond),
			done[len(done)-1].Sub(start).Round(time.Millisecond))
		mean, most := overlap(accts, reqs, acctDone, converge)
		row("accounts converging at once", "%.1f mean, %d at most  (from an account's first number call to its last number Ready)", mean, most)
	}
	if o.accounts == 1 {
		row("floor", "%s  (%d calls × %s ÷ %d)", floor.Round(time.Millisecond), needed, o.latency, o.concurrency)
	} else {
		row("floor", "%s  (busiest account's %d calls × %s ÷ %d; %d calls in all)",
			floor.Round(time.Millisecond), busiest, o.latency, o.concurrency, needed)
	}
	row("time / floor", "%.2f×  (target ≤ 2×)", converge.Seconds()/floor.Seconds())
	row("bound from the operator's workers", "%s  (%d calls × %s ÷ %d workers)",
		time.Duration(float64(needed)*float64(o.latency)/float64(o.workers)).Round(time.Millisecond), needed, o.latency, o.workers)
	row("Kubernetes client-side throttling", "%s", throttle)
	row("CPU while converging", "%s", cpu)
	row("Twilio calls by kind", "%s", kinds(byKind))
	if stats.TooMany == 0 {
		row("429s", "0  (emulator max in flight %d per account; target 0)", stats.MaxInFlight)
	} else {
		row("429s", "%d  (%s; emulator max in flight %d per account; target 0)", stats.TooMany, kinds(tooManyByKind), stats.MaxInFlight)
	}
	row("Kubernetes API requests while converging", "%d  (%.1f per number; %s)", k8sConverge, float64(k8sConverge)/float64(o.n), convergeVerbs)
	row(fmt.Sprintf("steady-state Twilio calls in %d intervals of %s", steadyIntervals, o.poll), "%s  (target: ≤ %d list per interval)", kinds(steady), lists)
	row(fmt.Sprintf("Kubernetes API requests in %d intervals", steadyIntervals), "%d", k8sSteady)
	var evs eventsv1.EventList
	if err := k8s.List(ctx, &evs); err != nil {
		return err
	}
	ours := map[string]bool{}
	for _, a := range accts {
		ours[a.namespace] = true
	}
	reasons := map[string]int{}
	for _, e := range evs.Items {
		if ours[e.Namespace] {
			reasons[e.Reason]++
		}
	}
	row("events by reason", "%s", kinds(reasons))
	return nil
}

// steadyIntervals is how many poll intervals the steady state is measured over.
const steadyIntervals = 3

// overlap says how many accounts were being converged at once: account a
// from the arrival of its first number read or update to when its last
// number became Ready. It returns the mean over the convergence time and the
// most at any moment.
func overlap(accts []benchAccount, reqs []twiliosim.Request, done map[string]time.Time, converge time.Duration) (float64, int) {
	first := map[string]time.Time{}
	for _, r := range reqs {
		if r.Kind != twiliosim.KindFetchNumber && r.Kind != twiliosim.KindUpdateNumber {
			continue
		}
		if t, ok := first[r.AccountSID]; !ok || r.Time.Before(t) {
			first[r.AccountSID] = r.Time
		}
	}
	type edge struct {
		at time.Time
		d  int
	}
	var edges []edge
	var busy time.Duration
	for _, a := range accts {
		from, ok1 := first[a.sid]
		to, ok2 := done[a.namespace]
		if !ok1 || !ok2 || to.Before(from) {
			continue
		}
		busy += to.Sub(from)
		edges = append(edges, edge{from, 1}, edge{to, -1})
	}
	slices.SortFunc(edges, func(x, y edge) int {
		if c := x.at.Compare(y.at); c != 0 {
			return c
		}
		return x.d - y.d // an end before a start at the same instant
	})
	now, most := 0, 0
	for _, e := range edges {
		now += e.d
		most = max(most, now)
	}
	return busy.Seconds() / converge.Seconds(), most
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

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
