// Package takeover tests the take-over safety rails end to end, in one
// process but with every real part: a kube-apiserver and etcd (envtest), the
// Twilio emulator over HTTP, the real controllers in their own managers (one
// per install), the real webhook server (webhookserver.Run) on a loopback
// public URL, a sample agent, and calls placed by the emulator's call
// simulator. It covers the preflight (a wrong public URL takes nothing over,
// fixing it proceeds), fallbacks when the agent is gone, and two installs on
// one Twilio account.
package takeover

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/controllers"
	"github.com/loquent/twilio-voice-operator/internal/controlplane"
	"github.com/loquent/twilio-voice-operator/internal/egress"
	"github.com/loquent/twilio-voice-operator/internal/sampleagent"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
	"github.com/loquent/twilio-voice-operator/webhookserver"
)

const (
	accountSID = "AC7a4e0000000000000000000000000001"
	authToken  = "takeoverToken0123456789"
	poll       = 2 * time.Second
	wait       = 30 * time.Second
	tick       = 100 * time.Millisecond
)

// credentialsSecret is where each manager publishes verified tokens and the
// webhook server reads them.
var credentialsSecret = types.NamespacedName{Namespace: "default", Name: "webhook-credentials"}

var (
	k8s        client.Client
	restConfig *rest.Config
	scheme     = runtime.NewScheme()
	emulator   *twiliosim.Server
	simURL     string
	// publicURL is the webhook server's (http on loopback); agentURL the
	// sample agent's.
	publicURL, agentURL string
	numberSeq           atomic.Int32
	skipNameValidation  = true
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(os.Getenv("TEST_VERBOSE") != "")))
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(twiliov1.AddToScheme(scheme))
	env, cfg, err := controlplane.Start(filepath.Join("..", ".."), true)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	restConfig = cfg
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	emulator = twiliosim.New()
	emulator.AddAccount(twiliosim.Account{SID: accountSID, AuthToken: authToken, FriendlyName: "Take-over tests"})
	if simURL, err = emulator.Start("127.0.0.1:0"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = emulator.Close() }()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	agentAddr, err := serveAgent(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	agentURL = "ws://" + agentAddr + "/media"
	if err := startWebhookServer(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func serveAgent(ctx context.Context) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	h, err := sampleagent.New(sampleagent.Options{}).Handler("/media")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	return ln.Addr().String(), nil
}

func startWebhookServer(ctx context.Context) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	publicURL = "http://" + addr
	dir, err := os.MkdirTemp("", "takeover-")
	if err != nil {
		return err
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	keyFile := filepath.Join(dir, "stream-token.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return err
	}
	cfg := webhookserver.Config{
		PublicURL: publicURL, ListenAddress: addr, MetricsAddress: "0", ProbeAddress: "0",
		ShutdownGracePeriod: time.Second, CredentialsSecret: credentialsSecret, StreamTokenKeyFile: keyFile,
		AgentDialTimeout: time.Second, StreamTokenTTL: time.Minute, AllowLoopbackAgents: true,
	}
	go func() {
		if err := webhookserver.Run(ctx, cfg, restConfig, logr.Discard()); err != nil {
			fmt.Fprintln(os.Stderr, "webhook server:", err)
		}
	}()
	// Up once it answers anything.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(publicURL + "/healthz"); err == nil {
			_ = resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("webhook server at %s did not come up", addr)
}

// install is one install of the operator: a manager whose cache sees only
// its namespaces (as if each were a cluster of its own).
type install struct {
	voiceURL string
	stop     context.CancelFunc
	done     chan struct{}
}

type installOptions struct {
	publicURL, installID string
	namespaces           []string
	preflight            bool
	publish              bool
}

func startInstall(t *testing.T, o installOptions) *install {
	t.Helper()
	nsCache := map[string]cache.Config{}
	for _, ns := range o.namespaces {
		nsCache[ns] = cache.Config{}
	}
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:   cache.Options{DefaultNamespaces: nsCache},
		// One manager per install in one process: names must not clash.
		Controller: config.Controller{SkipNameValidation: &skipNameValidation},
	})
	if err != nil {
		t.Fatalf("manager: %v", err)
	}
	policy, err := egress.New(egress.Options{AllowLoopback: true, OwnAddrs: []netip.Addr{}})
	if err != nil {
		t.Fatal(err)
	}
	in := &install{voiceURL: controllers.InstallVoiceURL(o.publicURL, o.installID), done: make(chan struct{})}
	opts := controllers.Options{VoiceURL: in.voiceURL, PollInterval: poll, ConcurrentReconciles: 4,
		AllowedAPIURLs: []string{simURL}, AgentPolicy: policy, Preflight: o.preflight}
	if o.publish {
		opts.WebhookCredentialsSecret = credentialsSecret
	}
	ctx, cancel := context.WithCancel(context.Background())
	in.stop = func() { cancel(); <-in.done }
	if err := controllers.Setup(ctx, mgr, opts); err != nil {
		t.Fatalf("setup: %v", err)
	}
	go func() {
		defer close(in.done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager stopped:", err)
		}
	}()
	t.Cleanup(in.stop)
	return in
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "tk-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

func nextE164() string { return fmt.Sprintf("+1628555%04d", numberSeq.Add(1)) }

func createAccount(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "twilio"},
		StringData: map[string]string{controllers.SecretKeyAuthToken: authToken}}); err != nil {
		t.Fatalf("create Secret: %v", err)
	}
	if err := k8s.Create(ctx, &twiliov1.TwilioAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "main"},
		Spec: twiliov1.TwilioAccountSpec{AccountSID: accountSID, CredentialsSecretRef: twiliov1.SecretReference{Name: "twilio"}, APIURL: simURL}}); err != nil {
		t.Fatalf("create TwilioAccount: %v", err)
	}
}

func createNumber(t *testing.T, ns, name, e164 string, mutate func(*twiliov1.TwilioPhoneNumber)) {
	t.Helper()
	n := &twiliov1.TwilioPhoneNumber{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: twiliov1.TwilioPhoneNumberSpec{AccountRef: twiliov1.LocalObjectReference{Name: "main"}, PhoneNumber: e164,
			Agent: &twiliov1.AgentSpec{URL: agentURL}}}
	if mutate != nil {
		mutate(n)
	}
	if err := k8s.Create(context.Background(), n); err != nil {
		t.Fatalf("create TwilioPhoneNumber: %v", err)
	}
}

func getNumber(g Gomega, ns, name string) *twiliov1.TwilioPhoneNumber {
	n := &twiliov1.TwilioPhoneNumber{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, n)).To(Succeed())
	return n
}

func ready(n *twiliov1.TwilioPhoneNumber) (metav1.ConditionStatus, string, string) {
	c := meta.FindStatusCondition(n.Status.Conditions, twiliov1.ConditionReady)
	if c == nil {
		return "", "", ""
	}
	return c.Status, c.Reason, c.Message
}

func waitReady(t *testing.T, ns, name string, status metav1.ConditionStatus, reason string) *twiliov1.TwilioPhoneNumber {
	t.Helper()
	var n *twiliov1.TwilioPhoneNumber
	NewWithT(t).Eventually(func(g Gomega) []string {
		n = getNumber(g, ns, name)
		s, r, _ := ready(n)
		return []string{string(s), r}
	}, wait, tick).Should(Equal([]string{string(status), reason}))
	return n
}

func liveNumber(g Gomega, sid string) twiliosim.Number {
	n, ok := emulator.Number(sid)
	g.Expect(ok).To(BeTrue())
	return n
}

// updates counts the successful routing writes to a number.
func updates(sid string) int {
	count := 0
	for _, r := range emulator.Requests() {
		if r.Kind == "UpdateNumber" && r.NumberSID == sid && r.Status < 300 {
			count++
		}
	}
	return count
}
