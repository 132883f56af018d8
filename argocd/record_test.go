package argocd

// TestFixturesFromRealReconciles drives every state the health checks and
// actions distinguish with the real operator: a kube-apiserver and etcd
// (envtest), the Twilio emulator over HTTP, and controllers.Setup in
// ctrl.Managers, as controllers/suite_test.go does. It captures each object
// as the API server returns it at the moment it reaches its state.
//
//   RECORD_FIXTURES=1 go test -count=1 -run TestFixturesFromRealReconciles ./argocd/
//
// rewrites every testdata file under resource_customizations/ from those
// objects. Without RECORD_FIXTURES it checks instead that each live object's
// conditions (type, status, reason, observedGeneration relative to
// metadata.generation) and status.observedGeneration match its checked-in
// fixture, that the testdata folders hold exactly the recorded files, and
// that each live object gets the health its health_test.yaml expects: the
// fixtures cannot drift from what the operator writes.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/controllers"
	"github.com/loquent/twilio-voice-operator/internal/controlplane"
	"github.com/loquent/twilio-voice-operator/internal/egress"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

const recordEnv = "RECORD_FIXTURES"

// The recorded world. Everything that reaches a fixture is fixed here, so
// that recording twice writes the same files.
const (
	fxSIDMain      = "AC5e1f0000000000000000000000000001"
	fxSIDSlow      = "AC5e1f0000000000000000000000000002"
	fxSIDRejected  = "AC5e1f0000000000000000000000000003"
	fxSIDContended = "AC5e1f0000000000000000000000000004"
	fxToken        = "fixtureToken0123456789"
	fxVoiceURL     = "https://voice.example.com/twilio/voice"
	// fxUnreachableVoiceURL is the public voice URL of the install whose
	// preflight fails: nothing listens on port 1.
	fxUnreachableVoiceURL = "http://127.0.0.1:1/twilio/voice"
	fxOriginal            = "https://old-platform.example.com/voice"
	fxAgent               = "ws://support-agent.agents.svc:8080/media"
	// fxEmulatorURL stands for the emulator's address (a random loopback
	// port) in the fixtures.
	fxEmulatorURL = "https://twilio-emulator.example"

	fxCreated     = "2026-03-02T10:14:58Z"
	fxTransition  = "2026-03-02T10:15:00Z"
	fxDeleted     = "2026-03-02T10:30:00Z"
	fxPoll        = 2 * time.Second
	fxWait        = 60 * time.Second
	fxQuiet       = 1500 * time.Millisecond
	fxTick        = 50 * time.Millisecond
	nsVoice       = "voice"
	nsPreflight   = "voice-preflight" // reconciled by the install with the preflight on
	nsBilling     = "billing"         // not allowed to share account SIDs with voice*
	pnPrefix      = "PN5e1f000000000000000000000000"
	numberPrefix  = "+1415555"
	secretMain    = "twilio-credentials"
	auditFinalize = "backup.example.com/audit"
)

var fxGuardKey = []byte("fixture-guard-key-0123456789abcdef")

// A fixture is one recorded object and the files it is written to.
type fixture struct {
	files   []string // relative to argocd/
	comment string
	obj     *unstructured.Unstructured // normalised
}

type recorder struct {
	t        *testing.T
	k8s      client.Client
	emulator *twiliosim.Server
	simURL   string

	mu       sync.Mutex
	fixtures []fixture
}

func TestFixturesFromRealReconciles(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver and etcd")
	}
	r := startRecorder(t)
	t.Run("scenarios", func(t *testing.T) {
		// All at once, whatever -parallel says: they mostly wait.
		var wg sync.WaitGroup
		for _, s := range scenarios {
			wg.Go(func() { t.Run(s.name, func(t *testing.T) { s.run(t, r) }) })
		}
		wg.Wait()
	})
	if t.Failed() {
		return
	}
	// Accounts last: their counts of managed numbers have settled.
	r.recordAccounts(t)
	if os.Getenv(recordEnv) == "1" {
		r.write(t)
		return
	}
	r.check(t)
}

func startRecorder(t *testing.T) *recorder {
	t.Helper()
	logs := io.Discard
	if os.Getenv("TEST_VERBOSE") != "" {
		logs = os.Stderr
	}
	logf.SetLogger(zap.New(zap.WriteTo(logs), zap.UseDevMode(true)))
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(twiliov1.AddToScheme(scheme))

	env, cfg, err := controlplane.Start("..", true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })

	emulator := twiliosim.New()
	for _, sid := range []string{fxSIDMain, fxSIDSlow, fxSIDRejected, fxSIDContended} {
		emulator.AddAccount(twiliosim.Account{SID: sid, AuthToken: fxToken, FriendlyName: "Acme Voice"})
	}
	simURL, err := emulator.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emulator.Close() })
	addNumbers(emulator)
	// Twilio refusing or failing, for good, where a scenario needs it.
	emulator.FailNext(func(q twiliosim.Request) bool {
		return q.Kind == twiliosim.KindFetchAccount && q.AccountSID == fxSIDSlow
	}, twiliosim.Fault{Status: 503}, 1_000_000)
	emulator.FailNext(func(q twiliosim.Request) bool {
		return q.Kind == twiliosim.KindFetchAccount && q.AccountSID == fxSIDRejected
	}, twiliosim.Fault{Status: 403, Code: 20403, Message: "Account suspended by Twilio"}, 1_000_000)
	for e164, fault := range map[string]twiliosim.Fault{
		number(14): {Status: 500},
		number(15): {Status: 429, Code: 20429, Message: "Too Many Requests"},
		number(16): {Status: 400, Code: 21402, Message: "Voice URL is not valid"},
	} {
		sid := pnOf(e164)
		emulator.FailNext(func(q twiliosim.Request) bool {
			return q.Kind == twiliosim.KindUpdateNumber && q.NumberSID == sid
		}, fault, 1_000_000)
	}

	// A Messaging Service that overrides number 23's SMS routing; numbers
	// 27 and 28 on sale.
	emulator.AddMessagingService(twiliosim.MessagingService{AccountSID: fxSIDMain, FriendlyName: "Support sender pool",
		SID: "MG5e1f0000000000000000000000000001", InboundRequestURL: "https://old-platform.example.com/service", NumberSIDs: []string{pnOf(number(23))}})
	for _, i := range []int{27, 28} {
		emulator.AddAvailable(twiliosim.AvailableNumber{PhoneNumber: number(i)})
	}

	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{nsVoice, nsPreflight, nsBilling} {
		if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	// Two installs, as two clusters would have: the main one, and one whose
	// public voice path is unreachable (its preflight fails).
	stopMain := startInstall(t, ctx, cfg, scheme, []string{nsVoice, nsBilling}, controllers.Options{
		VoiceURL: fxVoiceURL, AllowedAPIURLs: []string{simURL}, SharedSIDNamespaces: []string{"voice*"},
	})
	stopPreflight := startInstall(t, ctx, cfg, scheme, []string{nsPreflight}, controllers.Options{
		VoiceURL: fxUnreachableVoiceURL, AllowedAPIURLs: []string{simURL}, Preflight: true,
	})
	t.Cleanup(func() { cancel(); stopMain(); stopPreflight() })
	return &recorder{t: t, k8s: k8s, emulator: emulator, simURL: simURL}
}

func startInstall(t *testing.T, ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, namespaces []string, o controllers.Options) (wait func()) {
	t.Helper()
	nsCache := map[string]cache.Config{}
	for _, ns := range namespaces {
		nsCache[ns] = cache.Config{}
	}
	skip := true
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:     scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Cache:      cache.Options{DefaultNamespaces: nsCache},
		Controller: config.Controller{SkipNameValidation: &skip},
		// Nothing to drain when the test ends.
		GracefulShutdownTimeout: ptrTo(time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	policy, err := egress.New(egress.Options{OwnAddrs: []netip.Addr{}})
	if err != nil {
		t.Fatal(err)
	}
	o.PollInterval, o.ConcurrentReconciles, o.AgentPolicy, o.GuardKey = fxPoll, 4, policy, fxGuardKey
	if err := controllers.Setup(ctx, mgr, o); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager stopped:", err)
		}
	}()
	return func() { <-done }
}

// number returns the recorded world's phone number i.
func number(i int) string { return fmt.Sprintf("%s%04d", numberPrefix, 100+i) }

func pnOf(e164 string) string { return pnPrefix + strings.TrimPrefix(e164, numberPrefix) }

// addNumbers puts every number of the scenarios into the emulator before
// any account counts them.
func addNumbers(e *twiliosim.Server) {
	add := func(i int, account string, mutate func(*twiliosim.Number)) {
		n := twiliosim.Number{SID: pnOf(number(i)), AccountSID: account, PhoneNumber: number(i),
			VoiceURL: fxOriginal, StatusCallback: "https://old-platform.example.com/status"}
		if mutate != nil {
			mutate(&n)
		}
		e.AddNumber(n)
	}
	for i := range 29 {
		switch i {
		case 22, 23, 24:
			add(i, fxSIDMain, func(n *twiliosim.Number) { n.SmsURL = "https://old-platform.example.com/sms" })
		case 25, 26, 27, 28: // bought, or asked to be bought, by the purchase scenarios
		case 1: // routes to the webhook server already
			add(i, fxSIDMain, func(n *twiliosim.Number) { n.VoiceURL, n.StatusCallback = fxVoiceURL, "" })
		case 4:
			add(i, fxSIDMain, func(n *twiliosim.Number) { n.TrunkSID = "TK5e1f0000000000000000000000000001" })
		case 7: // routed by another install of the operator
			add(i, fxSIDMain, func(n *twiliosim.Number) {
				n.VoiceURL = controllers.InstallVoiceURL("https://other-cluster.example.com", "b2")
			})
		case 11:
			add(i, fxSIDSlow, nil)
		case 13: // not in any account
		default:
			add(i, fxSIDMain, nil)
		}
	}
}

type scenario struct {
	name string
	run  func(t *testing.T, r *recorder)
}

var scenarios = []scenario{
	{"configured", func(t *testing.T, r *recorder) {
		created := r.createNumber(t, nsVoice, "support-line", "acme", number(0), nil)
		r.record(t, created, "A TwilioPhoneNumber as the API server returns it on create, before the operator has seen it.",
			numberDir+"/testdata/number-new.yaml")
		n := r.waitReady(t, nsVoice, "support-line", "True", twiliov1.ReasonConfigured)
		r.record(t, n, "Taken over: the original is saved and calls route to the webhook server.",
			numberDir+"/testdata/number-configured.yaml", numberDir+"/actions/testdata/number-configured.yaml")
		r.recordLegacy(t, n, numberDir+"/testdata/legacy-number-configured.yaml")
		r.recordEdited(t, n, "The object after the restore action: voiceRouting Disabled.",
			numberDir+"/actions/testdata/number-configured-restored.yaml", "Disabled")

		// Another object for the same number, created later: it loses.
		r.createNumber(t, nsVoice, "support-line-copy", "acme", number(0), nil)
		n = r.waitReady(t, nsVoice, "support-line-copy", "False", twiliov1.ReasonConflict)
		r.record(t, n, "A second TwilioPhoneNumber for a number that an older one manages: it makes no Twilio changes.",
			numberDir+"/testdata/number-conflict.yaml", numberDir+"/actions/testdata/number-conflict.yaml")
		r.recordLegacy(t, n, numberDir+"/testdata/legacy-number-conflict.yaml")
	}},
	{"original-unknown", func(t *testing.T, r *recorder) {
		r.createNumber(t, nsVoice, "known-line", "acme", number(1), nil)
		n := r.waitReady(t, nsVoice, "known-line", "True", twiliov1.ReasonOriginalUnknown)
		r.record(t, n, "Already routed to the webhook server when first seen, with no original saved anywhere.",
			numberDir+"/testdata/number-original-unknown.yaml")
	}},
	{"disabled", func(t *testing.T, r *recorder) {
		r.createNumber(t, nsVoice, "sales-line", "acme", number(2), nil)
		r.waitReady(t, nsVoice, "sales-line", "True", twiliov1.ReasonConfigured)
		r.patch(t, nsVoice, "sales-line", numberKind, map[string]any{"spec": map[string]any{"voiceRouting": "Disabled"}})
		n := r.waitReady(t, nsVoice, "sales-line", "True", twiliov1.ReasonRoutingDisabled)
		r.record(t, n, "voiceRouting set to Disabled after a take-over: the original routing is back and the operator holds nothing.",
			numberDir+"/testdata/number-disabled.yaml", numberDir+"/actions/testdata/number-disabled.yaml")
		r.recordLegacy(t, n, numberDir+"/testdata/legacy-number-disabled.yaml")
		r.recordEdited(t, n, "The object after the configure action: voiceRouting Enabled.",
			numberDir+"/actions/testdata/number-disabled-configured.yaml", "Enabled")
	}},
	{"disabled-from-the-start", func(t *testing.T, r *recorder) {
		r.createNumber(t, nsVoice, "quiet-line", "acme", number(3), func(n *twiliov1.TwilioPhoneNumber) {
			n.Spec.VoiceRouting = twiliov1.VoiceRoutingDisabled
		})
		n := r.waitReady(t, nsVoice, "quiet-line", "True", twiliov1.ReasonRoutingDisabled)
		r.record(t, n, "Created with voiceRouting Disabled: never taken over, left as it is.",
			numberDir+"/testdata/number-disabled-never-taken-over.yaml")
	}},
	{"not-found", func(t *testing.T, r *recorder) {
		r.createNumber(t, nsVoice, "missing-line", "acme", number(13), nil)
		n := r.waitReady(t, nsVoice, "missing-line", "False", twiliov1.ReasonNumberNotFound)
		r.record(t, n, "The number is not in the Twilio account.", numberDir+"/testdata/number-not-found.yaml")
	}},
	{"trunk-attached", func(t *testing.T, r *recorder) {
		r.createNumber(t, nsVoice, "trunk-line", "acme", number(4), nil)
		n := r.waitReady(t, nsVoice, "trunk-line", "False", twiliov1.ReasonTrunkAttached)
		r.record(t, n, "The number is on a SIP trunk and allowTrunkDetach is false.", numberDir+"/testdata/number-trunk-attached.yaml")
	}},
	{"no-agent", func(t *testing.T, r *recorder) {
		r.createNumber(t, nsVoice, "agentless-line", "acme", number(5), func(n *twiliov1.TwilioPhoneNumber) { n.Spec.Agent = nil })
		n := r.waitReady(t, nsVoice, "agentless-line", "False", twiliov1.ReasonNoAgent)
		r.record(t, n, "voiceRouting Enabled without spec.agent: nothing is taken over.", numberDir+"/testdata/number-no-agent.yaml")
	}},
	{"agent-not-allowed", func(t *testing.T, r *recorder) {
		r.createNumber(t, nsVoice, "loopback-line", "acme", number(6), func(n *twiliov1.TwilioPhoneNumber) {
			n.Spec.Agent = &twiliov1.AgentSpec{URL: "ws://127.0.0.1:9000/media"}
		})
		n := r.waitReady(t, nsVoice, "loopback-line", "False", twiliov1.ReasonAgentNotAllowed)
		r.record(t, n, "spec.agent.url is refused by the agent egress policy (loopback).", numberDir+"/testdata/number-agent-not-allowed.yaml")
	}},
	{"contested", func(t *testing.T, r *recorder) {
		r.createNumber(t, nsVoice, "shared-line", "acme", number(7), nil)
		n := r.waitReady(t, nsVoice, "shared-line", "False", twiliov1.ReasonContested)
		r.record(t, n, "The number routes to another install of the operator: not taken over.", numberDir+"/testdata/number-contested.yaml")
	}},
	{"takeover-paced", func(t *testing.T, r *recorder) {
		r.createAccount(t, nsVoice, "paced", secretMain, fxSIDMain, func(a *twiliov1.TwilioAccount) {
			a.Spec.Takeover = &twiliov1.TakeoverPacing{Burst: ptrTo(int32(1)), PerMinute: ptrTo(int32(1))}
		})
		r.createNumber(t, nsVoice, "paced-first", "paced", number(8), nil)
		r.waitReady(t, nsVoice, "paced-first", "True", twiliov1.ReasonConfigured)
		r.createNumber(t, nsVoice, "paced-second", "paced", number(9), nil)
		n := r.waitReady(t, nsVoice, "paced-second", "False", twiliov1.ReasonTakeoverPaced)
		r.record(t, n, "Waiting for its turn under the account's take-over pace (one at once, then one a minute).",
			numberDir+"/testdata/number-takeover-paced.yaml")
	}},
	{"webhook-unreachable", func(t *testing.T, r *recorder) {
		r.createSecret(t, nsPreflight, secretMain, map[string]string{controllers.SecretKeyAuthToken: fxToken})
		r.createAccount(t, nsPreflight, "acme", secretMain, fxSIDMain, nil)
		r.createNumber(t, nsPreflight, "support-line", "acme", number(10), nil)
		n := r.waitReady(t, nsPreflight, "support-line", "False", twiliov1.ReasonWebhookUnreachable)
		r.record(t, n, "An install whose public voice path does not answer (its preflight fails): nothing is taken over.",
			numberDir+"/testdata/number-webhook-unreachable.yaml")
	}},
	{"account-verifying", func(t *testing.T, r *recorder) {
		r.createAccount(t, nsVoice, "verifying", secretMain, fxSIDSlow, nil)
		r.createNumber(t, nsVoice, "new-line", "verifying", number(11), nil)
		n := r.waitReady(t, nsVoice, "new-line", "False", twiliov1.ReasonAccountNotReady)
		r.record(t, n, "Created with its account, which is still verifying its credentials (Twilio answers 503, retried).",
			numberDir+"/testdata/number-account-verifying.yaml")
		r.recordLegacy(t, n, numberDir+"/testdata/legacy-number-account-verifying.yaml")
	}},
	{"account-missing", func(t *testing.T, r *recorder) {
		r.createNumber(t, nsVoice, "orphan-line", "not-there", number(12), nil)
		n := r.waitReady(t, nsVoice, "orphan-line", "False", twiliov1.ReasonAccountNotReady)
		r.record(t, n, "Its TwilioAccount does not exist (yet).", numberDir+"/testdata/number-account-missing.yaml")
	}},
	{"account-stalled", func(t *testing.T, r *recorder) {
		r.createSecret(t, nsVoice, "wrong-credentials", map[string]string{controllers.SecretKeyAuthToken: "wrongToken0123456789"})
		r.createAccount(t, nsVoice, "bad-credentials", "wrong-credentials", fxSIDMain, nil)
		r.createNumber(t, nsVoice, "stuck-line", "bad-credentials", number(17), nil)
		n := r.wait(t, numberKind, nsVoice, "stuck-line", func(u *unstructured.Unstructured) bool {
			return settledAt(twiliov1.ConditionReady, "False", twiliov1.ReasonAccountNotReady)(u) &&
				hasCondition(u, twiliov1.ConditionStalled, "True", twiliov1.ReasonAccountNotReady)
		})
		r.record(t, n, "Its TwilioAccount's credentials are refused by Twilio: stalled with it.",
			numberDir+"/testdata/number-account-stalled.yaml")
		r.recordLegacy(t, n, numberDir+"/testdata/legacy-number-account-stalled.yaml")
	}},
	{"twilio-api-error", func(t *testing.T, r *recorder) {
		r.createNumber(t, nsVoice, "flaky-line", "acme", number(14), nil)
		n := r.waitSynced(t, nsVoice, "flaky-line", "False", twiliov1.ReasonTwilioAPIError)
		r.record(t, n, "Twilio answers the take-over with 500: retried with backoff.", numberDir+"/testdata/number-twilio-api-error.yaml")
		r.recordLegacy(t, n, numberDir+"/testdata/legacy-number-twilio-api-error.yaml")
	}},
	{"rate-limited", func(t *testing.T, r *recorder) {
		r.createNumber(t, nsVoice, "busy-line", "acme", number(15), nil)
		n := r.waitSynced(t, nsVoice, "busy-line", "False", twiliov1.ReasonRateLimited)
		r.record(t, n, "Twilio answers the take-over with 429: retried with backoff.", numberDir+"/testdata/number-rate-limited.yaml")
	}},
	{"twilio-rejected", func(t *testing.T, r *recorder) {
		r.createNumber(t, nsVoice, "refused-line", "acme", number(16), nil)
		n := r.waitSynced(t, nsVoice, "refused-line", "False", twiliov1.ReasonTwilioRejected)
		r.record(t, n, "Twilio refuses the take-over (400): not sent again until something changes.",
			numberDir+"/testdata/number-twilio-rejected.yaml")
		r.recordLegacy(t, n, numberDir+"/testdata/legacy-number-twilio-rejected.yaml")
	}},
	{"restore-blocked", func(t *testing.T, r *recorder) {
		r.createSecret(t, nsVoice, "fragile-credentials", map[string]string{controllers.SecretKeyAuthToken: fxToken})
		r.createAccount(t, nsVoice, "fragile", "fragile-credentials", fxSIDMain, nil)
		r.createNumber(t, nsVoice, "blocked-line", "fragile", number(18), nil)
		r.waitReady(t, nsVoice, "blocked-line", "True", twiliov1.ReasonConfigured)
		// The token is rotated in Twilio's console but not in the Secret.
		secret := &corev1.Secret{}
		NewWithT(t).Expect(r.k8s.Get(context.Background(), client.ObjectKey{Namespace: nsVoice, Name: "fragile-credentials"}, secret)).To(Succeed())
		secret.Data = map[string][]byte{controllers.SecretKeyAuthToken: []byte("rotatedAway0123456789")}
		NewWithT(t).Expect(r.k8s.Update(context.Background(), secret)).To(Succeed())
		r.waitAccount(t, nsVoice, "fragile", settledAt(twiliov1.ConditionReady, "False", twiliov1.ReasonInvalidCredentials))
		r.delete(t, nsVoice, "blocked-line", numberKind)
		n := r.waitReady(t, nsVoice, "blocked-line", "False", twiliov1.ReasonRestoreBlocked)
		r.record(t, n, "Deleted (deletionPolicy Restore) while its account's credentials are refused: the restore waits, and so does the deletion. The API server bumped metadata.generation when it set deletionTimestamp.",
			numberDir+"/testdata/number-deleting-restore-blocked.yaml", numberDir+"/actions/testdata/number-deleting-restore-blocked.yaml")
		r.recordLegacy(t, n, numberDir+"/testdata/legacy-number-deleting-restore-blocked.yaml")
	}},
	{"restore-retrying", func(t *testing.T, r *recorder) {
		r.createNumber(t, nsVoice, "closing-line", "acme", number(21), nil)
		r.waitReady(t, nsVoice, "closing-line", "True", twiliov1.ReasonConfigured)
		sid := pnOf(number(21))
		r.emulator.FailNext(func(q twiliosim.Request) bool {
			return q.Kind == twiliosim.KindUpdateNumber && q.NumberSID == sid
		}, twiliosim.Fault{Status: 502}, 1_000_000)
		r.delete(t, nsVoice, "closing-line", numberKind)
		n := r.waitSynced(t, nsVoice, "closing-line", "False", twiliov1.ReasonTwilioAPIError)
		r.record(t, n, "Deleted (deletionPolicy Restore) while Twilio answers the restore with 502: retried, and the deletion waits. The API server bumped metadata.generation when it set deletionTimestamp.",
			numberDir+"/testdata/number-deleting-restore-retrying.yaml")
	}},
	{"generation-not-observed", func(t *testing.T, r *recorder) {
		r.createNumber(t, nsVoice, "pending-line", "acme", number(19), nil)
		r.waitReady(t, nsVoice, "pending-line", "True", twiliov1.ReasonConfigured)
		u := r.patch(t, nsVoice, "pending-line", numberKind, map[string]any{"spec": map[string]any{"recording": map[string]any{"enabled": false}}})
		r.record(t, u, "A spec change as the API server returns it, before the operator has reconciled the new generation.",
			numberDir+"/testdata/number-generation-not-observed.yaml")
	}},
	{"messaging", func(t *testing.T, r *recorder) {
		messaging := func(n *twiliov1.TwilioPhoneNumber) { n.Spec.Messaging = twiliov1.MessagingEnabled }
		r.createNumber(t, nsVoice, "texting-line", "acme", number(22), messaging)
		n := r.wait(t, numberKind, nsVoice, "texting-line", func(u *unstructured.Unstructured) bool {
			return settledAt(twiliov1.ConditionReady, "True", twiliov1.ReasonConfigured)(u) &&
				hasCondition(u, twiliov1.ConditionMessaging, "True", twiliov1.ReasonSMSRouted)
		})
		r.record(t, n, "Taken over with spec.messaging Enabled: its SMS route to the webhook server too, their original saved.",
			numberDir+"/testdata/number-messaging.yaml")
	}},
	{"messaging-service", func(t *testing.T, r *recorder) {
		r.createNumber(t, nsVoice, "pooled-line", "acme", number(23), func(n *twiliov1.TwilioPhoneNumber) { n.Spec.Messaging = twiliov1.MessagingEnabled })
		n := r.wait(t, numberKind, nsVoice, "pooled-line", func(u *unstructured.Unstructured) bool {
			return settledAt(twiliov1.ConditionReady, "True", twiliov1.ReasonConfigured)(u) &&
				hasCondition(u, twiliov1.ConditionMessaging, "False", twiliov1.ReasonInMessagingService)
		})
		r.record(t, n, "spec.messaging Enabled on a number in a Messaging Service that overrides its SMS routing: calls are taken over, SMS left to the service and reported.",
			numberDir+"/testdata/number-in-messaging-service.yaml")
	}},
	{"messaging-voice-not-routed", func(t *testing.T, r *recorder) {
		r.createNumber(t, nsVoice, "mute-line", "acme", number(24), func(n *twiliov1.TwilioPhoneNumber) {
			n.Spec.Messaging, n.Spec.Agent = twiliov1.MessagingEnabled, nil
		})
		n := r.wait(t, numberKind, nsVoice, "mute-line", func(u *unstructured.Unstructured) bool {
			return settledAt(twiliov1.ConditionReady, "False", twiliov1.ReasonNoAgent)(u) &&
				hasCondition(u, twiliov1.ConditionMessaging, "False", twiliov1.ReasonVoiceNotRouted)
		})
		r.record(t, n, "spec.messaging Enabled without spec.agent: neither calls nor SMS are taken over.",
			numberDir+"/testdata/number-messaging-voice-not-routed.yaml")
	}},
	{"purchase-not-allowed", func(t *testing.T, r *recorder) {
		r.createNumber(t, nsVoice, "wanted-line", "acme", number(25), func(n *twiliov1.TwilioPhoneNumber) { n.Spec.Acquire = twiliov1.AcquirePurchase })
		n := r.waitReady(t, nsVoice, "wanted-line", "False", twiliov1.ReasonPurchaseNotAllowed)
		r.record(t, n, "acquire: Purchase for a number not in the account, through an account that does not allow purchases: nothing is bought.",
			numberDir+"/testdata/number-purchase-not-allowed.yaml")
	}},
	{"purchase", func(t *testing.T, r *recorder) {
		r.createAccount(t, nsVoice, "shop", secretMain, fxSIDMain, func(a *twiliov1.TwilioAccount) {
			a.Spec.Purchasing = &twiliov1.PurchasingSpec{Enabled: true, MaxNumbers: 1}
		})
		buy := func(n *twiliov1.TwilioPhoneNumber) { n.Spec.Acquire = twiliov1.AcquirePurchase }
		r.createNumber(t, nsVoice, "sold-line", "shop", number(26), buy)
		n := r.waitReady(t, nsVoice, "sold-line", "False", twiliov1.ReasonNumberUnavailable)
		r.record(t, n, "acquire: Purchase for a number Twilio does not sell: nothing is bought, and it is not asked again until the spec changes.",
			numberDir+"/testdata/number-unavailable.yaml")
		r.createNumber(t, nsVoice, "bought-line", "shop", number(27), buy)
		n = r.wait(t, numberKind, nsVoice, "bought-line", func(u *unstructured.Unstructured) bool {
			sid, _, _ := unstructured.NestedString(u.Object, "status", "purchase", "phoneNumberSid")
			return settledAt(twiliov1.ConditionReady, "True", twiliov1.ReasonConfigured)(u) && sid != ""
		})
		r.record(t, n, "Bought by the operator with its voice routing set in the purchase: configured, Twilio had no previous URL.",
			numberDir+"/testdata/number-purchased.yaml")
		r.createNumber(t, nsVoice, "extra-line", "shop", number(28), buy)
		n = r.waitReady(t, nsVoice, "extra-line", "False", twiliov1.ReasonPurchaseLimitReached)
		r.record(t, n, "A purchase that would put the account over spec.purchasing.maxNumbers: nothing is bought.",
			numberDir+"/testdata/number-purchase-limit-reached.yaml")
		// The bought number is released outside the operator (the Console).
		r.releaseInTwilio(t, n, number(27))
		n = r.waitReady(t, nsVoice, "bought-line", "False", twiliov1.ReasonPurchaseLost)
		r.record(t, n, "Bought by the operator, then released outside it: not bought again on its own.",
			numberDir+"/testdata/number-purchase-lost.yaml")
	}},
	{"account-deleting-numbers-still-routed", func(t *testing.T, r *recorder) {
		r.createSecret(t, nsVoice, "leaving-credentials", map[string]string{controllers.SecretKeyAuthToken: fxToken})
		r.createAccount(t, nsVoice, "leaving", "leaving-credentials", fxSIDMain, nil)
		r.createNumber(t, nsVoice, "leaving-line", "leaving", number(20), nil)
		r.waitReady(t, nsVoice, "leaving-line", "True", twiliov1.ReasonConfigured)
		r.delete(t, nsVoice, "leaving", accountKind)
		a := r.waitAccount(t, nsVoice, "leaving", settledAt(twiliov1.ConditionNumbersHandedBack, "False", twiliov1.ReasonNumbersStillRouted))
		r.record(t, a, "Deleted while one of its numbers still holds a saved original: kept until that number is handed back. The API server bumped metadata.generation when it set deletionTimestamp.",
			accountDir+"/testdata/account-deleting-numbers-still-routed.yaml")
		r.recordLegacy(t, a, accountDir+"/testdata/legacy-account-deleting-numbers-still-routed.yaml")
	}},
	{"account-deleting-numbers-handed-back", func(t *testing.T, r *recorder) {
		r.createAccount(t, nsVoice, "spent", secretMain, fxSIDMain, func(a *twiliov1.TwilioAccount) {
			a.Finalizers = []string{auditFinalize}
		})
		r.waitAccount(t, nsVoice, "spent", settledAt(twiliov1.ConditionReady, "True", twiliov1.ReasonVerified))
		r.delete(t, nsVoice, "spent", accountKind)
		a := r.waitAccount(t, nsVoice, "spent", settledAt(twiliov1.ConditionNumbersHandedBack, "True", twiliov1.ReasonNumbersHandedBack))
		r.record(t, a, "Deleted with nothing left to hand back: the operator has let it go; another controller's finalizer still holds it.",
			accountDir+"/testdata/account-deleting-numbers-handed-back.yaml")
	}},
	{"account-generation-not-observed", func(t *testing.T, r *recorder) {
		created := r.createAccount(t, nsVoice, "spare", secretMain, fxSIDMain, nil)
		r.record(t, created, "A TwilioAccount as the API server returns it on create, before the operator has seen it.",
			accountDir+"/testdata/account-new.yaml")
		r.waitAccount(t, nsVoice, "spare", settledAt(twiliov1.ConditionReady, "True", twiliov1.ReasonVerified))
		u := r.patch(t, nsVoice, "spare", accountKind, map[string]any{"spec": map[string]any{"maxConcurrentRequests": 5}})
		r.record(t, u, "A spec change as the API server returns it, before the operator has reconciled the new generation.",
			accountDir+"/testdata/account-generation-not-observed.yaml")
	}},
	{"account-twilio-api-error", func(t *testing.T, r *recorder) {
		r.createAccount(t, nsVoice, "slow", secretMain, fxSIDSlow, nil)
		a := r.waitAccount(t, nsVoice, "slow", settledAt(twiliov1.ConditionSynced, "False", twiliov1.ReasonTwilioAPIError))
		r.record(t, a, "Verifying its credentials while Twilio answers 503: retried with backoff.",
			accountDir+"/testdata/account-twilio-api-error.yaml")
		r.recordLegacy(t, a, accountDir+"/testdata/legacy-account-twilio-api-error.yaml")
	}},
	{"account-invalid-credentials", func(t *testing.T, r *recorder) {
		r.createSecret(t, nsVoice, "stale-credentials", map[string]string{controllers.SecretKeyAuthToken: "staleToken0123456789"})
		r.createAccount(t, nsVoice, "stale", "stale-credentials", fxSIDMain, nil)
		a := r.waitAccount(t, nsVoice, "stale", settledAt(twiliov1.ConditionReady, "False", twiliov1.ReasonInvalidCredentials))
		r.record(t, a, "Twilio refuses the credentials (error 20003).", accountDir+"/testdata/account-invalid-credentials.yaml")
		r.recordLegacy(t, a, accountDir+"/testdata/legacy-account-invalid-credentials.yaml")
	}},
	{"account-secret-not-found", func(t *testing.T, r *recorder) {
		r.createAccount(t, nsVoice, "unset", "absent-credentials", fxSIDMain, nil)
		a := r.waitAccount(t, nsVoice, "unset", settledAt(twiliov1.ConditionReady, "False", twiliov1.ReasonSecretNotFound))
		r.record(t, a, "Its credentials Secret does not exist.", accountDir+"/testdata/account-secret-not-found.yaml")
	}},
	{"account-secret-invalid", func(t *testing.T, r *recorder) {
		r.createSecret(t, nsVoice, "incomplete-credentials", map[string]string{controllers.SecretKeyAPIKeySID: "SK5e1f0000000000000000000000000001"})
		r.createAccount(t, nsVoice, "incomplete", "incomplete-credentials", fxSIDMain, nil)
		a := r.waitAccount(t, nsVoice, "incomplete", settledAt(twiliov1.ConditionReady, "False", twiliov1.ReasonSecretInvalid))
		r.record(t, a, "Its Secret has apiKeySid without apiKeySecret, and no authToken.", accountDir+"/testdata/account-secret-invalid.yaml")
	}},
	{"account-api-url-not-allowed", func(t *testing.T, r *recorder) {
		r.createAccount(t, nsVoice, "elsewhere", secretMain, fxSIDMain, func(a *twiliov1.TwilioAccount) {
			a.Spec.APIURL = "https://api.example.com"
		})
		a := r.waitAccount(t, nsVoice, "elsewhere", settledAt(twiliov1.ConditionReady, "False", twiliov1.ReasonAPIURLNotAllowed))
		r.record(t, a, "spec.apiURL is neither Twilio nor allowed by the manager: no credentials are sent there.",
			accountDir+"/testdata/account-api-url-not-allowed.yaml")
	}},
	{"account-twilio-rejected", func(t *testing.T, r *recorder) {
		r.createAccount(t, nsVoice, "suspended", secretMain, fxSIDRejected, nil)
		a := r.waitAccount(t, nsVoice, "suspended", settledAt(twiliov1.ConditionReady, "False", twiliov1.ReasonTwilioRejected))
		r.record(t, a, "Twilio refuses to read the account (403).", accountDir+"/testdata/account-twilio-rejected.yaml")
	}},
	{"account-conflict", func(t *testing.T, r *recorder) {
		r.createAccount(t, nsVoice, "contended", secretMain, fxSIDContended, nil)
		r.waitAccount(t, nsVoice, "contended", settledAt(twiliov1.ConditionReady, "True", twiliov1.ReasonVerified))
		r.createSecret(t, nsBilling, secretMain, map[string]string{controllers.SecretKeyAuthToken: fxToken})
		r.createAccount(t, nsBilling, "contended", secretMain, fxSIDContended, nil)
		a := r.waitAccount(t, nsBilling, "contended", settledAt(twiliov1.ConditionReady, "False", twiliov1.ReasonConflict))
		r.record(t, a, "Another namespace's older TwilioAccount already uses the account SID, and the namespaces may not share it.",
			accountDir+"/testdata/account-conflict.yaml")
	}},
}

// recordAccounts records the account every voice number uses, once the
// scenarios have created all of them.
func (r *recorder) recordAccounts(t *testing.T) {
	t.Helper()
	a := r.waitAccount(t, nsVoice, "acme", func(u *unstructured.Unstructured) bool {
		var numbers twiliov1.TwilioPhoneNumberList
		if err := r.k8s.List(context.Background(), &numbers, client.InNamespace(nsVoice)); err != nil {
			return false
		}
		managed := 0
		for _, n := range numbers.Items {
			if n.Spec.AccountRef.Name == "acme" {
				managed++
			}
		}
		got, _, _ := unstructured.NestedInt64(u.Object, "status", "numbersManaged")
		return settledAt(twiliov1.ConditionReady, "True", twiliov1.ReasonVerified)(u) && got == int64(managed)
	})
	r.record(t, a, "Credentials verified.", accountDir+"/testdata/account-verified.yaml")
	r.recordLegacy(t, a, accountDir+"/testdata/legacy-account-verified.yaml")
}

func init() {
	// acme, the account of most numbers, and its Secret are made first.
	scenarios = append([]scenario{{"acme", func(t *testing.T, r *recorder) {
		r.createSecret(t, nsVoice, secretMain, map[string]string{controllers.SecretKeyAuthToken: fxToken})
		r.createAccount(t, nsVoice, "acme", secretMain, fxSIDMain, nil)
	}}}, scenarios...)
}

// Writing objects.

// releaseInTwilio deletes a number from the emulated account over its REST
// API, as a Console user would.
func (r *recorder) releaseInTwilio(t *testing.T, _ *unstructured.Unstructured, e164 string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodDelete, r.simURL+"/2010-04-01/Accounts/"+fxSIDMain+"/IncomingPhoneNumbers/"+r.sidOf(t, e164)+".json", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(fxSIDMain, fxToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("release %s in the emulator: %s", e164, resp.Status)
	}
}

func (r *recorder) sidOf(t *testing.T, e164 string) string {
	t.Helper()
	n, ok := r.emulator.NumberByPhone(e164)
	if !ok {
		t.Fatalf("%s is not in the emulator", e164)
	}
	return n.SID
}

func (r *recorder) createSecret(t *testing.T, ns, name string, data map[string]string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}
	if err := r.k8s.Create(context.Background(), s); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("create Secret %s/%s: %v", ns, name, err)
	}
}

func (r *recorder) createAccount(t *testing.T, ns, name, secret, sid string, mutate func(*twiliov1.TwilioAccount)) *unstructured.Unstructured {
	t.Helper()
	a := &twiliov1.TwilioAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: twiliov1.GroupVersion.String(), Kind: accountKind},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: twiliov1.TwilioAccountSpec{AccountSID: sid, CredentialsSecretRef: twiliov1.SecretReference{Name: secret},
			APIURL: r.simURL},
	}
	if mutate != nil {
		mutate(a)
	}
	return r.create(t, a)
}

func (r *recorder) createNumber(t *testing.T, ns, name, account, e164 string, mutate func(*twiliov1.TwilioPhoneNumber)) *unstructured.Unstructured {
	t.Helper()
	n := &twiliov1.TwilioPhoneNumber{
		TypeMeta:   metav1.TypeMeta{APIVersion: twiliov1.GroupVersion.String(), Kind: numberKind},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: twiliov1.TwilioPhoneNumberSpec{AccountRef: twiliov1.LocalObjectReference{Name: account}, PhoneNumber: e164,
			Agent: &twiliov1.AgentSpec{URL: fxAgent}},
	}
	if mutate != nil {
		mutate(n)
	}
	return r.create(t, n)
}

// create sends obj as unstructured, so the answer keeps what a typed copy
// drops (a zero status.observedGeneration), and returns the answer.
func (r *recorder) create(t *testing.T, obj runtime.Object) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	if err := r.k8s.Create(context.Background(), u); err != nil {
		t.Fatalf("create %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return u
}

func (r *recorder) patch(t *testing.T, ns, name, kind string, patch map[string]any) *unstructured.Unstructured {
	t.Helper()
	u := newObject(kind, ns, name)
	data, err := yaml.Marshal(patch)
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.k8s.Patch(context.Background(), u, client.RawPatch(types.MergePatchType, j)); err != nil {
		t.Fatalf("patch %s %s/%s: %v", kind, ns, name, err)
	}
	return u
}

func (r *recorder) delete(t *testing.T, ns, name, kind string) {
	t.Helper()
	if err := r.k8s.Delete(context.Background(), newObject(kind, ns, name)); err != nil {
		t.Fatalf("delete %s %s/%s: %v", kind, ns, name, err)
	}
}

func newObject(kind, ns, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(twiliov1.GroupVersion.WithKind(kind))
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

// Waiting for states.

// settledAt: the operator has reconciled the current generation, condition
// typ has this status and reason for it, and Stalled and Reconciling were
// written with it.
func settledAt(typ, status, reason string) func(*unstructured.Unstructured) bool {
	return func(u *unstructured.Unstructured) bool {
		observed, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
		if observed != u.GetGeneration() {
			return false
		}
		for _, c := range []string{typ, twiliov1.ConditionStalled, twiliov1.ConditionReconciling} {
			if cond := findCondition(u, c); cond == nil || cond.ObservedGeneration != u.GetGeneration() {
				return false
			}
		}
		return hasCondition(u, typ, status, reason)
	}
}

func (r *recorder) wait(t *testing.T, kind, ns, name string, ok func(*unstructured.Unstructured) bool) *unstructured.Unstructured {
	t.Helper()
	var (
		got    *unstructured.Unstructured
		lastRV string
		since  time.Time
	)
	NewWithT(t).Eventually(func(g Gomega) {
		u := newObject(kind, ns, name)
		g.Expect(r.k8s.Get(context.Background(), client.ObjectKeyFromObject(u), u)).To(Succeed())
		g.Expect(ok(u)).To(BeTrue(), "%s %s/%s: %v", kind, ns, name, u.Object["status"])
		// Settled: the operator has not written the object for a while.
		if u.GetResourceVersion() != lastRV {
			lastRV, since = u.GetResourceVersion(), time.Now()
		}
		g.Expect(time.Since(since)).To(BeNumerically(">=", fxQuiet), "%s %s/%s still changing", kind, ns, name)
		got = u
	}, fxWait, fxTick).Should(Succeed())
	return got
}

func (r *recorder) waitReady(t *testing.T, ns, name, status, reason string) *unstructured.Unstructured {
	t.Helper()
	return r.wait(t, numberKind, ns, name, settledAt(twiliov1.ConditionReady, status, reason))
}

func (r *recorder) waitSynced(t *testing.T, ns, name, status, reason string) *unstructured.Unstructured {
	t.Helper()
	return r.wait(t, numberKind, ns, name, settledAt(twiliov1.ConditionSynced, status, reason))
}

func (r *recorder) waitAccount(t *testing.T, ns, name string, ok func(*unstructured.Unstructured) bool) *unstructured.Unstructured {
	t.Helper()
	return r.wait(t, accountKind, ns, name, ok)
}

func findCondition(u *unstructured.Unstructured, typ string) *metav1.Condition {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] != typ {
			continue
		}
		var cond metav1.Condition
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &cond); err != nil {
			return nil
		}
		return &cond
	}
	return nil
}

func hasCondition(u *unstructured.Unstructured, typ, status, reason string) bool {
	c := findCondition(u, typ)
	return c != nil && string(c.Status) == status && c.Reason == reason
}

// Recording.

func (r *recorder) record(t *testing.T, u *unstructured.Unstructured, comment string, files ...string) {
	t.Helper()
	r.add(fixture{files: files, comment: comment, obj: r.normalise(u)})
}

// recordLegacy records u as an operator from before the kstatus
// conditions wrote it: the same object without Reconciling and Stalled.
func (r *recorder) recordLegacy(t *testing.T, u *unstructured.Unstructured, file string) {
	t.Helper()
	obj := r.normalise(u)
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	kept := conds[:0]
	for _, c := range conds {
		if typ := c.(map[string]any)["type"]; typ != twiliov1.ConditionStalled && typ != twiliov1.ConditionReconciling {
			kept = append(kept, c)
		}
	}
	utilruntime.Must(unstructured.SetNestedSlice(obj.Object, kept, "status", "conditions"))
	r.add(fixture{files: []string{file}, obj: obj,
		comment: "As an operator older than the Reconciling and Stalled conditions wrote it: the object recorded in " +
			strings.TrimPrefix(file, filepath.Dir(file)+"/legacy-") + " without those two conditions."})
}

// recordEdited records what an action should return for u: u with
// spec.voiceRouting set.
func (r *recorder) recordEdited(t *testing.T, u *unstructured.Unstructured, comment, file, routing string) {
	t.Helper()
	obj := r.normalise(u)
	utilruntime.Must(unstructured.SetNestedField(obj.Object, routing, "spec", "voiceRouting"))
	r.add(fixture{files: []string{file}, comment: comment, obj: obj})
}

func (r *recorder) add(f fixture) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fixtures = append(r.fixtures, f)
}

// normalise makes a live object a fixture: no managedFields nor
// resourceVersion, a uid derived from its name, fixed timestamps, and the
// emulator's address replaced.
func (r *recorder) normalise(u *unstructured.Unstructured) *unstructured.Unstructured {
	obj := u.DeepCopy()
	obj.SetManagedFields(nil)
	obj.SetResourceVersion("")
	sum := sha256.Sum256([]byte(obj.GetKind() + "/" + obj.GetNamespace() + "/" + obj.GetName()))
	h := hex.EncodeToString(sum[:16])
	obj.SetUID(types.UID(h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]))
	utilruntime.Must(unstructured.SetNestedField(obj.Object, fxCreated, "metadata", "creationTimestamp"))
	if obj.GetDeletionTimestamp() != nil {
		utilruntime.Must(unstructured.SetNestedField(obj.Object, fxDeleted, "metadata", "deletionTimestamp"))
	}
	conds, found, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	if found {
		for _, c := range conds {
			c.(map[string]any)["lastTransitionTime"] = fxTransition
		}
		// The API keeps conditions in the order they first appeared.
		slices.SortFunc(conds, func(a, b any) int {
			return strings.Compare(a.(map[string]any)["type"].(string), b.(map[string]any)["type"].(string))
		})
		utilruntime.Must(unstructured.SetNestedSlice(obj.Object, conds, "status", "conditions"))
	}
	obj.Object = replaceStrings(obj.Object, r.simURL, fxEmulatorURL).(map[string]any)
	normalisePurchase(obj)
	return obj
}

// normalisePurchase replaces what a purchase makes up (its intent ID, the
// bought number's SID, the times, the record's MAC) with values derived
// from the object's name, wherever they appear.
func normalisePurchase(obj *unstructured.Unstructured) {
	p, found, _ := unstructured.NestedStringMap(obj.Object, "status", "purchase")
	if !found {
		return
	}
	sum := sha256.Sum256([]byte("purchase/" + obj.GetName()))
	h := hex.EncodeToString(sum[:])
	for key, fixed := range map[string]string{
		"intentId": h[:12], "phoneNumberSid": "PN" + h[:32], "requestedAt": fxTransition, "purchasedAt": fxTransition,
	} {
		if v := p[key]; v != "" {
			obj.Object = replaceStrings(obj.Object, v, fixed).(map[string]any)
		}
	}
	if a := obj.GetAnnotations(); a[twiliov1.AnnotationPurchase] != "" {
		a[twiliov1.AnnotationPurchase] = purchaseMAC.ReplaceAllString(a[twiliov1.AnnotationPurchase], `"mac":"`+h[32:]+`"`)
		obj.SetAnnotations(a)
	}
}

var purchaseMAC = regexp.MustCompile(`"mac":"[^"]*"`)

func replaceStrings(v any, old, repl string) any {
	switch v := v.(type) {
	case string:
		return strings.ReplaceAll(v, old, repl)
	case map[string]any:
		for k, item := range v {
			v[k] = replaceStrings(item, old, repl)
		}
		return v
	case []any:
		for i, item := range v {
			v[i] = replaceStrings(item, old, repl)
		}
		return v
	}
	return v
}

// The recorder owns the testdata folders: it writes all of their files.
var testdataDirs = []string{
	numberDir + "/testdata", numberDir + "/actions/testdata", accountDir + "/testdata",
}

const recordedHeader = "# Recorded by TestFixturesFromRealReconciles (argocd/record_test.go) from a real reconcile;\n" +
	"# RECORD_FIXTURES=1 go test -run TestFixturesFromRealReconciles ./argocd/ rewrites it.\n"

func fixtureText(f fixture) ([]byte, error) {
	data, err := yaml.Marshal(f.obj.Object)
	if err != nil {
		return nil, err
	}
	return append([]byte(recordedHeader+"# "+f.comment+"\n"), data...), nil
}

func (r *recorder) write(t *testing.T) {
	t.Helper()
	for _, dir := range testdataDirs {
		old, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, f := range old {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range r.fixtures {
		data, err := fixtureText(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range f.files {
			if err := os.WriteFile(file, data, 0o644); err != nil { //nolint:gosec // a checked-in fixture
				t.Fatal(err)
			}
		}
	}
	t.Logf("recorded %d fixtures", len(r.fixtures))
}

// check compares the live objects with the checked-in fixtures.
func (r *recorder) check(t *testing.T) {
	t.Helper()
	var want []string
	for _, f := range r.fixtures {
		want = append(want, f.files...)
	}
	var have []string
	for _, dir := range testdataDirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		have = append(have, files...)
	}
	sort.Strings(want)
	sort.Strings(have)
	NewWithT(t).Expect(have).To(Equal(want), "the testdata folders hold exactly the recorded fixtures (%s=1 rewrites them)", recordEnv)

	healthWant := map[string]healthStatus{}
	for _, dir := range []string{numberDir, accountDir} {
		for _, tc := range loadHealthTests(t, dir).Tests {
			healthWant[filepath.Join(dir, tc.InputPath)] = tc.HealthStatus
		}
	}
	for _, f := range r.fixtures {
		live := summary(f.obj)
		for _, file := range f.files {
			t.Run(file, func(t *testing.T) {
				g := NewWithT(t)
				fromFile := summary(loadUnstructured(t, file))
				g.Expect(live).To(Equal(fromFile), "%s no longer matches what the operator writes (%s=1 rewrites it)", file, recordEnv)
				if hs, ok := healthWant[file]; ok {
					script := readFile(t, filepath.Join(filepath.Dir(filepath.Dir(file)), "health.lua"))
					got, err := argoVM{}.executeHealthLua(f.obj.Object, script)
					g.Expect(err).NotTo(HaveOccurred())
					// The status only: a few of the operator's messages vary from run to run.
					g.Expect(got.Status).To(Equal(hs.Status), "the live object's health differs from health_test.yaml: %s", got.Message)
				}
			})
		}
	}
}

// summary is what must not drift: each condition's type, status, reason
// and observedGeneration relative to metadata.generation; the same for
// status.observedGeneration; whether the object is being deleted; the
// finalizers.
func summary(u *unstructured.Unstructured) []string {
	gen := u.GetGeneration()
	observed, found, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	out := []string{fmt.Sprintf("status.observedGeneration: present=%v generation%+d", found, observed-gen),
		fmt.Sprintf("deleting=%v finalizers=%v", u.GetDeletionTimestamp() != nil, u.GetFinalizers())}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	var cs []string
	for _, c := range conds {
		m := c.(map[string]any)
		og, _ := m["observedGeneration"].(int64)
		cs = append(cs, fmt.Sprintf("%v=%v reason=%v observedGeneration=generation%+d", m["type"], m["status"], m["reason"], og-gen))
	}
	slices.Sort(cs)
	return append(out, cs...)
}

func ptrTo[T any](v T) *T { return &v }
