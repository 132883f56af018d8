package controllers

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

// kstatusOf computes what kubectl wait, Flux and kpt make of an object, with
// cli-utils' kstatus, from the object exactly as the API server returns it
// (unstructured: a typed copy would drop a zero observedGeneration).
func kstatusOf(g Gomega, u *unstructured.Unstructured) status.Status {
	res, err := status.Compute(u)
	g.Expect(err).NotTo(HaveOccurred())
	return res.Status
}

func liveKstatus(g Gomega, kind, ns, name string) status.Status {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(twiliov1.GroupVersion.WithKind(kind))
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, u)).To(Succeed())
	return kstatusOf(g, u)
}

func numberKstatus(g Gomega, ns, name string) status.Status {
	return liveKstatus(g, "TwilioPhoneNumber", ns, name)
}

func accountKstatus(g Gomega, ns, name string) status.Status {
	return liveKstatus(g, "TwilioAccount", ns, name)
}

// TestKstatusReadsEveryState: work in progress is InProgress, states that
// need a human are Failed, settled states are Current, on live objects.
func TestKstatusReadsEveryState(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()

	// A fresh object, before the operator has seen it.
	ns := newNamespace(t)
	fresh := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": twiliov1.GroupVersion.String(), "kind": "TwilioPhoneNumber",
		"metadata": map[string]any{"namespace": ns, "name": "fresh"},
		"spec":     map[string]any{"accountRef": map[string]any{"name": "missing"}, "phoneNumber": nextE164()},
	}}
	g.Expect(k8s.Create(ctx, fresh)).To(Succeed())
	g.Expect(kstatusOf(g, fresh)).To(Equal(status.InProgressStatus), "not Current before the operator saw it")
	// Waiting for an account that does not exist (yet): in progress.
	waitReady(t, ns, "fresh", metav1.ConditionFalse, twiliov1.ReasonAccountNotReady)
	g.Expect(numberKstatus(g, ns, "fresh")).To(Equal(status.InProgressStatus))

	// Configured, then handed back: Current.
	ns, acct, e164, tw := newScenario(t, withURL(originalURL))
	createNumber(t, ns, "ok", acct, e164, nil)
	waitReady(t, ns, "ok", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(numberKstatus(g, ns, "ok")).To(Equal(status.CurrentStatus))
	g.Expect(accountKstatus(g, ns, acct)).To(Equal(status.CurrentStatus))
	// Twilio failing (5xx, retried): in progress.
	heal := failUpdatesUntilHealed(tw.SID, twiliosim.Fault{Status: 500})
	emulator.UpdateNumber(tw.SID, func(n *twiliosim.Number) { n.VoiceURL = "https://console-edit.example.com/voice" })
	g.Eventually(func(g Gomega) status.Status { return numberKstatus(g, ns, "ok") }, wait, tick).Should(Equal(status.InProgressStatus))
	heal()
	setRouting(t, ns, "ok", twiliov1.VoiceRoutingDisabled)
	waitReady(t, ns, "ok", metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled)
	g.Expect(numberKstatus(g, ns, "ok")).To(Equal(status.CurrentStatus))

	// States that need a human: Failed.
	createNumber(t, ns, "not-found", acct, "+19995550000", nil)
	createNumber(t, ns, "no-agent", acct, addTwilioNumber(nextE164(), nil).PhoneNumber, func(n *twiliov1.TwilioPhoneNumber) { n.Spec.Agent = nil })
	trunk := addTwilioNumber(nextE164(), func(n *twiliosim.Number) { n.TrunkSID = "TK0123456789abcdef0123456789abcdef" })
	createNumber(t, ns, "trunk", acct, trunk.PhoneNumber, nil)
	ns2 := newNamespace(t)
	acct2 := createAccount(t, ns2, testAuthToken)
	createNumber(t, ns2, "loser", acct2, e164, nil) // "ok" in ns holds it (older)
	for _, c := range []struct{ ns, name, reason string }{
		{ns, "not-found", twiliov1.ReasonNumberNotFound},
		{ns, "no-agent", twiliov1.ReasonNoAgent},
		{ns, "trunk", twiliov1.ReasonTrunkAttached},
		{ns2, "loser", twiliov1.ReasonConflict},
	} {
		waitReady(t, c.ns, c.name, metav1.ConditionFalse, c.reason)
		g.Eventually(func(g Gomega) status.Status { return numberKstatus(g, c.ns, c.name) }, wait, tick).
			Should(Equal(status.FailedStatus), c.reason)
		_, reason, _ := condition(getNumber(g, c.ns, c.name).Status.Conditions, twiliov1.ConditionStalled)
		g.Expect(reason).To(Equal(c.reason), "Stalled names why")
	}

	// Refused credentials: the account is Failed, and so is a number that waits for it.
	ns3 := newNamespace(t)
	bad := createAccount(t, ns3, "wrongToken123")
	createNumber(t, ns3, "waits", bad, addTwilioNumber(nextE164(), nil).PhoneNumber, nil)
	g.Eventually(func(g Gomega) status.Status { return accountKstatus(g, ns3, bad) }, wait, tick).Should(Equal(status.FailedStatus))
	g.Eventually(func(g Gomega) status.Status { return numberKstatus(g, ns3, "waits") }, wait, tick).Should(Equal(status.FailedStatus))
	_, _, msg := condition(getNumber(g, ns3, "waits").Status.Conditions, twiliov1.ConditionReady)
	g.Expect(msg).To(ContainSubstring(twiliov1.ReasonInvalidCredentials), "the number says what its account waits for")
}
