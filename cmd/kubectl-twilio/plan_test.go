package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/preflight"
	"github.com/loquent/twilio-voice-operator/internal/twiliosig"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

// Every action the operator can take, or refuse, for a namespace's objects,
// worked out from the cluster and one list of the Twilio account's numbers,
// with nothing written to either.
func TestPlanShowsWhatTheOperatorWouldDo(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := namespace(t)
	g.Expect(k8s.Create(ctx, &twiliov1.TwilioAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nocreds"},
		Spec: twiliov1.TwilioAccountSpec{AccountSID: planSID, CredentialsSecretRef: twiliov1.SecretReference{Name: "missing"}, APIURL: simURL}})).To(Succeed())
	suspended := &twiliov1.TwilioAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "suspended"},
		Spec: twiliov1.TwilioAccountSpec{AccountSID: planSID, CredentialsSecretRef: twiliov1.SecretReference{Name: "creds"}, APIURL: simURL}}
	g.Expect(k8s.Create(ctx, suspended)).To(Succeed())
	meta.SetStatusCondition(&suspended.Status.Conditions, metav1.Condition{Type: twiliov1.ConditionReady, Status: metav1.ConditionFalse,
		Reason: twiliov1.ReasonInvalidCredentials, Message: "Twilio refused the credentials"})
	g.Expect(k8s.Status().Update(ctx, suspended)).To(Succeed())

	saved := func(url string) func(*twiliov1.TwilioPhoneNumberStatus) {
		return func(s *twiliov1.TwilioPhoneNumberStatus) {
			s.ConfiguredVoiceURL = ourVoiceURL
			s.PreviousVoiceURL = &url
			s.SavedRouting = &twiliov1.SavedRouting{VoiceURL: url, VoiceMethod: "POST"}
		}
	}
	account := func(name string) func(*twiliov1.TwilioPhoneNumberSpec) {
		return func(s *twiliov1.TwilioPhoneNumberSpec) { s.AccountRef.Name = name }
	}
	number(t, ns, "takeover", "+14155550200", nil, nil)
	number(t, ns, "detach", "+14155550201", func(s *twiliov1.TwilioPhoneNumberSpec) { s.AllowTrunkDetach = true }, nil)
	number(t, ns, "trunk", "+14155550202", nil, nil)
	number(t, ns, "noagent", "+14155550203", noAgent, nil)
	number(t, ns, "contested", "+14155550204", nil, nil)
	number(t, ns, "routed", "+14155550205", nil, saved("https://old.example.com/routed"))
	number(t, ns, "handback", "+14155550206", disabled, saved("https://old.example.com/b"))
	number(t, ns, "nochange", "+14155550207", disabled, nil)
	number(t, ns, "conflict-a", "+14155550208", nil, nil)
	number(t, ns, "conflict-b", "+14155550208", nil, nil)
	number(t, ns, "unreachable", "+14155550209", nil, nil)
	setReady(t, client.ObjectKey{Namespace: ns, Name: "unreachable"}, 0, metav1.ConditionFalse, twiliov1.ReasonWebhookUnreachable,
		"POST "+ourVoiceURL+" answered 502 Bad Gateway")
	number(t, ns, "refused", "+14155550219", nil, nil)
	setReady(t, client.ObjectKey{Namespace: ns, Name: "refused"}, 0, metav1.ConditionFalse, twiliov1.ReasonAgentNotAllowed,
		"spec.agent.url is refused by the agent egress policy")
	number(t, ns, "notfound", "+14155550299", nil, nil)
	number(t, ns, "nocreds", "+14155550210", account("nocreds"), nil)
	number(t, ns, "suspended", "+14155550211", account("suspended"), nil)
	number(t, ns, "application", "+14155550218", nil, nil)
	number(t, ns, "buy", "+14155550298", func(s *twiliov1.TwilioPhoneNumberSpec) { s.Acquire = twiliov1.AcquirePurchase }, nil)

	before := snapshot(g, ns)
	sim.ResetRequests()
	out, stderr, code := kubectlTwilio(append([]string{"plan", "-n", ns}, ourFlags...)...)
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(stderr).To(BeEmpty())
	g.Expect(out).To(HavePrefix("Voice URL: " + ourVoiceURL + " (from --public-url and --install-id)\n"))

	rows, summary := parsePlan(g, out)
	g.Expect(rows).To(HaveLen(17))
	expect := func(name, phone, action string, detail ...string) {
		t.Helper()
		r, ok := rows[ns+"/"+name]
		g.Expect(ok).To(BeTrue(), "a row for %s in\n%s", name, out)
		g.Expect(r.number).To(Equal(phone), name)
		g.Expect(r.action).To(Equal(action), "%s: %s", name, r.detail)
		for _, d := range detail {
			g.Expect(r.detail).To(ContainSubstring(d), name)
		}
	}
	expect("takeover", "+14155550200", "TakeOver", "https://old.example.com/a → "+ourVoiceURL, "saved for restore")
	expect("detach", "+14155550201", "TakeOver", "SIP trunk TK00000000000000000000000000000201 → "+ourVoiceURL, "detaches SIP trunk TK00000000000000000000000000000201")
	expect("application", "+14155550218", "TakeOver", "clears TwiML application AP00000000000000000000000000000218")
	expect("trunk", "+14155550202", "TrunkAttached", "TK00000000000000000000000000000202", "allowTrunkDetach: true")
	expect("noagent", "+14155550203", "NoAgent", "spec.agent is not set", "https://old.example.com/c")
	expect("contested", "+14155550204", "Contested", "https://other.example.com/twilio/voice?tvo-install=other", "another install's")
	expect("routed", "+14155550205", "AlreadyRouted", "already routes to "+ourVoiceURL+": no change")
	expect("handback", "+14155550206", "HandBack", ourVoiceURL+" → https://old.example.com/b", "restored")
	expect("nochange", "+14155550207", "NoChange", "left as it is (https://old.example.com/d)")
	expect("conflict-a", "+14155550208", "TakeOver")
	expect("conflict-b", "+14155550208", "Conflict", "TwilioPhoneNumber "+ns+"/conflict-a manages +14155550208 first")
	expect("unreachable", "+14155550209", "PreflightFailing", "WebhookUnreachable", "502 Bad Gateway")
	expect("refused", "+14155550219", "AgentNotAllowed", "egress policy")
	expect("notfound", "+14155550299", "NumberNotFound", "not an incoming phone number of Twilio account "+planSID)
	expect("buy", "+14155550298", "PurchaseNotAllowed", "does not allow purchases (spec.purchasing.enabled)")
	expect("nocreds", "+14155550210", "AccountNotReady", "Secret "+ns+"/missing")
	expect("suspended", "+14155550211", "AccountNotReady", `TwilioAccount "suspended" is not Ready (InvalidCredentials`)
	g.Expect(summary).To(Equal("Plan: 1 PurchaseNotAllowed, 4 TakeOver, 1 AlreadyRouted, 1 HandBack, 1 NoChange, 1 Conflict, 2 AccountNotReady, 1 NumberNotFound, " +
		"1 NoAgent, 1 AgentNotAllowed, 1 TrunkAttached, 1 Contested, 1 PreflightFailing (17 TwilioPhoneNumbers; nothing was changed)"))

	// Nothing was written: no Twilio request but GETs, the account's numbers
	// listed once, and every object as it was.
	expectNoTwilioWrites(g)
	g.Expect(sim.CountRequests(twiliosim.KindListNumbers)).To(Equal(1))
	g.Expect(snapshot(g, ns)).To(Equal(before))
}

// plan -f plans a file's objects before they exist: its Secret and
// TwilioAccount take precedence over the cluster's, and Conflicts within
// the file count too. Nothing is created.
func TestPlanFromFile(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := namespace(t)
	// The cluster's Secret of that name holds a wrong token: the file's wins.
	g.Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy-creds"},
		StringData: map[string]string{"authToken": "wrongToken0000000000"}})).To(Succeed())
	// An object the cluster has, holding the original it saved; the file
	// turns its routing off.
	number(t, ns, "tel-14155550302", "+14155550302", func(s *twiliov1.TwilioPhoneNumberSpec) { s.AccountRef.Name = "legacy" },
		func(s *twiliov1.TwilioPhoneNumberStatus) {
			prev := "https://old.example.com/front-desk"
			s.PreviousVoiceURL, s.SavedRouting = &prev, &twiliov1.SavedRouting{VoiceURL: prev}
		})
	file := fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata:
  name: legacy-creds
stringData:
  authToken: %s
---
apiVersion: twilio.loquent.io/v1alpha1
kind: TwilioAccount
metadata:
  name: legacy
spec:
  accountSid: %s
  credentialsSecretRef: {name: legacy-creds}
  apiURL: %s
---
apiVersion: twilio.loquent.io/v1alpha1
kind: TwilioPhoneNumber
metadata:
  name: tel-14155550300
spec:
  accountRef: {name: legacy}
  phoneNumber: "+14155550300"
  agent: {url: wss://agent.example.com/stream}
---
apiVersion: twilio.loquent.io/v1alpha1
kind: TwilioPhoneNumber
metadata:
  name: tel-14155550301
spec:
  accountRef: {name: legacy}
  phoneNumber: "+14155550301"
  voiceRouting: Disabled
---
apiVersion: twilio.loquent.io/v1alpha1
kind: TwilioPhoneNumber
metadata:
  name: zz-dup-14155550301
  namespace: %s
spec:
  accountRef: {name: legacy}
  phoneNumber: "+14155550301"
  agent: {url: wss://agent.example.com/stream}
---
apiVersion: twilio.loquent.io/v1alpha1
kind: TwilioPhoneNumber
metadata:
  name: tel-14155550302
spec:
  accountRef: {name: legacy}
  phoneNumber: "+14155550302"
  voiceRouting: Disabled
---
apiVersion: twilio.loquent.io/v1alpha1
kind: TwilioPhoneNumber
metadata:
  name: bad
spec:
  accountRef: {name: legacy}
  phoneNumber: "555"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: unrelated
`, legacyToken, legacySID, simURL, ns)
	path := filepath.Join(t.TempDir(), "numbers.yaml")
	g.Expect(os.WriteFile(path, []byte(file), 0o600)).To(Succeed())

	before := snapshot(g, ns)
	var outputs []string
	for _, args := range [][]string{{"plan", "-n", ns, "-f", path}, {"plan", "-n", ns, "-f", "-"}} {
		sim.ResetRequests()
		out, stderr, code := kubectlTwilioStdin(file, append(args, ourFlags...)...)
		g.Expect(code).To(Equal(0), stderr)
		g.Expect(stderr).To(ContainSubstring("ignoring 1 objects of other kinds in the files (ConfigMap)"))
		rows, summary := parsePlan(g, out)
		g.Expect(rows).To(HaveLen(5))
		g.Expect(rows[ns+"/tel-14155550300"]).To(Equal(planRow{"+14155550300", "TakeOver",
			"https://legacy.example.com/voice → " + ourVoiceURL + " (the live routing is saved for restore)"}))
		g.Expect(rows[ns+"/tel-14155550301"].action).To(Equal("NoChange"))
		g.Expect(rows[ns+"/tel-14155550301"].detail).To(ContainSubstring("TwiML application AP00000000000000000000000000000301"))
		g.Expect(rows[ns+"/zz-dup-14155550301"].action).To(Equal("Conflict"))
		g.Expect(rows[ns+"/zz-dup-14155550301"].detail).To(ContainSubstring(ns + "/tel-14155550301 manages +14155550301 first (created in the same second, it sorts first)"))
		g.Expect(rows[ns+"/bad"]).To(Equal(planRow{"555", "Invalid", `the API server would refuse it: spec.phoneNumber "555" is not in E.164 form (for example +14155550100)`}))
		g.Expect(rows[ns+"/tel-14155550302"]).To(Equal(planRow{"+14155550302", "HandBack",
			"https://legacy.example.com/voice → https://old.example.com/front-desk (the saved original is restored, then forgotten)"}))
		g.Expect(summary).To(Equal("Plan: 1 TakeOver, 1 HandBack, 1 NoChange, 1 Conflict, 1 Invalid (5 TwilioPhoneNumbers; nothing was changed)"))
		expectNoTwilioWrites(g)
		g.Expect(sim.CountRequests(twiliosim.KindListNumbers)).To(Equal(1), "the file's account, listed once")
		for _, r := range sim.Requests() {
			g.Expect(r.AccountSID).To(Equal(legacySID))
		}
		outputs = append(outputs, out)
	}
	g.Expect(outputs[1]).To(Equal(outputs[0]), "-f - reads the same file from stdin")
	g.Expect(snapshot(g, ns)).To(Equal(before))
	err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "legacy"}, &twiliov1.TwilioAccount{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the file's account is not created: %v", err)

	// Without the file's Secret the cluster's wrong token is used.
	noSecret := file[strings.Index(file, "---\n")+4:]
	out, stderr, code := kubectlTwilioStdin(noSecret, append([]string{"plan", "-n", ns, "-f", "-"}, ourFlags...)...)
	g.Expect(code).To(Equal(0), stderr)
	rows, _ := parsePlan(g, out)
	g.Expect(rows[ns+"/tel-14155550300"].action).To(Equal("AccountNotReady"))
	g.Expect(rows[ns+"/tel-14155550300"].detail).To(ContainSubstring(`Twilio refused the credentials of TwilioAccount "legacy"`))
}

// Without --public-url and --install-id, the voice URL is the one the
// operator recorded on the namespace's objects; either flag overrides its
// part.
func TestPlanVoiceURLFromStatus(t *testing.T) {
	g := NewWithT(t)
	t.Setenv("KUBECTL_TWILIO_PUBLIC_URL", "")
	t.Setenv("KUBECTL_TWILIO_INSTALL_ID", "")
	ns := namespace(t)
	number(t, ns, "routed", "+14155550212", nil, func(s *twiliov1.TwilioPhoneNumberStatus) { s.ConfiguredVoiceURL = ourVoiceURL })
	number(t, ns, "new", "+14155550213", nil, nil)

	out, stderr, code := kubectlTwilio("plan", "-n", ns)
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(out).To(HavePrefix("Voice URL: " + ourVoiceURL + " (from the public URL and install ID in status.configuredVoiceURL of " + ns + "/routed)\n"))
	rows, _ := parsePlan(g, out)
	g.Expect(rows[ns+"/routed"].action).To(Equal("AlreadyRouted"))
	g.Expect(rows[ns+"/new"].detail).To(HavePrefix("https://old.example.com/g → " + ourVoiceURL + " "))

	// Another install ID: the number at the operator's earlier URL is
	// re-pointed, not Contested.
	out, stderr, code = kubectlTwilio("plan", "-n", ns, "--install-id", "blue")
	g.Expect(code).To(Equal(0), stderr)
	blue := "https://voice.example.com/twilio/voice?tvo-install=blue"
	g.Expect(out).To(HavePrefix("Voice URL: " + blue + " (from --install-id and the public URL in status.configuredVoiceURL of " + ns + "/routed)\n"))
	rows, _ = parsePlan(g, out)
	g.Expect(rows[ns+"/routed"]).To(Equal(planRow{"+14155550212", "TakeOver", ourVoiceURL + " → " + blue + " (the operator's own earlier URL: no original is saved)"}))
}

// With no voice URL known, the plan still says what happens, naming the
// target for what it is; --preflight needs the URL.
func TestPlanVoiceURLUnknown(t *testing.T) {
	g := NewWithT(t)
	t.Setenv("KUBECTL_TWILIO_PUBLIC_URL", "")
	t.Setenv("KUBECTL_TWILIO_INSTALL_ID", "")
	ns := namespace(t)
	number(t, ns, "new", "+14155550214", nil, nil)

	out, stderr, code := kubectlTwilio("plan", "-n", ns)
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(out).To(HavePrefix("Voice URL: the operator's voice URL (unknown: pass --public-url and --install-id"))
	rows, _ := parsePlan(g, out)
	g.Expect(rows[ns+"/new"]).To(Equal(planRow{"+14155550214", "TakeOver", "https://old.example.com/h → the operator's voice URL (the live routing is saved for restore)"}))

	_, stderr, code = kubectlTwilio("plan", "-n", ns, "--preflight")
	g.Expect(code).To(Equal(1))
	g.Expect(stderr).To(ContainSubstring("--preflight needs the operator's voice URL"))

	_, stderr, code = kubectlTwilio("plan", "-n", ns, "--public-url", "https://voice.example.com/path")
	g.Expect(code).To(Equal(1))
	g.Expect(stderr).To(ContainSubstring("--public-url"))
}

// --preflight signs one test call per account to the voice URL, as the
// operator does; when it fails nothing is taken over through the account.
func TestPlanPreflight(t *testing.T) {
	g := NewWithT(t)
	ns := namespace(t)
	number(t, ns, "p1", "+14155550216", nil, nil)
	number(t, ns, "p2", "+14155550217", nil, nil)

	var mu sync.Mutex
	var calls []string
	healthy := false
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		voiceURL := srv.URL + "/twilio/voice?tvo-install=test"
		mu.Lock()
		calls = append(calls, r.PostForm.Get("To"))
		ok := healthy
		mu.Unlock()
		if r.Header.Get(twiliosig.SignatureHeader) != twiliosig.Sign(planToken, voiceURL, r.PostForm) || r.PostForm.Get(preflight.FormField) != "1" {
			http.Error(w, "bad signature", http.StatusForbidden)
			return
		}
		if !ok {
			_, _ = fmt.Fprint(w, "<Response/>") // not a webhook server of this operator
			return
		}
		w.Header().Set(preflight.HeaderOutcome, preflight.OutcomeOK)
		w.Header().Set(preflight.HeaderRoute, ns+"/p1")
		stream, _ := preflight.StreamURL(voiceURL, planSID)
		_, _ = fmt.Fprintf(w, `<Response><Connect><Stream url="%s"><Parameter name="to" value="%s"/></Stream></Connect></Response>`, stream, r.PostForm.Get("To"))
	}))
	defer srv.Close()

	args := []string{"plan", "-n", ns, "--preflight", "--public-url", srv.URL, "--install-id", "test"}
	out, stderr, code := kubectlTwilio(args...)
	g.Expect(code).To(Equal(0), stderr)
	rows, summary := parsePlan(g, out)
	for _, name := range []string{"p1", "p2"} {
		g.Expect(rows[ns+"/"+name].action).To(Equal("PreflightFailing"))
		g.Expect(rows[ns+"/"+name].detail).To(ContainSubstring("the preflight through " + ns + "/p1 failed"))
		g.Expect(rows[ns+"/"+name].detail).To(ContainSubstring("not served by a twilio-voice-operator webhook server"))
	}
	g.Expect(summary).To(HavePrefix("Plan: 2 PreflightFailing "))
	g.Expect(calls).To(Equal([]string{"+14155550216"}), "one preflight for the account")

	mu.Lock()
	healthy, calls = true, nil
	mu.Unlock()
	out, stderr, code = kubectlTwilio(args...)
	g.Expect(code).To(Equal(0), stderr)
	rows, _ = parsePlan(g, out)
	g.Expect(rows[ns+"/p1"].action).To(Equal("TakeOver"))
	g.Expect(rows[ns+"/p2"].action).To(Equal("TakeOver"))
	g.Expect(calls).To(HaveLen(1))
}

func TestPlanErrors(t *testing.T) {
	ns := namespace(t)
	number(t, ns, "n", "+14155550220", func(s *twiliov1.TwilioPhoneNumberSpec) { s.AccountRef.Name = "elsewhere" }, nil)
	g := NewWithT(t)
	g.Expect(k8s.Create(context.Background(), &twiliov1.TwilioAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "elsewhere"},
		Spec: twiliov1.TwilioAccountSpec{AccountSID: planSID, CredentialsSecretRef: twiliov1.SecretReference{Name: "creds"}, APIURL: "http://127.0.0.1:1"}})).To(Succeed())
	empty := namespace(t)
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"extra argument", "", []string{"plan", "acme"}, 2, "Usage:"},
		{"flag of another subcommand", "", []string{"plan", "-o", "yaml"}, 2, "-o does not apply to plan"},
		{"missing file", "", []string{"plan", "-f", "/nonexistent.yaml"}, 1, "/nonexistent.yaml"},
		{"file without numbers", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", []string{"plan", "-f", "-"}, 1, "no TwilioPhoneNumber in -"},
		{"unsupported version", "apiVersion: twilio.loquent.io/v2\nkind: TwilioPhoneNumber\nmetadata: {name: x}\n", []string{"plan", "-f", "-"}, 1, "apiVersion twilio.loquent.io/v2 is not supported"},
		{"api URL not allowed", "", []string{"plan", "-n", ns}, 1, "the plan is incomplete: 1 of 1 TwilioPhoneNumbers could not be planned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, stderr, code := kubectlTwilioStdin(tc.stdin, tc.args...)
			g.Expect(code).To(Equal(tc.code), stderr)
			g.Expect(stderr).To(ContainSubstring(tc.want))
		})
	}
	out, stderr, code := kubectlTwilio("plan", "-n", empty)
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(out).To(Equal("No TwilioPhoneNumbers in namespace " + empty + ": nothing to plan\n"))

	out, _, _ = kubectlTwilio("plan", "-n", ns)
	rows, _ := parsePlan(g, out)
	g.Expect(rows[ns+"/n"].action).To(Equal("Unknown"))
	g.Expect(rows[ns+"/n"].detail).To(ContainSubstring(`spec.apiURL "http://127.0.0.1:1" is not allowed`))
}
