// Package durability is the fault test of the operator's core promise: no
// number's original routing is ever lost or changed. It runs the real
// controllers against a real kube-apiserver (envtest) and the Twilio emulator
// with the faults production brings: a manager whose watch runs behind, a
// manager killed right after any one of its writes (Kubernetes or Twilio),
// Twilio errors, resets, 429s and writes applied with their answer lost, quick
// Disabled→Enabled flips during hand-backs, status wipes and Console edits.
//
// DURABILITY_NUMBERS and DURABILITY_SEEDS (comma-separated) scale it up; make
// bench-durability runs the larger size.
package durability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/controllers"
	"github.com/loquent/twilio-voice-operator/internal/controlplane"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

const (
	voiceURL   = "https://voice.example.com" + controllers.VoicePath
	authToken  = "durabilityToken"
	watchLag   = 500 * time.Millisecond
	pollPeriod = 2 * time.Second
)

// guardKey is the operator's persistent key, the same for every incarnation.
var guardKey = []byte("durability-guard-key-0123456789ab")

var (
	scheme  = runtime.NewScheme()
	restCfg *rest.Config
	k8s     client.Client
)

func TestMain(m *testing.M) {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(os.Getenv("TEST_VERBOSE") != ""), zap.Level(zapLevel())))
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(twiliov1.AddToScheme(scheme))
	env, cfg, err := controlplane.Start("../..", true)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	restCfg = cfg
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

// original is what a number had before the operator, and what it must have
// after every object is gone.
type original struct {
	e164, sid    string
	routing      twiliosim.Number
	detachTrunk  bool // spec.allowTrunkDetach
	leaveOnTrunk bool // on a trunk without allowTrunkDetach: never touched
}

// The mix of original routings the issue measured, with SMS routings (a URL
// with GET and a fallback, or an SMS application) on some of them.
func shape(i int, n *twiliosim.Number) (allowDetach bool) {
	switch i % 3 {
	case 0:
		n.SmsURL, n.SmsMethod = fmt.Sprintf("https://old.example.com/sms/%d", i), "GET"
		n.SmsFallbackURL = "https://fallback.example.com/sms"
	case 1:
		n.SmsApplicationSID = fmt.Sprintf("AP%032x", 0x5000+i)
	}
	switch i % 7 {
	case 0:
		n.VoiceURL, n.VoiceMethod = fmt.Sprintf("https://old.example.com/voice/%d", i), "POST"
	case 1:
		n.VoiceURL, n.VoiceMethod = fmt.Sprintf("https://old.example.com/get/%d", i), "GET"
	case 2: // no URL at all
	case 3:
		n.VoiceApplicationSID = fmt.Sprintf("AP%032x", i)
		n.VoiceURL = fmt.Sprintf("https://ignored.example.com/%d", i)
	case 4:
		n.VoiceURL = fmt.Sprintf("https://old.example.com/voice/%d", i)
		n.VoiceFallbackURL, n.VoiceFallbackMethod = "https://fallback.example.com/voice", "GET"
		n.StatusCallback, n.StatusCallbackMethod = "https://status.example.com/cb", "POST"
	case 5:
		n.TrunkSID = fmt.Sprintf("TK%032x", i)
		n.VoiceURL = fmt.Sprintf("https://old.example.com/trunked/%d", i)
		return true
	case 6:
		n.TrunkSID = fmt.Sprintf("TK%032x", i) // no allowTrunkDetach: left alone
	}
	return false
}

func TestNoOriginalLostUnderFaults(t *testing.T) {
	numbers := envInt("DURABILITY_NUMBERS", 200)
	for _, seed := range envSeeds("DURABILITY_SEEDS", []uint64{1, 2}) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runScenario(t, seed, numbers)
		})
	}
}

// newAccount starts an emulator with one account and declares it in a new
// namespace (prefix), with a per-account budget when budget > 0. The emulator
// is closed when the test ends.
func newAccount(t *testing.T, accountSID, prefix string, budget int32) (*twiliosim.Server, *corev1.Namespace, string) {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	sim := twiliosim.New()
	sim.AddAccount(twiliosim.Account{SID: accountSID, AuthToken: authToken, FriendlyName: prefix})
	simURL, err := sim.Start("127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = sim.Close() })
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}
	g.Expect(k8s.Create(ctx, ns)).To(Succeed())
	g.Expect(k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "creds"},
		StringData: map[string]string{controllers.SecretKeyAuthToken: authToken},
	})).To(Succeed())
	g.Expect(k8s.Create(ctx, &twiliov1.TwilioAccount{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "main"},
		Spec: twiliov1.TwilioAccountSpec{AccountSID: accountSID, CredentialsSecretRef: twiliov1.SecretReference{Name: "creds"},
			APIURL: simURL, MaxConcurrentRequests: budget},
	})).To(Succeed())
	return sim, ns, simURL
}

// twilioFaults turns the injected Twilio faults on (about a quarter of the
// requests fail: 500s, resets, and writes applied with their answer lost)
// or off.
func twilioFaults(sim *twiliosim.Server, on bool) {
	errs, resets, lost := 0.08, 0.05, 0.07
	if !on {
		errs, resets, lost = 0, 0, 0
	}
	sim.SetErrorRate(errs)
	sim.SetResetRate(resets)
	sim.SetLostAnswerRate(lost)
}

func runScenario(t *testing.T, seed uint64, total int) {
	g := NewWithT(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rng := rand.New(rand.NewPCG(seed, seed*7919))
	started := time.Now()

	sim, ns, simURL := newAccount(t, fmt.Sprintf("AC%032x", 0xd0+seed), "durability-", 8)
	accountSID := fmt.Sprintf("AC%032x", 0xd0+seed)

	// The numbers, each with its original routing.
	origs := make([]original, total)
	for i := range origs {
		n := twiliosim.Number{AccountSID: accountSID, PhoneNumber: fmt.Sprintf("+1628%03d%04d", seed%1000, i)}
		detach := shape(i, &n)
		stored := sim.AddNumber(n)
		origs[i] = original{e164: n.PhoneNumber, sid: stored.SID, routing: stored, detachTrunk: detach,
			leaveOnTrunk: stored.TrunkSID != "" && !detach}
	}

	// Twilio misbehaves: about a quarter of requests fail one way or another.
	sim.SetConcurrencyLimit(4) // below the account's budget of 8: 429s
	sim.SetLatency(2 * time.Millisecond)
	twilioFaults(sim, true)

	sup := &supervisor{
		// Its own generator: the supervisor draws from another goroutine.
		cfg: restCfg, lag: watchLag, rng: rand.New(rand.NewPCG(seed, 2)), maxLife: 60,
		opts: controllers.Options{VoiceURL: voiceURL, PollInterval: pollPeriod, ConcurrentReconciles: 8, GuardKey: guardKey, AllowedAPIURLs: []string{simURL}},
	}
	g.Expect(sup.start(ctx)).To(Succeed())

	for i, o := range origs {
		obj := &twiliov1.TwilioPhoneNumber{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: fmt.Sprintf("n%04d", i)},
			Spec: twiliov1.TwilioPhoneNumberSpec{
				AccountRef: twiliov1.LocalObjectReference{Name: "main"}, PhoneNumber: o.e164,
				Agent:            &twiliov1.AgentSpec{URL: "ws://agent.agents.svc:8080/media"},
				AllowTrunkDetach: o.detachTrunk,
				Messaging:        messagingFor(i),
			},
		}
		g.Expect(k8s.Create(ctx, obj)).To(Succeed())
	}

	// While it converges under crashes: quick flips, status wipes, Console edits.
	flipped := map[int]bool{}
	wipes, edits, flips := 0, 0, 0
	deadline := time.Now().Add(3 * time.Minute)
	for (flips < total/4 || wipes < 20 || edits < 20) && time.Now().Before(deadline) {
		i := rng.IntN(total)
		o := origs[i]
		name := fmt.Sprintf("n%04d", i)
		if o.leaveOnTrunk {
			continue
		}
		obj, ok := guardedOnServer(ctx, ns.Name, name)
		if !ok {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		switch {
		case flips < total/4 && !flipped[i]:
			// Disabled, and Enabled again while the hand-back is under way.
			if setRouting(ctx, ns.Name, name, twiliov1.VoiceRoutingDisabled) == nil {
				time.Sleep(time.Duration(rng.IntN(1200)) * time.Millisecond)
				g.Expect(retrySetRouting(ctx, ns.Name, name, twiliov1.VoiceRoutingEnabled)).To(Succeed())
				flipped[i] = true
				flips++
			}
		case wipes < 20:
			obj.Status = twiliov1.TwilioPhoneNumberStatus{}
			if k8s.Status().Update(ctx, obj) == nil {
				wipes++
			}
		case edits < 20 && !flipped[i]:
			// A Console edit of a number the operator has taken over: drift,
			// never a new original.
			sim.UpdateNumber(o.sid, func(n *twiliosim.Number) { n.VoiceURL = "https://console-edit.example.com/voice" })
			edits++
		}
	}

	// Calm: no more crashes or Twilio faults; everything converges.
	sup.stopCrashing()
	twilioFaults(sim, false)
	g.Eventually(func(g Gomega) {
		var list twiliov1.TwilioPhoneNumberList
		g.Expect(k8s.List(ctx, &list, client.InNamespace(ns.Name))).To(Succeed())
		g.Expect(list.Items).To(HaveLen(total))
		for i := range list.Items {
			obj := &list.Items[i]
			// Settled: taken over, left on its trunk, or (a lost original,
			// counted below) routed to us with nothing saved.
			want := []string{twiliov1.ReasonConfigured, twiliov1.ReasonOriginalUnknown}
			if origs[index(obj.Name)].leaveOnTrunk {
				want = []string{twiliov1.ReasonTrunkAttached}
			}
			c := meta.FindStatusCondition(obj.Status.Conditions, twiliov1.ConditionReady)
			g.Expect(c).NotTo(BeNil(), obj.Name)
			g.Expect(want).To(ContainElement(c.Reason), "%s: %s", obj.Name, c.Message)
		}
	}, 3*time.Minute, 500*time.Millisecond).Should(Succeed())

	// Hand everything back, crashing again, then calm to finish.
	sup.resumeCrashing()
	twilioFaults(sim, true)
	g.Expect(k8s.DeleteAllOf(ctx, &twiliov1.TwilioPhoneNumber{}, client.InNamespace(ns.Name))).To(Succeed())
	time.Sleep(5 * time.Second)
	sup.stopCrashing()
	twilioFaults(sim, false)
	g.Eventually(func(g Gomega) {
		var list twiliov1.TwilioPhoneNumberList
		g.Expect(k8s.List(ctx, &list, client.InNamespace(ns.Name))).To(Succeed())
		g.Expect(list.Items).To(BeEmpty())
	}, 3*time.Minute, 500*time.Millisecond).Should(Succeed())

	// Every number has exactly its original routing again.
	lost, changed, trunkTouched := 0, 0, 0
	for _, o := range origs {
		now, ok := sim.Number(o.sid)
		g.Expect(ok).To(BeTrue())
		if routing(now) != routing(o.routing) {
			if now.VoiceURL == voiceURL {
				lost++
			} else {
				changed++
			}
			t.Errorf("%s: routing %+v, want the original %+v", o.e164, routing(now), routing(o.routing))
		}
	}
	updates := map[string]int{}
	stats := map[string]int{}
	for _, r := range sim.Requests() {
		stats[r.Kind]++
		if r.AnswerLost {
			stats["answers lost"]++
		}
		if r.Status == 0 {
			stats["resets"]++
		}
		if r.Status >= 500 {
			stats["5xx"]++
		}
		if r.Kind == twiliosim.KindUpdateNumber && r.Status < 300 && r.Status != 0 {
			updates[r.NumberSID]++
		}
	}
	for _, o := range origs {
		if o.leaveOnTrunk && updates[o.sid] > 0 {
			trunkTouched++
			t.Errorf("%s is on a trunk without allowTrunkDetach and was written %d times", o.e164, updates[o.sid])
		}
	}
	cancel()
	<-sup.finished
	crashes := sup.crashCounts()
	t.Logf("seed %d: %d numbers in %s; crashes: %d after a Kubernetes write, %d after a Twilio write, %d kills; "+
		"%d flips, %d status wipes, %d Console edits; Twilio: %d requests, %d 429, %d 5xx, %d resets, %d answers lost; "+
		"originals lost %d, changed %d, trunk numbers touched %d",
		seed, total, time.Since(started).Round(time.Second), crashes[afterKubeWrite], crashes[afterTwilioWrite], crashes["kill"],
		flips, wipes, edits, len(sim.Requests()), sim.Stats().TooMany, stats["5xx"], stats["resets"], stats["answers lost"],
		lost, changed, trunkTouched)
	g.Expect(crashes[afterKubeWrite]).To(BeNumerically(">", 0), "the run crashed the manager after Kubernetes writes")
	g.Expect(crashes[afterTwilioWrite]).To(BeNumerically(">", 0), "the run crashed the manager after Twilio writes")
	g.Expect(flips).To(BeNumerically(">", 0))
}

// messagingFor turns SMS routing on for two numbers in five.
func messagingFor(i int) twiliov1.Messaging {
	if i%5 < 2 {
		return twiliov1.MessagingEnabled
	}
	return twiliov1.MessagingDisabled
}

type routingTuple struct {
	url, method, fallback, fallbackMethod, status, statusMethod, app, trunk string
	sms, smsMethod, smsFallback, smsFallbackMethod, smsApp                  string
}

func routing(n twiliosim.Number) routingTuple {
	return routingTuple{n.VoiceURL, n.VoiceMethod, n.VoiceFallbackURL, n.VoiceFallbackMethod,
		n.StatusCallback, n.StatusCallbackMethod, n.VoiceApplicationSID, n.TrunkSID,
		n.SmsURL, n.SmsMethod, n.SmsFallbackURL, n.SmsFallbackMethod, n.SmsApplicationSID}
}

// guardedOnServer returns the object when the API server holds its guard and
// it reports Configured: the operator has taken the number over.
func guardedOnServer(ctx context.Context, ns, name string) (*twiliov1.TwilioPhoneNumber, bool) {
	obj := &twiliov1.TwilioPhoneNumber{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
		return nil, false
	}
	c := meta.FindStatusCondition(obj.Status.Conditions, twiliov1.ConditionReady)
	_, annotated := obj.Annotations[twiliov1.AnnotationSavedRouting]
	return obj, annotated && c != nil && c.Reason == twiliov1.ReasonConfigured && obj.Spec.VoiceRouting != twiliov1.VoiceRoutingDisabled
}

func setRouting(ctx context.Context, ns, name string, r twiliov1.VoiceRouting) error {
	obj := &twiliov1.TwilioPhoneNumber{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
		return err
	}
	base := obj.DeepCopy()
	obj.Spec.VoiceRouting = r
	return k8s.Patch(ctx, obj, client.MergeFrom(base))
}

func retrySetRouting(ctx context.Context, ns, name string, r twiliov1.VoiceRouting) error {
	var err error
	for range 20 {
		if err = setRouting(ctx, ns, name, r); err == nil || !apierrors.IsConflict(err) {
			return err
		}
	}
	return err
}

func index(name string) int {
	i, _ := strconv.Atoi(strings.TrimPrefix(name, "n"))
	return i
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envSeeds(name string, def []uint64) []uint64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []uint64
	for _, f := range strings.Split(v, ",") {
		if s, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// zapLevel keeps the manager's logs quiet unless TEST_VERBOSE is set: the
// injected faults make it log errors by design.
func zapLevel() zapcore.Level {
	if os.Getenv("TEST_VERBOSE") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.DPanicLevel
}

// retrySetMessaging sets spec.messaging with a merge patch.
func retrySetMessaging(ctx context.Context, ns, name string, m twiliov1.Messaging) error {
	obj := &twiliov1.TwilioPhoneNumber{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
		return err
	}
	base := obj.DeepCopy()
	obj.Spec.Messaging = m
	return k8s.Patch(ctx, obj, client.MergeFrom(base))
}
