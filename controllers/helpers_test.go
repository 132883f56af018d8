package controllers

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

const (
	wait = 30 * time.Second
	tick = 50 * time.Millisecond
)

var numberSeq atomic.Int64

// nextE164 returns a phone number no other test uses.
func nextE164() string {
	return fmt.Sprintf("+1415555%04d", numberSeq.Add(1))
}

// createAccount makes a credentials Secret and a TwilioAccount pointing at the emulator.
func createAccount(t *testing.T, ns, token string, mutate ...func(*twiliov1.TwilioAccount)) string {
	t.Helper()
	ctx := context.Background()
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "twilio-credentials"},
		StringData: map[string]string{SecretKeyAuthToken: token},
	}
	if err := k8s.Create(ctx, secret); err != nil {
		t.Fatalf("create Secret: %v", err)
	}
	acct := &twiliov1.TwilioAccount{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "main"},
		Spec: twiliov1.TwilioAccountSpec{
			AccountSID:           testAccountSID,
			CredentialsSecretRef: twiliov1.SecretReference{Name: secret.Name},
			APIURL:               simURL,
		},
	}
	for _, m := range mutate {
		m(acct)
	}
	if err := k8s.Create(ctx, acct); err != nil {
		t.Fatalf("create TwilioAccount: %v", err)
	}
	return acct.Name
}

// addTwilioNumber puts a number into the emulated account.
func addTwilioNumber(e164 string, mutate func(*twiliosim.Number)) twiliosim.Number {
	n := twiliosim.Number{AccountSID: testAccountSID, PhoneNumber: e164}
	if mutate != nil {
		mutate(&n)
	}
	return emulator.AddNumber(n)
}

// newScenario makes a namespace with a TwilioAccount for the emulated account
// and a fresh number in Twilio, shaped by mutate.
func newScenario(t *testing.T, mutate func(*twiliosim.Number)) (ns, acct, e164 string, tw twiliosim.Number) {
	t.Helper()
	ns = newNamespace(t)
	acct = createAccount(t, ns, testAuthToken)
	e164 = nextE164()
	return ns, acct, e164, addTwilioNumber(e164, mutate)
}

func withURL(url string) func(*twiliosim.Number) {
	return func(n *twiliosim.Number) { n.VoiceURL = url }
}

func createNumber(t *testing.T, ns, name, account, e164 string, mutate func(*twiliov1.TwilioPhoneNumber)) {
	t.Helper()
	n := &twiliov1.TwilioPhoneNumber{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: twiliov1.TwilioPhoneNumberSpec{
			AccountRef:  twiliov1.LocalObjectReference{Name: account},
			PhoneNumber: e164,
			Agent:       &twiliov1.AgentSpec{URL: "ws://support-agent.agents.svc:8080/media"},
		},
	}
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

// condition returns the status and reason of a condition ("" when absent).
func condition(conds []metav1.Condition, typ string) (metav1.ConditionStatus, string, string) {
	c := meta.FindStatusCondition(conds, typ)
	if c == nil {
		return "", "", ""
	}
	return c.Status, c.Reason, c.Message
}

// waitReady waits until the number's Ready condition has this status and reason.
func waitReady(t *testing.T, ns, name string, status metav1.ConditionStatus, reason string) *twiliov1.TwilioPhoneNumber {
	t.Helper()
	g := NewWithT(t)
	var n *twiliov1.TwilioPhoneNumber
	g.Eventually(func(g Gomega) {
		n = getNumber(g, ns, name)
		s, r, _ := condition(n.Status.Conditions, twiliov1.ConditionReady)
		g.Expect([]string{string(s), r}).To(Equal([]string{string(status), reason}))
		g.Expect(n.Status.ObservedGeneration).To(Equal(n.Generation))
	}, wait, tick).Should(Succeed())
	return n
}

// waitSynced waits until the number's Synced condition has this status and reason.
func waitSynced(t *testing.T, ns, name string, status metav1.ConditionStatus, reason string) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) []string {
		s, r, _ := condition(getNumber(g, ns, name).Status.Conditions, twiliov1.ConditionSynced)
		return []string{string(s), r}
	}, wait, tick).Should(Equal([]string{string(status), reason}))
}

// failUpdatesUntilHealed makes every update of the number fail with f until heal is called.
func failUpdatesUntilHealed(sid string, f twiliosim.Fault) (heal func()) {
	var healed atomic.Bool
	emulator.FailNext(func(r twiliosim.Request) bool {
		return r.Kind == "UpdateNumber" && r.NumberSID == sid && !healed.Load()
	}, f, 1_000_000)
	return func() { healed.Store(true) }
}

func waitGone(t *testing.T, ns, name string) {
	t.Helper()
	NewWithT(t).Eventually(func() bool {
		err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &twiliov1.TwilioPhoneNumber{})
		return apierrors.IsNotFound(err)
	}, wait, tick).Should(BeTrue())
}

func twilioNumber(g Gomega, sid string) twiliosim.Number {
	n, ok := emulator.Number(sid)
	g.Expect(ok).To(BeTrue(), "number %s in the emulator", sid)
	return n
}

// twilioRequests returns the emulator's logged requests of a kind for one number.
func twilioRequests(kind, sid string) []twiliosim.Request {
	var out []twiliosim.Request
	for _, r := range emulator.Requests() {
		if r.Kind == kind && r.NumberSID == sid {
			out = append(out, r)
		}
	}
	return out
}

// succeeded keeps the requests that Twilio accepted.
func succeeded(reqs []twiliosim.Request) []twiliosim.Request {
	var out []twiliosim.Request
	for _, r := range reqs {
		if r.Status < 300 {
			out = append(out, r)
		}
	}
	return out
}

func setRouting(t *testing.T, ns, name string, routing twiliov1.VoiceRouting) {
	t.Helper()
	n := getNumber(NewWithT(t), ns, name)
	base := n.DeepCopy()
	n.Spec.VoiceRouting = routing
	if err := k8s.Patch(context.Background(), n, client.MergeFrom(base)); err != nil {
		t.Fatalf("set voiceRouting %s: %v", routing, err)
	}
}

func deleteNumber(t *testing.T, ns, name string) {
	t.Helper()
	n := &twiliov1.TwilioPhoneNumber{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := k8s.Delete(context.Background(), n); err != nil {
		t.Fatalf("delete: %v", err)
	}
}

// eventReasons lists the reasons of the events recorded for an object.
func eventReasons(g Gomega, ns, name string) []string {
	var list eventsv1.EventList
	g.Expect(k8s.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e.Reason)
		}
	}
	return out
}

// assertNeverBoughtReleasedOrTransferred checks invariant 6 over everything the emulator saw.
func assertNeverBoughtReleasedOrTransferred(t *testing.T) {
	t.Helper()
	for _, r := range emulator.Requests() {
		switch {
		case r.AccountSID == testBuyerSID:
			continue // the purchase tests' account
		case r.Kind == "CreateNumber" || r.Kind == "DeleteNumber":
			t.Errorf("operator sent %s %s: it must never buy or release a number", r.Method, r.Path)
		case r.Kind == "UpdateNumber" && r.Form.Has("AccountSid"):
			t.Errorf("operator sent AccountSid in an update body (transfers the number): %v", r.Form)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }
