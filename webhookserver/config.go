package webhookserver

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/loquent/twilio-voice-operator/internal/egress"
	"github.com/loquent/twilio-voice-operator/internal/publicurl"
)

// Config is the webhook server's validated command line.
type Config struct {
	// PublicURL is the https://host (no path) through which Twilio reaches the server.
	PublicURL string
	// ListenAddress serves the Twilio routes.
	ListenAddress string
	// MetricsAddress serves /metrics; "0" disables it.
	MetricsAddress string
	// ProbeAddress serves /healthz and /readyz; "0" disables it.
	ProbeAddress string
	// Namespaces limits the watched namespaces; empty watches all.
	Namespaces []string
	// ShutdownGracePeriod is how long live calls may continue after SIGTERM.
	ShutdownGracePeriod time.Duration
	// CredentialsSecret is the Secret where the manager publishes the
	// verified accounts' auth tokens; the only credentials the server reads.
	CredentialsSecret types.NamespacedName
	// StreamTokenSecret names the Secret holding the stream token key (key "key"),
	// or is empty when StreamTokenKeyFile is used.
	StreamTokenSecret types.NamespacedName
	// StreamTokenKeyFile is a file holding the stream token key, or "".
	StreamTokenKeyFile string
	// AgentDialTimeout bounds connecting to an agent.
	AgentDialTimeout time.Duration
	// StreamTokenTTL is how long after answering a call its stream may start.
	StreamTokenTTL time.Duration
	// StreamTokenReloadInterval is how often the stream token keys are
	// re-read while running; 0 reads them only at start.
	StreamTokenReloadInterval time.Duration
	// AgentAllowedDestinations is the agent (and event sink) egress
	// allow-list (host names, *.domains, IPs, CIDRs); empty allows every
	// destination that is not refused anyway (see internal/egress).
	AgentAllowedDestinations []string
	// AllowLoopbackAgents lets agents and event sinks on loopback through
	// (local demos and tests only); the server's own ports stay refused.
	AllowLoopbackAgents bool
	// Zap configures logging.
	Zap zap.Options
}

// ParseFlags parses and validates the command line (without the program
// name). Every error names the offending flag; all problems are reported
// together. flag.ErrHelp is returned for -h.
func ParseFlags(args []string) (Config, error) {
	return parseFlags(os.Stderr, args)
}

// parseFlags is ParseFlags with the usage and parse errors written to out.
func parseFlags(out io.Writer, args []string) (Config, error) {
	var c Config
	var allowHTTP, allowReserved bool
	var namespaces, tokenSecret, agentAllowed, credentialsSecret string
	fs := flag.NewFlagSet("webhookserver", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.PublicURL, "public-url", "", "Public base URL through which Twilio reaches this server, https://host (required). Signatures are checked over it; TwiML points at <public-url>/twilio/recording and wss://host/twilio/stream/{AccountSid}.")
	fs.BoolVar(&allowHTTP, "allow-http-public-url", false, "Accept an http:// public URL (local demos only; Twilio requires https and wss).")
	fs.BoolVar(&allowReserved, "allow-reserved-public-url", false, "Accept a public URL on a reserved example host (example.com, .test, .invalid…), which no one serves; tests only. Without it such a placeholder is refused.")
	fs.StringVar(&c.ListenAddress, "listen-address", ":8080", "Address of the Twilio webhook and media stream listener.")
	fs.StringVar(&c.MetricsAddress, "metrics-bind-address", ":9090", "Address of the Prometheus /metrics endpoint; \"0\" disables it.")
	fs.StringVar(&c.ProbeAddress, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes; \"0\" disables them.")
	fs.StringVar(&namespaces, "namespaces", "", "Comma-separated namespaces whose TwilioPhoneNumbers and TwilioAccounts are served; empty serves all.")
	fs.DurationVar(&c.ShutdownGracePeriod, "shutdown-grace-period", 30*time.Second, "After SIGTERM, how long live calls may continue before their streams are closed. Keep it below the pod's terminationGracePeriodSeconds.")
	fs.StringVar(&credentialsSecret, "credentials-secret", "", "namespace/name of the Secret where the manager publishes the auth tokens of the TwilioAccounts it verified (the manager's --webhook-credentials-secret); the only credentials this server reads (required).")
	fs.StringVar(&tokenSecret, "stream-token-secret", "", "namespace/name of a Secret whose key \"key\" holds the HMAC keys for per-call stream tokens, one per line (at least 32 bytes each; the first signs, every one verifies); all replicas must share it. Exactly one of this and --stream-token-key-file.")
	fs.StringVar(&c.StreamTokenKeyFile, "stream-token-key-file", "", "File holding the stream token HMAC keys, one per line (at least 32 bytes each; the first signs, every one verifies), e.g. a mounted Secret.")
	fs.DurationVar(&c.AgentDialTimeout, "agent-dial-timeout", 5*time.Second, "How long connecting to a number's agent may take before the call's stream is closed.")
	fs.DurationVar(&c.StreamTokenTTL, "stream-token-ttl", 5*time.Minute, "How long after the voice webhook answered a call its media stream may start.")
	fs.DurationVar(&c.StreamTokenReloadInterval, "stream-token-reload-interval", 30*time.Second, "How often the stream token keys are re-read, so a rotation needs no restart (at least 1s; 0 reads them only at start).")
	fs.StringVar(&agentAllowed, "agent-allowed-destinations", "", "Comma-separated allow-list of agent and event sink destinations: host names, *.domain (any name below it), IP addresses, CIDRs. Empty allows any destination except loopback, link-local (169.254.0.0/16, fe80::/10), unspecified and multicast addresses and this server's own ports, which are refused either way. Checked on the resolved address when connecting.")
	fs.BoolVar(&c.AllowLoopbackAgents, "allow-loopback-agents", false, "Allow agents and event sinks on loopback addresses (127.0.0.0/8, ::1, localhost), except this server's own ports. For local demos and tests only: in a pod, loopback is the pod itself.")
	c.Zap.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q (all options are flags)", fs.Args())
	}

	var errs []error
	u, err := publicurl.Parse(c.PublicURL, allowHTTP)
	if err == nil && !allowReserved {
		err = publicurl.CheckNotReserved(u)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("--public-url %w", err))
	}
	c.PublicURL = u
	if err := checkAddress(c.ListenAddress, false); err != nil {
		errs = append(errs, fmt.Errorf("--listen-address %w", err))
	}
	if err := checkAddress(c.MetricsAddress, true); err != nil {
		errs = append(errs, fmt.Errorf("--metrics-bind-address %w", err))
	}
	if err := checkAddress(c.ProbeAddress, true); err != nil {
		errs = append(errs, fmt.Errorf("--health-probe-bind-address %w", err))
	}
	if err := checkDistinct(map[string]string{
		"--listen-address": c.ListenAddress, "--metrics-bind-address": c.MetricsAddress, "--health-probe-bind-address": c.ProbeAddress,
	}); err != nil {
		errs = append(errs, err)
	}
	for _, ns := range strings.Split(namespaces, ",") {
		ns = strings.TrimSpace(ns)
		if ns == "" {
			continue
		}
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--namespaces: %q is not a namespace name: %s", ns, strings.Join(msgs, "; ")))
			continue
		}
		c.Namespaces = append(c.Namespaces, ns)
	}
	if c.ShutdownGracePeriod < 0 {
		errs = append(errs, fmt.Errorf("--shutdown-grace-period must not be negative, got %s", c.ShutdownGracePeriod))
	}
	if ns, name, ok := strings.Cut(credentialsSecret, "/"); !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
		errs = append(errs, fmt.Errorf("--credentials-secret must be namespace/name of the manager's --webhook-credentials-secret, got %q", credentialsSecret))
	} else {
		c.CredentialsSecret = types.NamespacedName{Namespace: ns, Name: name}
	}
	switch {
	case tokenSecret == "" && c.StreamTokenKeyFile == "":
		errs = append(errs, errors.New("--stream-token-secret or --stream-token-key-file is required (replicas must share the stream token key)"))
	case tokenSecret != "" && c.StreamTokenKeyFile != "":
		errs = append(errs, errors.New("--stream-token-secret and --stream-token-key-file are mutually exclusive"))
	case tokenSecret != "":
		ns, name, ok := strings.Cut(tokenSecret, "/")
		if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
			errs = append(errs, fmt.Errorf("--stream-token-secret must be namespace/name, got %q", tokenSecret))
		} else {
			c.StreamTokenSecret = types.NamespacedName{Namespace: ns, Name: name}
		}
	}
	if c.AgentDialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--agent-dial-timeout must be positive, got %s", c.AgentDialTimeout))
	}
	if c.StreamTokenTTL < 10*time.Second || c.StreamTokenTTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("--stream-token-ttl must be between 10s and 24h, got %s", c.StreamTokenTTL))
	}
	if c.StreamTokenReloadInterval != 0 && c.StreamTokenReloadInterval < time.Second {
		errs = append(errs, fmt.Errorf("--stream-token-reload-interval must be 0 or at least 1s, got %s", c.StreamTokenReloadInterval))
	}
	c.AgentAllowedDestinations = egress.SplitList(agentAllowed)
	if err := egress.ParseAllowList(c.AgentAllowedDestinations); err != nil {
		errs = append(errs, fmt.Errorf("--agent-allowed-destinations: %w", err))
	}
	return c, errors.Join(errs...)
}

// checkAddress accepts host:port (host may be empty); "0" when disableable.
func checkAddress(addr string, disableable bool) error {
	if disableable && addr == "0" {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	return nil
}

// checkDistinct refuses two listeners on one address.
func checkDistinct(addrs map[string]string) error {
	seen := map[string]string{}
	var errs []error
	for _, flagName := range []string{"--listen-address", "--metrics-bind-address", "--health-probe-bind-address"} {
		a := addrs[flagName]
		if a == "0" {
			continue
		}
		if other, ok := seen[a]; ok {
			errs = append(errs, fmt.Errorf("%s and %s are both %q", other, flagName, a))
			continue
		}
		seen[a] = flagName
	}
	return errors.Join(errs...)
}
