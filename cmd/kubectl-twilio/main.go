// Command kubectl-twilio is a kubectl plugin for Twilio numbers and the
// TwilioPhoneNumbers that route them.
//
// `kubectl twilio numbers ACCOUNT` lists every incoming number of a
// TwilioAccount's Twilio account, not only those a TwilioPhoneNumber
// manages, with its live routing, the object that manages it, that object's
// state and the original routing saved. It is the original system's
// imported-numbers list, which cannot live in the TwilioAccount's status
// (thousands of numbers do not fit one object). `-o yaml` prints a
// TwilioPhoneNumber for each number nothing manages yet, with voiceRouting
// Disabled: applying them changes nothing in Twilio.
//
// `kubectl twilio plan` says, without changing anything, what the operator
// would do to each TwilioPhoneNumber of a namespace or of a file (plan.go).
//
// `kubectl twilio configure` and `restore` are the original system's
// Configure Voice and Restore buttons: they set spec.voiceRouting and can
// wait for the operator's verdict (buttons.go).
//
// numbers and plan read the accounts' credentials Secrets, so the user needs
// get on them.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"

	// Mozilla's roots, used when the system has none: HTTPS to Twilio.
	_ "golang.org/x/crypto/x509roots/fallback"
)

const usage = `Twilio numbers and the TwilioPhoneNumbers that route them.

Usage:
  kubectl twilio numbers ACCOUNT [-n NAMESPACE] [-o table|yaml] [--routing Disabled|Enabled]
  kubectl twilio plan [-n NAMESPACE] [-f FILE]... [--public-url URL] [--install-id ID] [--preflight]
  kubectl twilio configure NAME|NUMBER [-n NAMESPACE] [--wait] [--timeout DURATION]
  kubectl twilio restore NAME|NUMBER [-n NAMESPACE] [--wait] [--timeout DURATION]
  kubectl twilio available --account NAME [-n NAMESPACE] [--country US] [--type Local|Mobile|TollFree]
                           [--area-code 415] [--contains DIGITS] [--limit N] [-o table|yaml]

numbers: every number of a TwilioAccount's Twilio account.
  -o table (default): NUMBER, FRIENDLY NAME, LIVE ROUTING, MANAGED BY, STATE, PREVIOUS URL.
  STATE is the managing object's Ready reason (Configured, NoAgent, Contested…), "-" when there is none.
  PREVIOUS URL is "-" when no original was saved, "(none)" when the number had no Voice URL.
  -o yaml: a TwilioPhoneNumber for each number nothing manages yet (voiceRouting from --routing).

plan: what the operator would do to each TwilioPhoneNumber of the namespace, or of
  FILE (-f, repeatable; "-" reads stdin; multi-document YAML whose Secrets and
  TwilioAccounts take precedence over the cluster's), without writing anything:
  it only reads Kubernetes objects and lists each Twilio account's numbers once.
  Columns: NAMESPACE/NAME, NUMBER, ACTION, DETAIL. ACTION is one of
    TakeOver, AlreadyRouted, HandBack, NoChange (what will happen), or why nothing will:
    Conflict, AccountNotReady, NumberNotFound, NoAgent, AgentNotAllowed, TrunkAttached,
    Contested, PreflightFailing, Invalid; Unknown when the plan could not be made for it.
  The operator's voice URL is {--public-url}/twilio/voice?tvo-install={--install-id};
  what the flags do not give is taken from status.configuredVoiceURL of an object in
  the namespace. When it stays unknown, a number routes to the operator only if it is
  at an object's status.configuredVoiceURL.
  --preflight sends one signed test call per account to the voice URL, as the operator
  does before taking numbers over (internal/preflight); it writes nothing.
  Exit status 0 when the plan was made (Conflicts included), 1 when not.

configure / restore: the Configure Voice and Restore buttons. They set spec.voiceRouting
  of the TwilioPhoneNumber whose name or spec.phoneNumber is NAME|NUMBER to Enabled or
  Disabled and say what the operator will do. --wait then waits, up to --timeout, for
  the operator to report the new generation Ready (Configured or OriginalUnknown;
  RoutingDisabled), and fails with its reason (NoAgent, WebhookUnreachable…) otherwise.

available: numbers on sale to the TwilioAccount's Twilio account (one search; buys nothing).
  -o table (default): NUMBER, LOCALITY, REGION, CAPABILITIES.
  -o yaml: a TwilioPhoneNumber with spec.acquire: Purchase for each; applying one buys the
  number, configured in the purchase itself, when the TwilioAccount allows purchases.

Flags:
`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

type options struct {
	kubeconfig, context, namespace string
	allowedAPIURLs                 string
	timeout                        time.Duration

	// numbers
	output, routing string
	// plan
	files                stringList
	publicURL, installID string
	preflight            bool
	// configure, restore
	wait bool
	// available
	available availableOptions
}

// Flags every subcommand takes, and those of each subcommand.
var (
	commonFlags     = []string{"kubeconfig", "context", "namespace", "n", "timeout", "allowed-api-urls"}
	subcommandFlags = map[string][]string{
		"numbers":   {"o", "output", "routing"},
		"plan":      {"f", "filename", "public-url", "install-id", "preflight"},
		"configure": {"wait"},
		"restore":   {"wait"},
		"available": availableFlagNames,
	}
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// run executes the command; the exit status is 0 on success, 2 for bad
// usage and 1 for a failure.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("kubectl twilio", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { _, _ = fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "path to the kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&o.context, "context", "", "kubeconfig context to use")
	fs.StringVar(&o.namespace, "namespace", "", "namespace (default: the context's)")
	fs.StringVar(&o.namespace, "n", "", "shorthand for --namespace")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "how long the command may take: its Kubernetes and Twilio reads, and --wait")
	fs.StringVar(&o.allowedAPIURLs, "allowed-api-urls", os.Getenv("KUBECTL_TWILIO_ALLOWED_API_URLS"), "comma-separated origins a TwilioAccount's spec.apiURL may name besides Twilio's own hosts, as the manager's flag of that name (default $KUBECTL_TWILIO_ALLOWED_API_URLS); the account's credentials are sent there")
	fs.StringVar(&o.output, "o", "table", "numbers: output, table or yaml")
	fs.StringVar(&o.output, "output", "table", "numbers: output, table or yaml")
	fs.StringVar(&o.routing, "routing", string(twiliov1.VoiceRoutingDisabled), "numbers: voiceRouting of the objects -o yaml prints: Disabled (take nothing over) or Enabled")
	fs.Var(&o.files, "f", "plan: a file of TwilioPhoneNumbers (and the TwilioAccounts and Secrets they use) to plan instead of the namespace's objects; - is stdin; repeatable")
	fs.Var(&o.files, "filename", "plan: same as -f")
	fs.StringVar(&o.publicURL, "public-url", os.Getenv("KUBECTL_TWILIO_PUBLIC_URL"), "plan: the manager's --public-url (default $KUBECTL_TWILIO_PUBLIC_URL)")
	fs.StringVar(&o.installID, "install-id", os.Getenv("KUBECTL_TWILIO_INSTALL_ID"), "plan: the manager's --install-id (default $KUBECTL_TWILIO_INSTALL_ID)")
	fs.BoolVar(&o.preflight, "preflight", false, "plan: run the operator's preflight (one signed test call per account) against the voice URL")
	fs.BoolVar(&o.wait, "wait", false, "configure, restore: wait for the operator to report the outcome (bounded by --timeout)")
	registerAvailableFlags(fs, &o.available)
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(positional) == 0 || subcommandFlags[positional[0]] == nil {
		fs.Usage()
		return 2
	}
	sub := positional[0]
	if msg := checkFlags(fs, sub); msg != "" {
		_, _ = fmt.Fprintln(stderr, "kubectl twilio:", msg)
		return 2
	}
	wantArgs := map[string]int{"numbers": 2, "plan": 1, "configure": 2, "restore": 2, "available": 1}[sub]
	switch {
	case len(positional) != wantArgs:
		fs.Usage()
		return 2
	case o.output != "table" && o.output != "yaml":
		_, _ = fmt.Fprintf(stderr, "kubectl twilio: -o must be table or yaml, not %q\n", o.output)
		return 2
	case o.routing != string(twiliov1.VoiceRoutingDisabled) && o.routing != string(twiliov1.VoiceRoutingEnabled):
		_, _ = fmt.Fprintf(stderr, "kubectl twilio: --routing must be Disabled or Enabled, not %q\n", o.routing)
		return 2
	case sub == "available" && o.available.validate() != "":
		_, _ = fmt.Fprintln(stderr, "kubectl twilio:", o.available.validate())
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	switch sub {
	case "numbers":
		err = numbers(ctx, o, positional[1], stdout)
	case "plan":
		err = plan(ctx, o, stdin, stdout, stderr)
	case "configure":
		err = press(ctx, o, configureButton, positional[1], stdout)
	case "restore":
		err = press(ctx, o, restoreButton, positional[1], stdout)
	case "available":
		err = available(ctx, o, stdout)
	}
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "kubectl twilio:", err)
		return 1
	}
	return 0
}

// checkFlags refuses flags that the subcommand does not take; it returns
// what is wrong, or "".
func checkFlags(fs *flag.FlagSet, sub string) string {
	var wrong []string
	fs.Visit(func(f *flag.Flag) {
		if !slices.Contains(commonFlags, f.Name) && !slices.Contains(subcommandFlags[sub], f.Name) {
			wrong = append(wrong, "-"+f.Name)
		}
	})
	if len(wrong) == 0 {
		return ""
	}
	sort.Strings(wrong)
	return fmt.Sprintf("%s %s not apply to %s (see kubectl twilio -h)", strings.Join(wrong, ", "), map[bool]string{true: "does", false: "do"}[len(wrong) == 1], sub)
}

// parseInterspersed parses flags wherever they stand among the arguments,
// as kubectl does, and returns the others in order.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// kube returns a client for the kubeconfig's cluster and the namespace to
// work in (--namespace, else the context's).
func kube(o options) (client.Client, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	kc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{
		CurrentContext: o.context, Context: clientcmdapi.Context{Namespace: o.namespace},
	})
	ns, _, err := kc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("namespace: %w", err)
	}
	cfg, err := kc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(twiliov1.AddToScheme(scheme))
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, "", err
	}
	return k8s, ns, nil
}
