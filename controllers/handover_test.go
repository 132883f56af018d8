package controllers

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

// A guard that lost its annotation and finalizer (a crash of an older
// version between its writes, a backup that dropped them) is rebuilt from
// status, with the original it holds, before anything else happens.
func TestPartialGuardIsRebuiltFromStatus(t *testing.T) {
	g := NewWithT(t)
	ns, acct, e164, tw := newScenario(t, withURL(originalURL))
	createNumber(t, ns, "n", acct, e164, nil)
	n := waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonConfigured)

	base := n.DeepCopy()
	delete(n.Annotations, twiliov1.AnnotationSavedRouting)
	n.Finalizers = nil
	g.Expect(k8s.Patch(context.Background(), n, client.MergeFrom(base))).To(Succeed())

	g.Eventually(func(g Gomega) {
		n := getNumber(g, ns, "n")
		g.Expect(n.Finalizers).To(ContainElement(Finalizer))
		g.Expect(n.Annotations[twiliov1.AnnotationSavedRouting]).To(ContainSubstring(originalURL))
	}, wait, tick).Should(Succeed())
	g.Eventually(func(g Gomega) []string { return eventReasons(g, ns, "n") }, wait, tick).Should(ContainElement("GuardRestored"))

	deleteNumber(t, ns, "n")
	waitGone(t, ns, "n")
	g.Expect(twilioNumber(g, tw.SID).VoiceURL).To(Equal(originalURL))
}

// Disabled then Enabled again: the restore was the operator's own, so it is
// not reported as drift, and the re-take-over saves the original afresh.
func TestFlipIsNotDrift(t *testing.T) {
	g := NewWithT(t)
	ns, acct, e164, tw := newScenario(t, withURL(originalURL))
	createNumber(t, ns, "n", acct, e164, nil)
	waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	setRouting(t, ns, "n", twiliov1.VoiceRoutingDisabled)
	setRouting(t, ns, "n", twiliov1.VoiceRoutingEnabled)
	n := waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(n.Status.PreviousVoiceURL).To(Equal(ptrTo(originalURL)))
	g.Expect(twilioNumber(g, tw.SID).VoiceURL).To(Equal(testVoiceURL))
	g.Consistently(func(g Gomega) []string { return eventReasons(g, ns, "n") }, "1s", tick).ShouldNot(ContainElement("DriftDetected"))
}

// A number that routed to us with nothing saved (OriginalUnknown) and is then
// changed in the Console: that foreign routing becomes the original, and the
// event says so.
func TestDriftOnOriginalUnknownBecomesTheOriginal(t *testing.T) {
	g := NewWithT(t)
	ns, acct, e164, tw := newScenario(t, withURL(testVoiceURL))
	createNumber(t, ns, "n", acct, e164, nil)
	waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonOriginalUnknown)

	const edited = "https://console-edit.example.com/voice"
	emulator.UpdateNumber(tw.SID, func(n *twiliosim.Number) { n.VoiceURL = edited })
	g.Eventually(func(g Gomega) *string { return getNumber(g, ns, "n").Status.PreviousVoiceURL }, wait, tick).Should(Equal(ptrTo(edited)))
	waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(eventNotes(g, ns, "n", "DriftDetected")).To(ContainElement(ContainSubstring("saved as the original")))

	deleteNumber(t, ns, "n")
	waitGone(t, ns, "n")
	g.Expect(twilioNumber(g, tw.SID).VoiceURL).To(Equal(edited))
}

// The account becoming Ready clears AccountNotReady at once, even when the
// next Twilio call fails: Ready then says the number is still being read,
// not that the account is missing.
func TestAccountReadyClearsAccountNotReady(t *testing.T) {
	g := NewWithT(t)
	ns, _, e164, tw := newScenario(t, withURL(originalURL))
	createNumber(t, ns, "n", "second", e164, nil)
	waitReady(t, ns, "n", metav1.ConditionFalse, twiliov1.ReasonAccountNotReady)

	var healed atomic.Bool
	defer healed.Store(true)
	emulator.FailNext(func(r twiliosim.Request) bool {
		return !healed.Load() && r.Kind == twiliosim.KindFetchNumber && r.NumberSID == tw.SID
	}, twiliosim.Fault{Status: 503}, 1_000_000)
	g.Expect(k8s.Create(context.Background(), &twiliov1.TwilioAccount{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "second"},
		Spec: twiliov1.TwilioAccountSpec{AccountSID: testAccountSID, APIURL: simURL,
			CredentialsSecretRef: twiliov1.SecretReference{Name: "twilio-credentials"}},
	})).To(Succeed())

	g.Eventually(func(g Gomega) []string {
		n := getNumber(g, ns, "n")
		s, r, _ := condition(n.Status.Conditions, twiliov1.ConditionReady)
		ss, sr, _ := condition(n.Status.Conditions, twiliov1.ConditionSynced)
		return []string{string(s), r, string(ss), sr}
	}, wait, tick).Should(Equal([]string{string(metav1.ConditionUnknown), twiliov1.ReasonProgressing, string(metav1.ConditionFalse), twiliov1.ReasonTwilioAPIError}))
	healed.Store(true)
	waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonConfigured)
}

// Polls cost what the README says: a number left on its trunk and a number
// missing from the account are answered from the shared list, not fetched
// one by one each interval.
func TestPollsOfTrunkAndMissingNumbersUseTheList(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, testAuthToken)
	trunked, missing := nextE164(), nextE164()
	tw := addTwilioNumber(trunked, func(n *twiliosim.Number) { n.TrunkSID = "TK0123456789abcdef0123456789abcdef" })
	createNumber(t, ns, "trunked", acct, trunked, nil)
	createNumber(t, ns, "missing", acct, missing, nil)
	waitReady(t, ns, "trunked", metav1.ConditionFalse, twiliov1.ReasonTrunkAttached)
	waitReady(t, ns, "missing", metav1.ConditionFalse, twiliov1.ReasonNumberNotFound)

	time.Sleep(3 * testPoll) // three poll intervals: what they send is the assertion
	g.Expect(twilioRequests(twiliosim.KindFetchNumber, tw.SID)).To(BeEmpty(), "a trunk number is not fetched per poll")
	finds := 0
	for _, r := range emulator.Requests() {
		if r.Kind == twiliosim.KindListNumbers && r.Query.Get("PhoneNumber") == missing {
			finds++
		}
	}
	g.Expect(finds).To(Equal(1), "a missing number is looked up once, then the list answers")
}

// eventNotes lists the notes of the events with this reason for an object.
func eventNotes(g Gomega, ns, name, reason string) []string {
	var list eventsv1.EventList
	g.Expect(k8s.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Reason == reason {
			out = append(out, strings.TrimSpace(e.Note))
		}
	}
	return out
}

// After a change of the public URL, a number still pointing at the
// operator's earlier URL is re-pointed as the operator's own change: no
// drift warning, the saved original untouched.
func TestEarlierPublicURLIsNotDrift(t *testing.T) {
	g := NewWithT(t)
	ns, acct, e164, tw := newScenario(t, withURL(originalURL))
	createNumber(t, ns, "n", acct, e164, nil)
	n := waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(n.Status.ConfiguredVoiceURL).To(Equal(testVoiceURL))

	// The number still points at the operator's earlier public URL (the
	// manager runs with --previous-public-urls naming it).
	emulator.UpdateNumber(tw.SID, func(n *twiliosim.Number) { n.VoiceURL = earlierVoiceURL })
	g.Eventually(func(g Gomega) []string { return eventReasons(g, ns, "n") }, wait, tick).Should(ContainElement("PublicURLChanged"))
	g.Eventually(func(g Gomega) string { return twilioNumber(g, tw.SID).VoiceURL }, wait, tick).Should(Equal(testVoiceURL))
	n = waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(n.Status.PreviousVoiceURL).To(Equal(ptrTo(originalURL)))
	g.Expect(eventReasons(g, ns, "n")).NotTo(ContainElement("DriftDetected"))
}
