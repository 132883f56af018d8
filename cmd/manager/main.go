// Command manager runs the twilio-voice-operator controllers: it points each
// TwilioPhoneNumber's Voice URL at the webhook server and hands it back.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path"
	"regexp"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/controllers"
	"github.com/loquent/twilio-voice-operator/internal/egress"
	"github.com/loquent/twilio-voice-operator/internal/publicurl"

	// Mozilla's roots, used when the system has none (the images have no CA
	// bundle): HTTPS to Twilio and to wss:// agents.
	_ "golang.org/x/crypto/x509roots/fallback"
	// +kubebuilder:scaffold:imports
)

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(twiliov1.AddToScheme(scheme))
	// +kubebuilder:scaffold:scheme
}

// config is the manager's validated command line.
type config struct {
	publicURL            string
	pollInterval         time.Duration
	concurrentReconciles int
	twilioConcurrency    int
	kubeQPS              float64
	kubeBurst            int
	metricsAddr          string
	probeAddr            string
	leaderElect          bool
	leaderElectionNS     string
	allowedAPIURLs       []string
	sharedSIDNamespaces  []string
	credentialsSecret    types.NamespacedName
	agentPolicy          *egress.Policy
	previousPublicURLs   []string
	guardKeySecret       types.NamespacedName
	streamTokenSecret    types.NamespacedName
	installID            string
	preflight            bool
	takeoverBurst        int
	takeoverPerMinute    int
	zap                  zap.Options
}

// parseFlags parses and validates args; errors name the offending flag.
func parseFlags(args []string) (config, error) {
	var c config
	var allowHTTP, allowReserved bool
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.StringVar(&c.publicURL, "public-url", "", "Public base URL of the webhook server, https://host (required). Numbers are pointed at <public-url>/twilio/voice?tvo-install=<install-id>.")
	fs.BoolVar(&allowHTTP, "allow-http-public-url", false, "Accept an http:// public URL (local demos only; Twilio requires https).")
	fs.BoolVar(&allowReserved, "allow-reserved-public-url", false, "Accept a public URL on a reserved example host (example.com, .test, .invalid…), which no one serves; tests only. Without it such a placeholder is refused.")
	fs.DurationVar(&c.pollInterval, "poll-interval", 5*time.Minute, "How often Twilio is re-read to detect out-of-band changes (jittered +0-20%). One list call per account per interval.")
	fs.IntVar(&c.concurrentReconciles, "max-concurrent-reconciles", 16, "TwilioPhoneNumbers reconciled in parallel. Twilio calls are further capped per account by spec.maxConcurrentRequests.")
	fs.IntVar(&c.twilioConcurrency, "twilio-max-concurrent-requests", 10, "In-flight Twilio REST calls per account, for TwilioAccounts that set no spec.maxConcurrentRequests (1-100). Twilio answers 429 above its per-account limit.")
	fs.Float64Var(&c.kubeQPS, "kube-api-qps", 50, "Queries per second to the Kubernetes API server.")
	fs.IntVar(&c.kubeBurst, "kube-api-burst", 100, "Burst of queries to the Kubernetes API server.")
	fs.StringVar(&c.metricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; \"0\" disables it.")
	fs.StringVar(&c.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	fs.BoolVar(&c.leaderElect, "leader-elect", false, "Elect a leader so that only one replica reconciles (enable with more than one replica).")
	fs.StringVar(&c.leaderElectionNS, "leader-election-namespace", "", "Namespace of the leader election Lease (default: the pod's namespace).")
	var apiURLs, sharing, credentials, guardKey, agentAllowed, previous, streamToken string
	var allowLoopbackAgents bool
	fs.StringVar(&apiURLs, "allowed-api-urls", "", "Comma-separated origins (scheme://host[:port]; without a port, any port) that a TwilioAccount's spec.apiURL may name besides Twilio's own https://*.twilio.com hosts. The account's credentials are sent there.")
	fs.StringVar(&sharing, "account-sid-sharing-namespaces", "", "Comma-separated namespaces (names or patterns such as team-* or *) whose TwilioAccounts may use the same account SID. Elsewhere the oldest verified TwilioAccount owns a SID and the others are Ready=False Conflict.")
	fs.StringVar(&credentials, "webhook-credentials-secret", "", "namespace/name of the Secret where the manager publishes the verified accounts' auth tokens for the webhook server (default: <pod namespace>/twilio-voice-operator-webhook-credentials).")
	fs.StringVar(&streamToken, "stream-token-secret", "", "namespace/name of the webhook server's stream-token Secret, created with a random key when missing and never changed after (the chart passes it unless webhookServer.streamToken.existingSecret is set); empty leaves it alone.")
	fs.StringVar(&guardKey, "guard-key-secret", "", "namespace/name of the Secret holding the key that signs the saved-routing annotation; created when missing (default: <pod namespace>/twilio-voice-operator-guard-key).")
	fs.StringVar(&agentAllowed, "agent-allowed-destinations", "", "The webhook server's flag of that name: a number whose spec.agent.url the policy refuses is reported (Ready=False AgentNotAllowed) and not taken over. Keep both the same.")
	fs.BoolVar(&allowLoopbackAgents, "allow-loopback-agents", false, "The webhook server's flag of that name (local demos only).")
	fs.StringVar(&previous, "previous-public-urls", "", "Comma-separated public URLs this operator used before --public-url: a number still pointing at <url>/twilio/voice is re-pointed without a drift warning, and that URL is never saved as its original.")
	fs.StringVar(&c.installID, "install-id", "", "Names this install in the Voice URL it sets (<public-url>/twilio/voice?tvo-install=<id>), so that another install meeting the number reports Contested instead of fighting over it (default: derived from --public-url). Lowercase letters, digits and dashes.")
	fs.BoolVar(&c.preflight, "preflight", true, "Before pointing an account's numbers at <public-url>/twilio/voice, send a request signed as Twilio would and require an answer that streams to the number's agent (numbers report WebhookUnreachable otherwise). Turn off only where the manager's pods cannot reach their own public URL.")
	fs.IntVar(&c.takeoverBurst, "takeover-burst", 100, "Numbers per TwilioAccount that may be pointed at the webhook server at once (take-overs, re-points, drift repairs), for accounts without spec.takeover.burst; 0 disables pacing.")
	fs.IntVar(&c.takeoverPerMinute, "takeover-per-minute", 100, "Numbers per TwilioAccount pointed at the webhook server per minute once the burst is spent, for accounts without spec.takeover.perMinute; 0 disables pacing.")
	c.zap.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var errs []error
	u, err := publicurl.Parse(c.publicURL, allowHTTP)
	if err == nil && !allowReserved {
		err = publicurl.CheckNotReserved(u)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("--public-url %w", err))
	}
	c.publicURL = u
	if c.pollInterval < 10*time.Second {
		errs = append(errs, fmt.Errorf("--poll-interval %s is below the 10s minimum", c.pollInterval))
	}
	if c.concurrentReconciles < 1 {
		errs = append(errs, fmt.Errorf("--max-concurrent-reconciles must be at least 1, got %d", c.concurrentReconciles))
	}
	if c.twilioConcurrency < 1 || c.twilioConcurrency > 100 {
		errs = append(errs, fmt.Errorf("--twilio-max-concurrent-requests must be between 1 and 100, got %d", c.twilioConcurrency))
	}
	if c.kubeQPS <= 0 || c.kubeBurst < 1 {
		errs = append(errs, fmt.Errorf("--kube-api-qps and --kube-api-burst must be positive"))
	}
	for _, u := range egress.SplitList(apiURLs) {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || (p.Path != "" && p.Path != "/") {
			errs = append(errs, fmt.Errorf("--allowed-api-urls: %q is not an origin such as https://proxy.example.com:8443", u))
			continue
		}
		c.allowedAPIURLs = append(c.allowedAPIURLs, u)
	}
	for _, ns := range egress.SplitList(sharing) {
		if _, err := path.Match(ns, ""); err != nil {
			errs = append(errs, fmt.Errorf("--account-sid-sharing-namespaces: bad pattern %q", ns))
		}
		c.sharedSIDNamespaces = append(c.sharedSIDNamespaces, ns)
	}
	for _, p := range egress.SplitList(previous) {
		u, err := publicurl.Parse(p, true)
		if err != nil {
			errs = append(errs, fmt.Errorf("--previous-public-urls %w", err))
			continue
		}
		c.previousPublicURLs = append(c.previousPublicURLs, u)
	}
	if c.installID == "" {
		c.installID = controllers.DefaultInstallID(c.publicURL)
	} else if !installIDPattern.MatchString(c.installID) {
		errs = append(errs, fmt.Errorf("--install-id %q: use 1 to 63 lowercase letters, digits and dashes", c.installID))
	}
	if c.takeoverBurst < 0 || c.takeoverPerMinute < 0 {
		errs = append(errs, fmt.Errorf("--takeover-burst and --takeover-per-minute must not be negative"))
	}
	policy, err := egress.New(egress.Options{Allowed: egress.SplitList(agentAllowed), AllowLoopback: allowLoopbackAgents, OwnAddrs: []netip.Addr{}})
	if err != nil {
		errs = append(errs, fmt.Errorf("--agent-allowed-destinations: %w", err))
	}
	c.agentPolicy = policy
	var err1, err2 error
	c.credentialsSecret, err1 = secretRef("--webhook-credentials-secret", credentials, "twilio-voice-operator-webhook-credentials")
	c.guardKeySecret, err2 = secretRef("--guard-key-secret", guardKey, "twilio-voice-operator-guard-key")
	errs = append(errs, err1, err2)
	if streamToken != "" {
		ref, err := secretRef("--stream-token-secret", streamToken, "")
		errs = append(errs, err)
		c.streamTokenSecret = ref
	}
	return c, errors.Join(errs...)
}

// secretRef parses namespace/name, defaulting to def in the pod's namespace.
func secretRef(flagName, v, def string) (types.NamespacedName, error) {
	if v == "" {
		ns := podNamespace()
		if ns == "" {
			return types.NamespacedName{}, fmt.Errorf("%s is required outside a pod (no POD_NAMESPACE and no service account namespace file)", flagName)
		}
		return types.NamespacedName{Namespace: ns, Name: def}, nil
	}
	ns, name, ok := strings.Cut(v, "/")
	if !ok || ns == "" || name == "" {
		return types.NamespacedName{}, fmt.Errorf("%s must be namespace/name, got %q", flagName, v)
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

var installIDPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// voiceURLs maps earlier public URLs to the voice URLs this operator may have
// pointed numbers at: unmarked (before install markers), marked with this
// install's ID, and marked with the ID derived from that URL.
func voiceURLs(publicURLs []string, installID string) []string {
	out := make([]string, 0, 3*len(publicURLs))
	for _, u := range publicURLs {
		out = append(out, u+controllers.VoicePath, controllers.InstallVoiceURL(u, installID),
			controllers.InstallVoiceURL(u, controllers.DefaultInstallID(u)))
	}
	return out
}

// podNamespace is the namespace the manager runs in, when in a pod.
func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "manager: invalid flags:", err)
		os.Exit(2)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&cfg.zap)))
	if err := run(cfg); err != nil {
		ctrl.Log.Error(err, "Manager stopped")
		os.Exit(1)
	}
}

func run(cfg config) error {
	restCfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	restCfg.QPS, restCfg.Burst = float32(cfg.kubeQPS), cfg.kubeBurst
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: cfg.metricsAddr},
		HealthProbeBindAddress:  cfg.probeAddr,
		LeaderElection:          cfg.leaderElect,
		LeaderElectionID:        "twilio-voice-operator.loquent.io",
		LeaderElectionNamespace: cfg.leaderElectionNS,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	direct, err := client.New(restCfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("create client: %w", err)
	}
	if cfg.streamTokenSecret.Name != "" {
		if err := controllers.EnsureStreamTokenSecret(ctx, direct, cfg.streamTokenSecret); err != nil {
			return fmt.Errorf("stream-token secret: %w", err)
		}
	}
	guardKey, err := controllers.LoadOrCreateGuardKey(ctx, direct, cfg.guardKeySecret)
	if err != nil {
		return fmt.Errorf("guard key: %w", err)
	}
	if err := controllers.Setup(ctx, mgr, controllers.Options{
		VoiceURL:                    controllers.InstallVoiceURL(cfg.publicURL, cfg.installID),
		PollInterval:                cfg.pollInterval,
		ConcurrentReconciles:        cfg.concurrentReconciles,
		MaxConcurrentTwilioRequests: cfg.twilioConcurrency,
		AllowedAPIURLs:              cfg.allowedAPIURLs,
		SharedSIDNamespaces:         cfg.sharedSIDNamespaces,
		WebhookCredentialsSecret:    cfg.credentialsSecret,
		GuardKey:                    guardKey,
		AgentPolicy:                 cfg.agentPolicy,
		// The unmarked URL of this public URL is what earlier versions set.
		EarlierVoiceURLs:  append(voiceURLs(cfg.previousPublicURLs, cfg.installID), cfg.publicURL+controllers.VoicePath),
		Preflight:         cfg.preflight,
		TakeoverBurst:     cfg.takeoverBurst,
		TakeoverPerMinute: cfg.takeoverPerMinute,
	}); err != nil {
		return err
	}
	// +kubebuilder:scaffold:builder
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("add ready check: %w", err)
	}
	ctrl.Log.Info("Starting manager", "publicURL", cfg.publicURL, "installID", cfg.installID, "preflight", cfg.preflight, "pollInterval", cfg.pollInterval)
	return mgr.Start(ctx)
}
