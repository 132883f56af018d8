package controllers

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/controlplane"
	"github.com/loquent/twilio-voice-operator/internal/egress"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

// The suite runs the real controllers in a manager against a real
// kube-apiserver and etcd (envtest) and the Twilio emulator over HTTP,
// through the real twilio-go client.
const (
	testAccountSID = "AC0123456789abcdef0123456789abcdef"
	testAuthToken  = "s3cr3tT0ken"
	// testBuyerSID is the emulated account the purchase tests buy and
	// release numbers in; nothing is ever bought or released in testAccountSID.
	testBuyerSID  = "ACb0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"
	testPublicURL = "https://voice.example.com"
	testVoiceURL  = testPublicURL + VoicePath
	testPoll      = 2 * time.Second
)

// earlierVoiceURL is a voice URL of an earlier public URL of the operator.
const earlierVoiceURL = "https://old-public.example.com/twilio/voice"

// credentialsSecret is where the manager publishes verified accounts' tokens.
var credentialsSecret = types.NamespacedName{Namespace: "default", Name: "webhook-credentials"}

var (
	k8s        client.Client // direct (uncached) client for assertions
	restConfig *rest.Config  // the admin's, for impersonation
	emulator   *twiliosim.Server
	simURL     string
	scheme     = runtime.NewScheme()

	// writeHook, when set, runs before every patch (object or status) the
	// manager sends; an error it returns is what the API call returns.
	writeHook   func(obj client.Object) error
	writeHookMu sync.Mutex
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(os.Getenv("TEST_VERBOSE") != "")))
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(twiliov1.AddToScheme(scheme))

	env, cfg, err := controlplane.Start("..", true)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	restConfig = cfg
	defer func() { _ = env.Stop() }()

	emulator = twiliosim.New()
	emulator.AddAccount(twiliosim.Account{SID: testAccountSID, AuthToken: testAuthToken, FriendlyName: "Test account"})
	emulator.AddAccount(twiliosim.Account{SID: testBuyerSID, AuthToken: testAuthToken, FriendlyName: "Buyer account"})
	if simURL, err = emulator.Start("127.0.0.1:0"); err != nil {
		fmt.Fprintln(os.Stderr, "start emulator:", err)
		return 1
	}
	defer func() { _ = emulator.Close() }()

	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := startManager(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		return 1
	}
	return m.Run()
}

func startManager(ctx context.Context, cfg *rest.Config) error {
	agentPolicy, err := egress.New(egress.Options{OwnAddrs: []netip.Addr{}})
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		NewClient: func(cfg *rest.Config, opts client.Options) (client.Client, error) {
			c, err := client.NewWithWatch(cfg, opts)
			if err != nil {
				return nil, err
			}
			return interceptor.NewClient(c, interceptor.Funcs{
				Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
					if err := runWriteHook(obj); err != nil {
						return err
					}
					return c.Patch(ctx, obj, patch, opts...)
				},
				SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
					if err := runWriteHook(obj); err != nil {
						return err
					}
					return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
				},
			}), nil
		},
	})
	if err != nil {
		return err
	}
	if err := Setup(ctx, mgr, Options{VoiceURL: testVoiceURL, PollInterval: testPoll, ConcurrentReconciles: 8,
		AllowedAPIURLs: []string{simURL}, WebhookCredentialsSecret: credentialsSecret,
		// Most tests share one emulated account across their namespaces
		// (t-…); the tenancy tests use other namespaces, where it is refused.
		SharedSIDNamespaces: []string{"t-*"}, AgentPolicy: agentPolicy,
		EarlierVoiceURLs: []string{earlierVoiceURL}}); err != nil {
		return err
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager stopped:", err)
		}
	}()
	return nil
}

func setWriteHook(h func(client.Object) error) {
	writeHookMu.Lock()
	defer writeHookMu.Unlock()
	writeHook = h
}

func runWriteHook(obj client.Object) error {
	writeHookMu.Lock()
	hook := writeHook
	writeHookMu.Unlock()
	if hook == nil {
		return nil
	}
	return hook(obj)
}

// newNamespace creates a namespace for one test.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}
