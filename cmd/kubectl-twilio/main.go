// Command kubectl-twilio is a kubectl plugin: `kubectl twilio numbers ACCOUNT`
// lists every incoming number of a TwilioAccount's Twilio account, not only
// those a TwilioPhoneNumber manages, with its live routing, the object that
// manages it and the original routing saved. It is the original system's
// imported-numbers list, which cannot live in the TwilioAccount's status
// (thousands of numbers do not fit one object).
//
// `-o yaml` prints a TwilioPhoneNumber for each number nothing manages yet,
// with voiceRouting Disabled: applying them changes nothing in Twilio, and
// setting Enabled on one is the original system's "Configure Voice".
//
// It reads the account's credentials Secret, so the user needs get on it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/controllers"
	"github.com/loquent/twilio-voice-operator/internal/egress"
	"github.com/loquent/twilio-voice-operator/internal/twilio"

	// Mozilla's roots, used when the system has none: HTTPS to Twilio.
	_ "golang.org/x/crypto/x509roots/fallback"
)

const usage = `List every number of a TwilioAccount's Twilio account.

Usage:
  kubectl twilio numbers ACCOUNT [-n NAMESPACE] [-o table|yaml] [--routing Disabled|Enabled]

-o table (default): NUMBER, FRIENDLY NAME, LIVE ROUTING, MANAGED BY, PREVIOUS URL.
  PREVIOUS URL is "-" when no original was saved, "(none)" when the number had no Voice URL.
-o yaml: a TwilioPhoneNumber for each number nothing manages yet (voiceRouting from --routing).

Flags:
`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	kubeconfig, context, namespace string
	output, routing                string
	allowedAPIURLs                 string
	timeout                        time.Duration
}

// run executes the command; the exit status is 0 on success, 2 for bad
// usage and 1 for a failure.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("kubectl twilio", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { _, _ = fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "path to the kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&o.context, "context", "", "kubeconfig context to use")
	fs.StringVar(&o.namespace, "namespace", "", "namespace of the TwilioAccount (default: the context's)")
	fs.StringVar(&o.namespace, "n", "", "shorthand for --namespace")
	fs.StringVar(&o.output, "o", "table", "output: table or yaml")
	fs.StringVar(&o.output, "output", "table", "output: table or yaml")
	fs.StringVar(&o.routing, "routing", string(twiliov1.VoiceRoutingDisabled), "voiceRouting of the objects -o yaml prints: Disabled (take nothing over) or Enabled")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "how long the Kubernetes and Twilio reads may take")
	fs.StringVar(&o.allowedAPIURLs, "allowed-api-urls", os.Getenv("KUBECTL_TWILIO_ALLOWED_API_URLS"), "comma-separated origins a TwilioAccount's spec.apiURL may name besides Twilio's own hosts, as the manager's flag of that name (default $KUBECTL_TWILIO_ALLOWED_API_URLS); the account's credentials are sent there")
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	switch {
	case len(positional) != 2 || positional[0] != "numbers":
		fs.Usage()
		return 2
	case o.output != "table" && o.output != "yaml":
		_, _ = fmt.Fprintf(stderr, "kubectl twilio: -o must be table or yaml, not %q\n", o.output)
		return 2
	case o.routing != string(twiliov1.VoiceRoutingDisabled) && o.routing != string(twiliov1.VoiceRoutingEnabled):
		_, _ = fmt.Fprintf(stderr, "kubectl twilio: --routing must be Disabled or Enabled, not %q\n", o.routing)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := numbers(ctx, o, positional[1], stdout); err != nil {
		_, _ = fmt.Fprintln(stderr, "kubectl twilio:", err)
		return 1
	}
	return 0
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

// row is one number of the account.
type row struct {
	number twilio.Number
	owner  *twiliov1.TwilioPhoneNumber // nil when nothing manages it
	others int                         // further objects naming it (Conflict)
}

func numbers(ctx context.Context, o options, account string, out io.Writer) error {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	kc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{
		CurrentContext: o.context, Context: clientcmdapi.Context{Namespace: o.namespace},
	})
	ns, _, err := kc.Namespace()
	if err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	cfg, err := kc.ClientConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(twiliov1.AddToScheme(scheme))
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}

	var acct twiliov1.TwilioAccount
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: account}, &acct); err != nil {
		return fmt.Errorf("get TwilioAccount %s/%s: %w", ns, account, err)
	}
	conn, err := (&controllers.Connector{Reader: k8s, DefaultMaxConcurrent: 1, AllowedAPIURLs: egress.SplitList(o.allowedAPIURLs)}).Connect(ctx, &acct)
	if err != nil {
		return fmt.Errorf("credentials of TwilioAccount %s/%s: %w", ns, account, err)
	}
	live, err := conn.Client.ListNumbers(ctx)
	if err != nil {
		return fmt.Errorf("list the numbers of Twilio account %s: %w", acct.Spec.AccountSID, err)
	}
	var managed twiliov1.TwilioPhoneNumberList
	if err := k8s.List(ctx, &managed, client.InNamespace(ns)); err != nil {
		return fmt.Errorf("list TwilioPhoneNumbers in %s: %w", ns, err)
	}
	rows := join(live, managed.Items, account)
	if o.output == "yaml" {
		return printManifests(out, rows, ns, account, twiliov1.VoiceRouting(o.routing))
	}
	return printTable(out, rows, acct.Spec.AccountSID)
}

// join pairs each live number with the TwilioPhoneNumbers of this account
// that name it; the owner is the one the operator lets act (OwnsBefore).
func join(live []twilio.Number, objs []twiliov1.TwilioPhoneNumber, account string) []row {
	byNumber := map[string][]*twiliov1.TwilioPhoneNumber{}
	for i := range objs {
		if objs[i].Spec.AccountRef.Name == account {
			byNumber[objs[i].Spec.PhoneNumber] = append(byNumber[objs[i].Spec.PhoneNumber], &objs[i])
		}
	}
	rows := make([]row, 0, len(live))
	for _, n := range live {
		r := row{number: n}
		for _, o := range byNumber[n.PhoneNumber] {
			if r.owner == nil || twiliov1.OwnsBefore(o, r.owner) {
				r.owner = o
			}
		}
		if c := len(byNumber[n.PhoneNumber]); c > 1 {
			r.others = c - 1
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b row) int { return strings.Compare(a.number.PhoneNumber, b.number.PhoneNumber) })
	return rows
}

func printTable(out io.Writer, rows []row, accountSID string) error {
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "NUMBER\tFRIENDLY NAME\tLIVE ROUTING\tMANAGED BY\tPREVIOUS URL")
	managed := 0
	for _, r := range rows {
		by, prev := "-", "-"
		if r.owner != nil {
			managed++
			by = r.owner.Namespace + "/" + r.owner.Name
			if r.others > 0 {
				by += fmt.Sprintf(" (+%d in Conflict)", r.others)
			}
			if p := r.owner.Status.PreviousVoiceURL; p != nil {
				prev = *p
				if prev == "" {
					prev = "(none)"
				}
			}
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.number.PhoneNumber, orDash(r.number.FriendlyName), describe(r.number.Routing), by, prev)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "\n%d numbers in Twilio account %s, %d managed by a TwilioPhoneNumber\n", len(rows), accountSID, managed)
	return err
}

// printManifests prints a TwilioPhoneNumber for every number nothing manages.
func printManifests(out io.Writer, rows []row, ns, account string, routing twiliov1.VoiceRouting) error {
	first := true
	for _, r := range rows {
		if r.owner != nil {
			continue
		}
		obj := twiliov1.TwilioPhoneNumber{
			TypeMeta:   metav1.TypeMeta{APIVersion: twiliov1.GroupVersion.String(), Kind: "TwilioPhoneNumber"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: objectName(r.number)},
			Spec: twiliov1.TwilioPhoneNumberSpec{
				AccountRef:   twiliov1.LocalObjectReference{Name: account},
				PhoneNumber:  r.number.PhoneNumber,
				VoiceRouting: routing,
			},
		}
		data, err := yaml.Marshal(obj)
		if err != nil {
			return err
		}
		// Drop what a new object does not carry.
		text := strings.Replace(string(data), "  creationTimestamp: null\n", "", 1)
		text = strings.Replace(text, "status: {}\n", "", 1)
		text = strings.Replace(text, "  recording: {}\n", "", 1)
		text = fmt.Sprintf("# %s; live routing: %s\n", orDash(r.number.FriendlyName), describe(r.number.Routing)) + text
		if !first {
			text = "---\n" + text
		}
		first = false
		if _, err := io.WriteString(out, text); err != nil {
			return err
		}
	}
	if first {
		return errors.New("every number of the account is already managed by a TwilioPhoneNumber")
	}
	return nil
}

// objectName is a DNS-1123 name for a number: tel-14155550100.
func objectName(n twilio.Number) string {
	return "tel-" + strings.TrimPrefix(n.PhoneNumber, "+")
}

// describe says where a number's calls go, in Twilio's order of precedence.
func describe(r twilio.Routing) string {
	switch {
	case r.TrunkSID != "":
		return "SIP trunk " + r.TrunkSID
	case r.VoiceApplicationSID != "":
		return "TwiML application " + r.VoiceApplicationSID
	case r.VoiceURL != "":
		return r.VoiceURL
	default:
		return "(nowhere)"
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
