// Package e2e runs the system as it is deployed: both binaries built and run
// as processes against a real API server, each authenticated as its own
// ServiceAccount bound to exactly the RBAC the Helm chart renders, the Twilio
// emulator as a standalone process standing in for Twilio (read through its
// REST API, as anyone would read Twilio), and kubectl as the user.
package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/loquent/twilio-voice-operator/internal/devenv"
	"github.com/loquent/twilio-voice-operator/internal/sampleagent"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim/callsim"
)

const (
	root             = "../.."
	releaseNamespace = "tvo-system"
)

func helmBinary(t *testing.T) string {
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	h, _ := filepath.Abs(filepath.Join(root, "bin", "helm-v3.22.0"))
	if _, err := os.Stat(h); err != nil {
		t.Fatalf("helm not found at %s: run `make helm` (make test builds it)", h)
	}
	return h
}

func TestEndToEnd(t *testing.T) {
	g := NewWithT(t)
	// envtest logs through controller-runtime; the processes' own logs are what this test shows.
	ctrllog.SetLogger(logr.Discard())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	binDir := t.TempDir()
	g.Expect(devenv.Build(ctx, root, binDir, nil)).To(Succeed())

	rendered, err := exec.CommandContext(ctx, helmBinary(t), "template", "tvo", filepath.Join(root, "charts", "twilio-voice-operator"),
		"--namespace", releaseNamespace, "--set", "publicURL=https://voice.your-company.com").Output()
	g.Expect(err).NotTo(HaveOccurred(), "helm template")
	rbac := chartRBAC(t, rendered)

	var once sync.Once
	var setupErr error
	env, err := devenv.Start(ctx, devenv.Options{Root: root, BinDir: binDir, StandaloneEmulator: true,
		// The names the chart gives the manager's Secrets for release "tvo".
		CredentialsSecret: releaseNamespace + "/tvo-twilio-voice-operator-webhook-credentials",
		GuardKeySecret:    releaseNamespace + "/tvo-twilio-voice-operator-guard-key",
		Users: func(env *devenv.Env, process string) (string, error) {
			once.Do(func() { setupErr = applyRBAC(ctx, env, rbac) })
			if setupErr != nil {
				return "", setupErr
			}
			return serviceAccountKubeconfig(ctx, env, rbac.serviceAccounts[process])
		}})
	g.Expect(err).NotTo(HaveOccurred())
	defer env.Stop()
	defer func() {
		if t.Failed() {
			t.Logf("manager log:\n%s\nwebhookserver log:\n%s", env.Tail("manager", 40), env.Tail("webhookserver", 40))
		}
	}()

	samples := filepath.Join(env.Dir, "samples.yaml")
	g.Expect(os.WriteFile(samples, []byte(env.SampleYAML()), 0o600)).To(Succeed())
	kubectl(t, env, "apply", "-f", samples)
	kubectl(t, env, "wait", "--for=condition=Ready", "twilioaccount/acme", "--timeout=90s")
	kubectl(t, env, "wait", "--for=condition=Ready", "twiliophonenumbers", "--all", "--timeout=90s")

	// kubectl get is the seed's imported-numbers table.
	table := kubectl(t, env, "get", "twiliophonenumbers")
	header := strings.Fields(strings.SplitN(table, "\n", 2)[0])
	g.Expect(strings.Join(header, " ")).To(Equal("NAME NUMBER FRIENDLY NAME ROUTING PREVIOUS URL READY REASON AGE"))
	g.Expect(table).To(MatchRegexp(`support-line\s+\+14155550100\s+Support line\s+Enabled\s+` + devenv.OriginalURL + `\s+True\s+Configured`))
	g.Expect(table).To(MatchRegexp(`sales-line\s+\+14155550101\s+Sales line\s+Enabled\s+\(none\)\s+True\s+Configured`), "configured without a URL is not blank")

	// The plugin, found by kubectl on PATH, lists the whole Twilio account.
	numbers := kubectl(t, env, "twilio", "numbers", "acme")
	g.Expect(numbers).To(MatchRegexp(`\+14155550100\s+Support line\s+` + regexp.QuoteMeta(env.VoiceURL) + `\s+default/support-line\s+Configured\s+` + devenv.OriginalURL))
	g.Expect(numbers).To(MatchRegexp(`\+14155550101\s+Sales line\s+\S+\s+default/sales-line\s+Configured\s+\(none\)`))
	g.Expect(numbers).To(ContainSubstring("3 numbers in Twilio account " + devenv.AccountSID + ", 3 managed by a TwilioPhoneNumber"))

	// Twilio now sends every number's calls to the webhook server.
	for _, n := range devenv.SampleNumbers {
		tw := twilioNumber(g, env, n.E164)
		g.Expect([]string{tw.VoiceURL, tw.VoiceApplicationSID, tw.TrunkSID}).To(Equal([]string{env.VoiceURL, "", ""}), n.E164)
	}

	// The support line asks for its SMS too (spec.messaging: Enabled).
	g.Expect(twilioNumber(g, env, "+14155550100").SmsURL).To(HavePrefix(env.PublicURL + "/twilio/events#"))
	g.Expect(twilioNumber(g, env, "+14155550101").SmsURL).To(BeEmpty(), "messaging is off by default")

	// Another tenant names acme's account SID (an identifier, not a secret)
	// with a token it made up: the manager refuses it, and a call forged with
	// that token is refused by the webhook server, whose only credentials are
	// the ones the manager verified.
	forged := filepath.Join(env.Dir, "forged.yaml")
	g.Expect(os.WriteFile(forged, []byte(`apiVersion: v1
kind: Namespace
metadata: {name: tenant-a}
---
apiVersion: v1
kind: Secret
metadata: {name: made-up, namespace: tenant-a}
stringData: {authToken: made-up-token}
---
apiVersion: twilio.loquent.io/v1alpha1
kind: TwilioAccount
metadata: {name: acme, namespace: tenant-a}
spec:
  accountSid: `+devenv.AccountSID+`
  credentialsSecretRef: {name: made-up}
  apiURL: `+env.EmulatorURL+`
`), 0o600)).To(Succeed())
	kubectl(t, env, "apply", "-f", forged)
	g.Eventually(func() string {
		return kubectl(t, env, "get", "twilioaccount", "acme", "-n", "tenant-a", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}")
	}, 60*time.Second, 200*time.Millisecond).Should(Equal("InvalidCredentials"))
	voiceURL := twilioNumber(g, env, "+14155550100").VoiceURL
	forgedCall, err := callsim.Place(ctx, callsim.Call{VoiceURL: voiceURL, AuthToken: "made-up-token", AccountSID: devenv.AccountSID,
		From: "+15005550006", To: "+14155550100", MediaFrames: 1})
	g.Expect(err).To(HaveOccurred(), "a forged call is not answered")
	g.Expect(forgedCall.VoiceStatus).To(Equal(http.StatusForbidden))

	// A real call reaches the sample agent through the webhook server.
	res, err := callsim.Place(ctx, callsim.Call{VoiceURL: voiceURL, AuthToken: devenv.AuthToken, AccountSID: devenv.AccountSID,
		From: "+15005550006", To: "+14155550100", MediaFrames: 50, DTMF: []string{"7"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.VoiceStatus).To(Equal(http.StatusOK))
	g.Expect(res.Recording).NotTo(BeNil())
	g.Expect(res.Parameters).To(HaveKeyWithValue("to", "+14155550100"))
	g.Expect(res.ReceivedMedia).To(BeNumerically(">", 0), "the agent's audio reached the caller")
	g.Expect(res.RecordingCallbackStatus).To(Equal(http.StatusNoContent))
	// The caller's side may finish before the agent has read the last frames
	// the webhook server relayed: every frame must arrive, not at once.
	g.Eventually(func(g Gomega) {
		stats := agentStats(g, env)
		g.Expect(stats.LastTo).To(Equal("+14155550100"))
		g.Expect(stats.FramesIn).To(Equal(int64(res.SentMedia)))
		g.Expect(stats.Digits).To(Equal("7"))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())

	// Deleting the whole bundle (the Secret first, as the file lists it) hands
	// every number back exactly: the account and its Secret outlive them.
	kubectl(t, env, "delete", "-f", samples, "--wait", "--timeout=90s")
	g.Expect(kubectl(t, env, "get", "secrets,twilioaccounts,twiliophonenumbers", "-o", "name")).
		NotTo(Or(ContainSubstring("acme"), ContainSubstring("twiliophonenumber")), "everything in the bundle is gone")
	support := twilioNumber(g, env, "+14155550100")
	g.Expect([]string{support.VoiceURL, support.VoiceMethod, support.SmsURL}).To(Equal([]string{devenv.OriginalURL, "GET", devenv.OriginalSMSURL}))
	g.Expect(twilioNumber(g, env, "+14155550101").VoiceURL).To(BeEmpty())
	ivr := twilioNumber(g, env, "+14155550102")
	g.Expect([]string{ivr.VoiceApplicationSID, ivr.VoiceURL}).To(Equal([]string{"APde400000000000000000000000000002", ""}))

	// Nothing was refused for want of a permission the chart should grant.
	for _, p := range []string{"manager", "webhookserver"} {
		g.Expect(env.Tail(p, 100000)).NotTo(ContainSubstring("forbidden"), "%s hit an RBAC refusal", p)
	}
}

// restNumber is what Twilio's REST API says of a number (nulls read as "").
type restNumber struct {
	VoiceURL            string `json:"voice_url"`
	VoiceMethod         string `json:"voice_method"`
	VoiceApplicationSID string `json:"voice_application_sid"`
	TrunkSID            string `json:"trunk_sid"`
	SmsURL              string `json:"sms_url"`
}

// twilioNumber reads a number from the emulator's REST API with plain HTTP,
// not with the operator's adapter, so the check shares no code with what it checks.
func twilioNumber(g Gomega, env *devenv.Env, e164 string) restNumber {
	req, err := http.NewRequest(http.MethodGet, env.EmulatorURL+"/2010-04-01/Accounts/"+devenv.AccountSID+
		"/IncomingPhoneNumbers.json?PhoneNumber="+url.QueryEscape(e164), nil)
	g.Expect(err).NotTo(HaveOccurred())
	req.SetBasicAuth(devenv.AccountSID, devenv.AuthToken)
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	var page struct {
		Numbers []struct {
			PhoneNumber string `json:"phone_number"`
			restNumber
		} `json:"incoming_phone_numbers"`
	}
	g.Expect(json.NewDecoder(resp.Body).Decode(&page)).To(Succeed())
	for _, n := range page.Numbers {
		if n.PhoneNumber == e164 {
			return n.restNumber
		}
	}
	g.Expect(page.Numbers).To(ContainElement(HaveField("PhoneNumber", e164)), "%s is not in the emulated account", e164)
	return restNumber{}
}

func kubectl(t *testing.T, env *devenv.Env, args ...string) string {
	t.Helper()
	out, err := env.Kubectl(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func agentStats(g Gomega, env *devenv.Env) sampleagent.Stats {
	var s sampleagent.Stats
	resp, err := http.Get(env.AgentStatsURL)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	g.Expect(json.NewDecoder(resp.Body).Decode(&s)).To(Succeed())
	return s
}

// renderedRBAC is the RBAC part of the chart's output.
type renderedRBAC struct {
	manifest        []byte            // ServiceAccounts, (Cluster)Roles and bindings
	serviceAccounts map[string]string // "manager" / "webhookserver" → ServiceAccount name
}

func chartRBAC(t *testing.T, rendered []byte) renderedRBAC {
	t.Helper()
	out := renderedRBAC{serviceAccounts: map[string]string{}}
	var docs []string
	for _, doc := range strings.Split(string(rendered), "\n---") {
		var u unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil || u.Object == nil {
			continue
		}
		switch u.GetKind() {
		case "ServiceAccount":
			if strings.Contains(u.GetName(), "webhook") {
				out.serviceAccounts["webhookserver"] = u.GetName()
			} else {
				out.serviceAccounts["manager"] = u.GetName()
			}
		case "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
		default:
			continue
		}
		docs = append(docs, doc)
	}
	if out.serviceAccounts["manager"] == "" || out.serviceAccounts["webhookserver"] == "" {
		t.Fatalf("the chart rendered ServiceAccounts %v; want one for each binary", out.serviceAccounts)
	}
	out.manifest = []byte(strings.Join(docs, "\n---"))
	return out
}

func applyRBAC(ctx context.Context, env *devenv.Env, rbac renderedRBAC) error {
	if _, err := env.Kubectl(ctx, "create", "namespace", releaseNamespace); err != nil {
		return err
	}
	path := filepath.Join(env.Dir, "chart-rbac.yaml")
	if err := os.WriteFile(path, rbac.manifest, 0o600); err != nil {
		return err
	}
	_, err := env.Kubectl(ctx, "apply", "-f", path)
	return err
}

// serviceAccountKubeconfig writes a kubeconfig that authenticates as the
// ServiceAccount with a token from the TokenRequest API.
func serviceAccountKubeconfig(ctx context.Context, env *devenv.Env, sa string) (string, error) {
	token, err := env.Kubectl(ctx, "create", "token", sa, "-n", releaseNamespace, "--duration=2h")
	if err != nil {
		return "", err
	}
	cfg, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		return "", err
	}
	for _, auth := range cfg.AuthInfos {
		auth.ClientCertificateData, auth.ClientKeyData = nil, nil
		auth.ClientCertificate, auth.ClientKey = "", ""
		auth.Token = strings.TrimSpace(token)
	}
	path := filepath.Join(env.Dir, sa+".kubeconfig")
	return path, clientcmd.WriteToFile(*cfg, path)
}
