package main

import (
	"context"
	"regexp"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

// ourVoiceURL is the operator's voice URL in these tests: --public-url
// https://voice.example.com --install-id test.
const ourVoiceURL = "https://voice.example.com/twilio/voice?tvo-install=test"

var ourFlags = []string{"--public-url", "https://voice.example.com", "--install-id", "test"}

// addPlanNumbers adds the numbers the plan and button tests route, in an
// account of their own. Each test uses its own numbers: plan looks for
// Conflicts in every namespace.
func addPlanNumbers(s *twiliosim.Server) {
	s.AddAccount(twiliosim.Account{SID: planSID, AuthToken: planToken})
	for number, r := range map[string]twiliosim.Number{
		// TestPlanShowsWhatTheOperatorWouldDo
		"+14155550200": {VoiceURL: "https://old.example.com/a"},
		"+14155550201": {TrunkSID: "TK00000000000000000000000000000201"},
		"+14155550202": {TrunkSID: "TK00000000000000000000000000000202"},
		"+14155550203": {VoiceURL: "https://old.example.com/c"},
		"+14155550204": {VoiceURL: "https://other.example.com/twilio/voice?tvo-install=other"},
		"+14155550205": {VoiceURL: ourVoiceURL},
		"+14155550206": {VoiceURL: ourVoiceURL},
		"+14155550207": {VoiceURL: "https://old.example.com/d"},
		"+14155550208": {VoiceURL: "https://old.example.com/e"},
		"+14155550209": {VoiceURL: "https://old.example.com/f"},
		"+14155550218": {VoiceApplicationSID: "AP00000000000000000000000000000218"},
		"+14155550219": {VoiceURL: "https://old.example.com/k"},
		// TestPlanVoiceURLFromStatus
		"+14155550212": {VoiceURL: ourVoiceURL},
		"+14155550213": {VoiceURL: "https://old.example.com/g"},
		// TestPlanVoiceURLUnknown
		"+14155550214": {VoiceURL: "https://old.example.com/h"},
		// TestPlanPreflight
		"+14155550216": {VoiceURL: "https://old.example.com/i"},
		"+14155550217": {VoiceURL: "https://old.example.com/j"},
	} {
		r.PhoneNumber, r.AccountSID = number, planSID
		s.AddNumber(r)
	}
	s.AddAccount(twiliosim.Account{SID: legacySID, AuthToken: legacyToken})
	s.AddNumber(twiliosim.Number{AccountSID: legacySID, PhoneNumber: "+14155550300", VoiceURL: "https://legacy.example.com/voice"})
	s.AddNumber(twiliosim.Number{AccountSID: legacySID, PhoneNumber: "+14155550301", VoiceApplicationSID: "AP00000000000000000000000000000301"})
	s.AddNumber(twiliosim.Number{AccountSID: legacySID, PhoneNumber: "+14155550302", FriendlyName: "Front\ndesk\u2028line: #1", VoiceURL: "https://legacy.example.com/voice"})
}

// namespace makes a namespace with the TwilioAccount acme (the emulator's
// account of the plan tests) and its credentials Secret.
func namespace(t *testing.T) string {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "cli-"}}
	g.Expect(k8s.Create(ctx, ns)).To(Succeed())
	g.Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "creds"},
		StringData: map[string]string{"authToken": planToken}})).To(Succeed())
	g.Expect(k8s.Create(ctx, &twiliov1.TwilioAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "acme"},
		Spec: twiliov1.TwilioAccountSpec{AccountSID: planSID, CredentialsSecretRef: twiliov1.SecretReference{Name: "creds"}, APIURL: simURL}})).To(Succeed())
	return ns.Name
}

// number creates a TwilioPhoneNumber of account acme; edit adjusts the
// spec before it is created and status (when non-nil) what the operator
// would have recorded.
func number(t *testing.T, ns, name, phone string, edit func(*twiliov1.TwilioPhoneNumberSpec), status func(*twiliov1.TwilioPhoneNumberStatus)) *twiliov1.TwilioPhoneNumber {
	t.Helper()
	g := NewWithT(t)
	obj := &twiliov1.TwilioPhoneNumber{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: twiliov1.TwilioPhoneNumberSpec{AccountRef: twiliov1.LocalObjectReference{Name: "acme"}, PhoneNumber: phone,
			Agent: &twiliov1.AgentSpec{URL: "wss://agent.example.com/stream"}},
	}
	if edit != nil {
		edit(&obj.Spec)
	}
	g.Expect(k8s.Create(context.Background(), obj)).To(Succeed())
	if status != nil {
		status(&obj.Status)
		g.Expect(k8s.Status().Update(context.Background(), obj)).To(Succeed())
	}
	return obj
}

func noAgent(s *twiliov1.TwilioPhoneNumberSpec)  { s.Agent = nil }
func disabled(s *twiliov1.TwilioPhoneNumberSpec) { s.VoiceRouting = twiliov1.VoiceRoutingDisabled }

// setReady writes the Ready condition (and status.observedGeneration) as
// the operator would for generation gen (0: the object's current one).
func setReady(t *testing.T, key client.ObjectKey, gen int64, status metav1.ConditionStatus, reason, msg string) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var obj twiliov1.TwilioPhoneNumber
		if err := k8s.Get(context.Background(), key, &obj); err != nil {
			return err
		}
		g := gen
		if g == 0 {
			g = obj.Generation
		}
		obj.Status.ObservedGeneration = g
		meta.SetStatusCondition(&obj.Status.Conditions, metav1.Condition{Type: twiliov1.ConditionReady, Status: status, Reason: reason, Message: msg, ObservedGeneration: g})
		return k8s.Status().Update(context.Background(), &obj)
	})
	NewWithT(t).Expect(err).To(Succeed())
}

// planRow is one row of plan's table.
type planRow struct{ number, action, detail string }

var planRowRE = regexp.MustCompile(`^(\S+)\s+(\S+)\s+(\S+)\s+(.*)$`)

// parsePlan returns plan's rows by NAMESPACE/NAME and its summary line.
func parsePlan(g Gomega, out string) (map[string]planRow, string) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	rows := map[string]planRow{}
	header := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "NAMESPACE/NAME") {
			header = i
			g.Expect(strings.Fields(l)).To(Equal([]string{"NAMESPACE/NAME", "NUMBER", "ACTION", "DETAIL"}))
			continue
		}
		if header < 0 || l == "" {
			continue
		}
		if i == len(lines)-1 {
			break
		}
		m := planRowRE.FindStringSubmatch(l)
		g.Expect(m).NotTo(BeNil(), "row %q", l)
		rows[m[1]] = planRow{number: m[2], action: m[3], detail: m[4]}
	}
	g.Expect(header).To(BeNumerically(">=", 0), out)
	return rows, lines[len(lines)-1]
}

// snapshot is the resourceVersion of every object plan reads in ns.
func snapshot(g Gomega, ns string) map[string]string {
	ctx := context.Background()
	out := map[string]string{}
	for kind, list := range map[string]client.ObjectList{
		"TwilioPhoneNumber": &twiliov1.TwilioPhoneNumberList{},
		"TwilioAccount":     &twiliov1.TwilioAccountList{},
		"Secret":            &corev1.SecretList{},
	} {
		g.Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		g.Expect(meta.EachListItem(list, func(o runtime.Object) error {
			obj := o.(client.Object)
			out[kind+"/"+obj.GetName()] = obj.GetResourceVersion()
			return nil
		})).To(Succeed())
	}
	return out
}

// expectNoTwilioWrites checks that the emulator saw only GETs since the
// last ResetRequests, and at least one.
func expectNoTwilioWrites(g Gomega) {
	reqs := sim.Requests()
	g.Expect(reqs).NotTo(BeEmpty())
	for _, r := range reqs {
		g.Expect(r.Method).To(Equal("GET"), "%s %s", r.Method, r.Path)
	}
}
