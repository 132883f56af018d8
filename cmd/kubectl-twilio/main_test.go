package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/controlplane"
	"github.com/loquent/twilio-voice-operator/internal/twilio"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

const (
	accountSID = "AC00000000000000000000000000000c1a"
	authToken  = "cliTestAuthToken0123"
	// A second Twilio account, which only plan -f's file declares.
	legacySID   = "AC00000000000000000000000000000c1b"
	legacyToken = "cliTestAuthToken0456"
	// The account of the plan and button tests' numbers.
	planSID   = "AC00000000000000000000000000000c1c"
	planToken = "cliTestAuthToken0789"
)

var (
	k8s        client.Client
	kubeconfig string
	sim        *twiliosim.Server
	simURL     string
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	env, cfg, err := controlplane.Start(filepath.Join("..", ".."), true)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	dir, err := os.MkdirTemp("", "kubectl-twilio-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := controlplane.WriteKubeconfig(env, kubeconfig, "cli-user", "system:masters"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(twiliov1.AddToScheme(scheme))
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	sim = twiliosim.New()
	sim.AddAccount(twiliosim.Account{SID: accountSID, AuthToken: authToken})
	sim.AddNumber(twiliosim.Number{PhoneNumber: "+14155550100", FriendlyName: "Support line", VoiceURL: "https://voice.example.com/twilio/voice"})
	sim.AddNumber(twiliosim.Number{PhoneNumber: "+14155550101", FriendlyName: "Sales"})
	sim.AddNumber(twiliosim.Number{PhoneNumber: "+14155550102", VoiceURL: "https://old-platform.example.com/voice"})
	sim.AddNumber(twiliosim.Number{PhoneNumber: "+14155550103", VoiceApplicationSID: "AP00000000000000000000000000000001"})
	addPlanNumbers(sim)
	if simURL, err = sim.Start("127.0.0.1:0"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = sim.Close() }()
	return m.Run()
}

// scenario makes a namespace with the account and two TwilioPhoneNumbers, as
// an operator would have left them: +14155550100 taken over (its original
// saved), +14155550101 taken over with no original URL.
func scenario(t *testing.T) string {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "cli-"}}
	g.Expect(k8s.Create(ctx, ns)).To(Succeed())
	g.Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "creds"},
		StringData: map[string]string{"authToken": authToken}})).To(Succeed())
	g.Expect(k8s.Create(ctx, &twiliov1.TwilioAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "acme"},
		Spec: twiliov1.TwilioAccountSpec{AccountSID: accountSID, CredentialsSecretRef: twiliov1.SecretReference{Name: "creds"}, APIURL: simURL}})).To(Succeed())
	for number, prev := range map[string]string{"+14155550100": "https://old.example.com/support", "+14155550101": ""} {
		n := &twiliov1.TwilioPhoneNumber{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: objectName(twilioNumber(number))},
			Spec:       twiliov1.TwilioPhoneNumberSpec{AccountRef: twiliov1.LocalObjectReference{Name: "acme"}, PhoneNumber: number},
		}
		g.Expect(k8s.Create(ctx, n)).To(Succeed())
		n.Status.PreviousVoiceURL = &prev
		g.Expect(k8s.Status().Update(ctx, n)).To(Succeed())
	}
	return ns.Name
}

func kubectlTwilio(args ...string) (stdout, stderr string, code int) {
	return kubectlTwilioStdin("", args...)
}

func kubectlTwilioStdin(stdin string, args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), append([]string{"--kubeconfig", kubeconfig, "--allowed-api-urls", simURL}, args...), strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), code
}

// The account's spec.apiURL is tenant-written: the plugin, like the manager,
// sends credentials there only when told to.
func TestAPIURLMustBeAllowed(t *testing.T) {
	g := NewWithT(t)
	ns := scenario(t)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"--kubeconfig", kubeconfig, "numbers", "acme", "-n", ns}, strings.NewReader(""), &out, &errOut)
	g.Expect(code).To(Equal(1))
	g.Expect(errOut.String()).To(ContainSubstring("--allowed-api-urls"))
}

// The table is the original system's imported-numbers list: every number of
// the Twilio account, managed or not, with the managing object's state and
// the three states of the previous URL.
func TestNumbersTable(t *testing.T) {
	g := NewWithT(t)
	ns := scenario(t)
	setReady(t, client.ObjectKey{Namespace: ns, Name: "tel-14155550100"}, 0, metav1.ConditionFalse, twiliov1.ReasonWebhookUnreachable, "preflight failed")
	out, stderr, code := kubectlTwilio("numbers", "acme", "-n", ns)
	g.Expect(code).To(Equal(0), stderr)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	g.Expect(strings.Fields(lines[0])).To(Equal([]string{"NUMBER", "FRIENDLY", "NAME", "LIVE", "ROUTING", "MANAGED", "BY", "STATE", "PREVIOUS", "URL"}))
	g.Expect(lines[1]).To(MatchRegexp(`^\+14155550100\s+Support line\s+https://voice.example.com/twilio/voice\s+` + ns + `/tel-14155550100\s+WebhookUnreachable\s+https://old.example.com/support$`))
	g.Expect(lines[2]).To(MatchRegexp(`^\+14155550101\s+Sales\s+\(nowhere\)\s+`+ns+`/tel-14155550101\s+-\s+\(none\)$`), "no Ready condition yet")
	g.Expect(lines[3]).To(MatchRegexp(`^\+14155550102\s+\(415\) 555-0102\s+https://old-platform.example.com/voice\s+-\s+-\s+-$`))
	g.Expect(lines[4]).To(MatchRegexp(`^\+14155550103\s+\(415\) 555-0103\s+TwiML application AP0+1\s+-\s+-\s+-$`))

	setReady(t, client.ObjectKey{Namespace: ns, Name: "tel-14155550101"}, 0, metav1.ConditionTrue, twiliov1.ReasonConfigured, "Inbound calls route to the webhook server")
	out, _, _ = kubectlTwilio("numbers", "acme", "-n", ns)
	g.Expect(out).To(MatchRegexp(`(?m)^\+14155550101\s+Sales\s+\(nowhere\)\s+` + ns + `/tel-14155550101\s+Configured\s+\(none\)$`))
	g.Expect(lines[len(lines)-1]).To(Equal("4 numbers in Twilio account " + accountSID + ", 2 managed by a TwilioPhoneNumber"))
}

// -o yaml prints the unmanaged numbers as objects the API server accepts,
// Disabled unless asked otherwise, so applying them changes nothing in Twilio.
func TestNumbersYAMLImportsTheRest(t *testing.T) {
	g := NewWithT(t)
	ns := scenario(t)
	out, stderr, code := kubectlTwilio("numbers", "acme", "--namespace", ns, "-o", "yaml")
	g.Expect(code).To(Equal(0), stderr)
	docs := strings.Split(out, "---\n")
	g.Expect(docs).To(HaveLen(2), "one object per unmanaged number")
	for i, want := range []string{"+14155550102", "+14155550103"} {
		g.Expect(docs[i]).To(HavePrefix("# (415) 555-01"), "each object starts with what the number is and where its calls go")
		obj := decodeAndDryRun(g, docs[i])
		g.Expect(obj.GetNamespace()).To(Equal(ns))
		g.Expect(field(obj, "spec", "phoneNumber")).To(Equal(want))
		g.Expect(field(obj, "spec", "voiceRouting")).To(Equal("Disabled"))
		g.Expect(field(obj, "spec", "accountRef", "name")).To(Equal("acme"))
	}

	out, _, code = kubectlTwilio("numbers", "acme", "-n", ns, "-o", "yaml", "--routing", "Enabled")
	g.Expect(code).To(Equal(0))
	g.Expect(field(decodeAndDryRun(g, strings.Split(out, "---\n")[0]), "spec", "voiceRouting")).To(Equal("Enabled"))
}

// A friendly name is Twilio's, free text: it cannot break the YAML that
// -o yaml prints (its comment stays one line).
func TestNumbersYAMLSurvivesOddFriendlyNames(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "cli-"}}
	g.Expect(k8s.Create(ctx, ns)).To(Succeed())
	g.Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "creds"},
		StringData: map[string]string{"authToken": legacyToken}})).To(Succeed())
	g.Expect(k8s.Create(ctx, &twiliov1.TwilioAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "legacy"},
		Spec: twiliov1.TwilioAccountSpec{AccountSID: legacySID, CredentialsSecretRef: twiliov1.SecretReference{Name: "creds"}, APIURL: simURL}})).To(Succeed())
	out, stderr, code := kubectlTwilio("numbers", "legacy", "-n", ns.Name, "-o", "yaml")
	g.Expect(code).To(Equal(0), stderr)
	docs := strings.Split(out, "---\n")
	g.Expect(docs).To(HaveLen(3))
	g.Expect(docs[2]).To(HavePrefix("# Front desk line: #1; live routing: https://legacy.example.com/voice\napiVersion: "))
	for _, doc := range docs {
		g.Expect(field(decodeAndDryRun(g, doc), "metadata", "name")).To(HavePrefix("tel-1415555030"))
	}
}

func TestNumbersErrorsSayWhatIsWrong(t *testing.T) {
	ns := scenario(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no account", []string{"numbers"}, 2, "Usage:"},
		{"unknown subcommand", []string{"buy", "acme"}, 2, "Usage:"},
		{"bad output", []string{"numbers", "acme", "-o", "json"}, 2, "-o must be table or yaml"},
		{"bad routing", []string{"numbers", "acme", "-o", "yaml", "--routing", "On"}, 2, "--routing must be Disabled or Enabled"},
		{"missing account", []string{"numbers", "nope", "-n", ns}, 1, `get TwilioAccount ` + ns + `/nope`},
		{"flag of another subcommand", []string{"numbers", "acme", "--wait"}, 2, "-wait does not apply to numbers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, stderr, code := kubectlTwilio(tc.args...)
			g.Expect(code).To(Equal(tc.code))
			g.Expect(stderr).To(ContainSubstring(tc.want))
		})
	}
}

func decodeAndDryRun(g Gomega, doc string) *unstructured.Unstructured {
	obj := &unstructured.Unstructured{}
	g.Expect(yamlToObject(doc, obj)).To(Succeed(), doc)
	g.Expect(k8s.Create(context.Background(), obj.DeepCopy(), client.DryRunAll)).To(Succeed(), "the API server accepts:\n%s", doc)
	return obj
}

func twilioNumber(e164 string) twilio.Number { return twilio.Number{PhoneNumber: e164} }

func yamlToObject(doc string, obj *unstructured.Unstructured) error {
	j, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		return err
	}
	return obj.UnmarshalJSON(j)
}

func field(obj *unstructured.Unstructured, path ...string) string {
	v, _, _ := unstructured.NestedString(obj.Object, path...)
	return v
}
