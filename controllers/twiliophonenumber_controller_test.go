package controllers

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

const originalURL = "https://old-platform.example.com/voice"

// (a) Taking over a number with a URL saves it, points the number at us with one write.
func TestConfigureSavesOriginalAndPointsAtWebhook(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, testAuthToken)
	e164 := nextE164()
	tw := addTwilioNumber(e164, func(n *twiliosim.Number) {
		n.VoiceURL, n.VoiceFallbackURL, n.StatusCallback = originalURL, "https://old-platform.example.com/fallback", "https://old-platform.example.com/status"
	})
	createNumber(t, ns, "support", acct, e164, nil)

	n := waitReady(t, ns, "support", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(n.Status.PreviousVoiceURL).To(Equal(ptrTo(originalURL)))
	g.Expect(n.Status.SavedRouting).To(Equal(&twiliov1.SavedRouting{
		VoiceURL: originalURL, VoiceMethod: "POST",
		VoiceFallbackURL: "https://old-platform.example.com/fallback", VoiceFallbackMethod: "POST",
		StatusCallback: "https://old-platform.example.com/status", StatusCallbackMethod: "POST",
	}))
	g.Expect(n.Annotations).To(HaveKey(twiliov1.AnnotationSavedRouting))
	g.Expect(n.Status.PhoneNumberSID).To(Equal(tw.SID))
	g.Expect(twilioNumber(g, tw.SID).VoiceURL).To(Equal(testVoiceURL))
	g.Expect(succeeded(twilioRequests("UpdateNumber", tw.SID))).To(HaveLen(1))
	// Fallback and status callback are left alone on takeover.
	g.Expect(twilioNumber(g, tw.SID).VoiceFallbackURL).To(Equal("https://old-platform.example.com/fallback"))
	status, _, _ := condition(n.Status.Conditions, twiliov1.ConditionSynced)
	g.Expect(status).To(Equal(metav1.ConditionTrue))
	g.Eventually(func(g Gomega) []string { return eventReasons(g, ns, "support") }, wait, tick).Should(ContainElement(twiliov1.ReasonConfigured))
	assertNeverBoughtReleasedOrTransferred(t)
}

// (b) A number with no URL: previousVoiceURL present and empty; restore sends an explicit empty VoiceUrl.
func TestConfigureNumberWithoutURLRestoresEmpty(t *testing.T) {
	g := NewWithT(t)
	ns, acct, e164, tw := newScenario(t, nil)
	createNumber(t, ns, "blank", acct, e164, nil)

	n := waitReady(t, ns, "blank", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(n.Status.PreviousVoiceURL).To(Equal(ptrTo("")), "three-state field: present and empty")
	g.Eventually(func(g Gomega) string { return getNumber(g, ns, "blank").Status.Original }, wait, tick).
		Should(Equal("(none)"), "kubectl get's PREVIOUS URL tells configured-without-URL from not configured")

	// The empty string survives the JSON round trip through the API server as present-and-empty.
	raw := &unstructured.Unstructured{}
	raw.SetGroupVersionKind(twiliov1.GroupVersion.WithKind("TwilioPhoneNumber"))
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "blank"}, raw)).To(Succeed())
	prev, found, err := unstructured.NestedString(raw.Object, "status", "previousVoiceURL")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(found).To(BeTrue())
	g.Expect(prev).To(BeEmpty())
	setRouting(t, ns, "blank", twiliov1.VoiceRoutingDisabled)
	n = waitReady(t, ns, "blank", metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled)
	g.Expect(n.Status.PreviousVoiceURL).To(BeNil())
	g.Expect(n.Status.Original).To(BeEmpty(), "not configured any more")
	g.Expect(twilioNumber(g, tw.SID).VoiceURL).To(BeEmpty())
	updates := succeeded(twilioRequests("UpdateNumber", tw.SID))
	g.Expect(updates).To(HaveLen(2))
	restore := updates[1].Form
	g.Expect(restore.Has("VoiceUrl")).To(BeTrue(), "restore must send VoiceUrl explicitly")
	g.Expect(restore.Get("VoiceUrl")).To(BeEmpty())
	assertNeverBoughtReleasedOrTransferred(t)
}

// (c) Routing Disabled hands the number back and keeps the object; Enabled takes it again.
func TestDisableRestoresAndKeepsObject(t *testing.T) {
	g := NewWithT(t)
	ns, acct, e164, tw := newScenario(t, func(n *twiliosim.Number) { n.VoiceURL, n.VoiceMethod = originalURL, "GET" })
	createNumber(t, ns, "n", acct, e164, nil)
	waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonConfigured)

	setRouting(t, ns, "n", twiliov1.VoiceRoutingDisabled)
	n := waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled)
	g.Expect(n.Status.PreviousVoiceURL).To(BeNil())
	g.Expect(n.Status.SavedRouting).To(BeNil())
	g.Expect(n.Annotations).NotTo(HaveKey(twiliov1.AnnotationSavedRouting))
	live := twilioNumber(g, tw.SID)
	g.Expect([]string{live.VoiceURL, live.VoiceMethod}).To(Equal([]string{originalURL, "GET"}))

	setRouting(t, ns, "n", twiliov1.VoiceRoutingEnabled)
	n = waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(n.Status.PreviousVoiceURL).To(Equal(ptrTo(originalURL)))
	// A URL-only number: neither take-over nor restore sends a SID field
	// (Twilio's API description forbids empty SIDs there).
	updates := succeeded(twilioRequests("UpdateNumber", tw.SID))
	g.Expect(updates).To(HaveLen(3))
	for _, u := range updates {
		g.Expect(u.Form).NotTo(HaveKey("VoiceApplicationSid"))
		g.Expect(u.Form).NotTo(HaveKey("TrunkSid"))
	}
}

// (d) Delete with Restore restores; delete with Orphan leaves ours; both release the finalizer.
func TestDeletePolicies(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, testAuthToken)

	restoreNum, orphanNum := nextE164(), nextE164()
	twR := addTwilioNumber(restoreNum, withURL(originalURL))
	twO := addTwilioNumber(orphanNum, withURL(originalURL))
	createNumber(t, ns, "restore", acct, restoreNum, nil)
	createNumber(t, ns, "orphan", acct, orphanNum, func(n *twiliov1.TwilioPhoneNumber) {
		n.Spec.DeletionPolicy = twiliov1.DeletionPolicyOrphan
	})
	n := waitReady(t, ns, "restore", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(n.Finalizers).To(ContainElement(Finalizer))
	waitReady(t, ns, "orphan", metav1.ConditionTrue, twiliov1.ReasonConfigured)

	deleteNumber(t, ns, "restore")
	deleteNumber(t, ns, "orphan")
	waitGone(t, ns, "restore")
	waitGone(t, ns, "orphan")
	g.Expect(twilioNumber(g, twR.SID).VoiceURL).To(Equal(originalURL))
	g.Expect(twilioNumber(g, twO.SID).VoiceURL).To(Equal(testVoiceURL))
	assertNeverBoughtReleasedOrTransferred(t)
}

// (e) A TwiML application is saved and cleared on takeover and put back on restore.
func TestApplicationSIDSavedClearedAndRestored(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, testAuthToken)
	e164 := nextE164()
	const app = "AP0123456789abcdef0123456789abcdef"
	tw := addTwilioNumber(e164, func(n *twiliosim.Number) { n.VoiceApplicationSID = app })
	createNumber(t, ns, "app", acct, e164, nil)

	n := waitReady(t, ns, "app", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(n.Status.SavedRouting.VoiceApplicationSID).To(Equal(app))
	live := twilioNumber(g, tw.SID)
	g.Expect(live.VoiceApplicationSID).To(BeEmpty(), "the application takes precedence over VoiceUrl and must be cleared")
	url, _, _, ok := emulator.EffectiveVoiceURL(e164)
	g.Expect(ok).To(BeTrue())
	g.Expect(url).To(Equal(testVoiceURL))

	deleteNumber(t, ns, "app")
	waitGone(t, ns, "app")
	live = twilioNumber(g, tw.SID)
	g.Expect(live.VoiceApplicationSID).To(Equal(app))
	g.Expect(live.VoiceURL).To(BeEmpty())
}

// (e) A number on a SIP trunk is left alone unless the spec allows detaching it.
func TestTrunkNumberUntouchedUnlessAllowed(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, testAuthToken)
	e164 := nextE164()
	const trunk = "TK0123456789abcdef0123456789abcdef"
	tw := addTwilioNumber(e164, func(n *twiliosim.Number) { n.TrunkSID, n.VoiceURL = trunk, originalURL })
	createNumber(t, ns, "trunk", acct, e164, nil)

	n := waitReady(t, ns, "trunk", metav1.ConditionFalse, twiliov1.ReasonTrunkAttached)
	_, _, msg := condition(n.Status.Conditions, twiliov1.ConditionReady)
	g.Expect(msg).To(ContainSubstring(trunk))
	g.Expect(msg).To(ContainSubstring("allowTrunkDetach"))
	g.Expect(n.Status.PreviousVoiceURL).To(BeNil())
	g.Expect(twilioRequests("UpdateNumber", tw.SID)).To(BeEmpty())
	g.Expect(twilioNumber(g, tw.SID).TrunkSID).To(Equal(trunk))

	// Allowed: detached (trunk saved), then put back on Disabled.
	base := n.DeepCopy()
	n.Spec.AllowTrunkDetach = true
	g.Expect(k8s.Patch(context.Background(), n, client.MergeFrom(base))).To(Succeed())
	n = waitReady(t, ns, "trunk", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(n.Status.SavedRouting.TrunkSID).To(Equal(trunk))
	g.Expect(n.Status.PreviousVoiceURL).To(Equal(ptrTo(originalURL)))
	g.Expect(twilioNumber(g, tw.SID).TrunkSID).To(BeEmpty())
	setRouting(t, ns, "trunk", twiliov1.VoiceRoutingDisabled)
	waitReady(t, ns, "trunk", metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled)
	live := twilioNumber(g, tw.SID)
	g.Expect([]string{live.TrunkSID, live.VoiceURL}).To(Equal([]string{trunk, originalURL}))
}

// (f1) The Twilio write fails right after the save: the original is kept and restored at the end.
func TestCrashAfterSaveBeforeWrite(t *testing.T) {
	g := NewWithT(t)
	ns, acct, e164, tw := newScenario(t, withURL(originalURL))
	emulator.FailNext(func(r twiliosim.Request) bool { return r.Kind == "UpdateNumber" && r.NumberSID == tw.SID },
		twiliosim.Fault{Reset: true}, 1)
	createNumber(t, ns, "n", acct, e164, nil)

	n := waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(twilioRequests("UpdateNumber", tw.SID)).To(HaveLen(2), "one lost write, one retry")
	g.Expect(n.Status.PreviousVoiceURL).To(Equal(ptrTo(originalURL)))
	deleteNumber(t, ns, "n")
	waitGone(t, ns, "n")
	g.Expect(twilioNumber(g, tw.SID).VoiceURL).To(Equal(originalURL))
}

// (f2) The operator "crashes" right after the Twilio write: every Kubernetes
// write that follows it fails once. The original must already be saved.
func TestCrashAfterWriteLosesStatusPatch(t *testing.T) {
	g := NewWithT(t)
	ns, acct, e164, tw := newScenario(t, withURL(originalURL))

	var dropped atomic.Int32
	setWriteHook(func(obj client.Object) error {
		n, ok := obj.(*twiliov1.TwilioPhoneNumber)
		if !ok || n.Namespace != ns || len(succeeded(twilioRequests("UpdateNumber", tw.SID))) == 0 {
			return nil
		}
		if dropped.CompareAndSwap(0, 1) {
			return apierrors.NewServiceUnavailable("injected: Kubernetes write lost after the Twilio write")
		}
		return nil
	})
	defer setWriteHook(nil)
	createNumber(t, ns, "n", acct, e164, nil)

	n := waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(dropped.Load()).To(Equal(int32(1)), "the fault was injected")
	g.Expect(n.Status.PreviousVoiceURL).To(Equal(ptrTo(originalURL)))
	g.Expect(succeeded(twilioRequests("UpdateNumber", tw.SID))).To(HaveLen(1))
	deleteNumber(t, ns, "n")
	waitGone(t, ns, "n")
	g.Expect(twilioNumber(g, tw.SID).VoiceURL).To(Equal(originalURL))
}

// (g) A wiped status is rebuilt from the annotation copy; restore still gives the original back.
func TestStatusWipeRecoversFromAnnotation(t *testing.T) {
	g := NewWithT(t)
	ns, acct, e164, tw := newScenario(t, withURL(originalURL))
	createNumber(t, ns, "n", acct, e164, nil)
	n := waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonConfigured)

	n.Status = twiliov1.TwilioPhoneNumberStatus{}
	g.Expect(k8s.Status().Update(context.Background(), n)).To(Succeed())
	g.Eventually(func(g Gomega) *string { return getNumber(g, ns, "n").Status.PreviousVoiceURL }, wait, tick).
		Should(Equal(ptrTo(originalURL)))
	g.Eventually(func(g Gomega) []string { return eventReasons(g, ns, "n") }, wait, tick).Should(ContainElement("RecoveredOriginal"))

	setRouting(t, ns, "n", twiliov1.VoiceRoutingDisabled)
	waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled)
	g.Expect(twilioNumber(g, tw.SID).VoiceURL).To(Equal(originalURL))
}

// (g) A live URL that is already ours, with nothing saved, is never recorded as the original.
func TestOwnURLNeverSavedAsOriginal(t *testing.T) {
	g := NewWithT(t)
	ns, acct, e164, tw := newScenario(t, func(n *twiliosim.Number) { n.VoiceURL = testVoiceURL })
	createNumber(t, ns, "n", acct, e164, nil)

	n := waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonOriginalUnknown)
	g.Expect(n.Status.PreviousVoiceURL).To(BeNil())
	g.Expect(n.Status.SavedRouting).To(BeNil())
	g.Expect(n.Annotations).NotTo(HaveKey(twiliov1.AnnotationSavedRouting))
	g.Expect(twilioRequests("UpdateNumber", tw.SID)).To(BeEmpty())
	g.Eventually(func(g Gomega) []string { return eventReasons(g, ns, "n") }, wait, tick).Should(ContainElement(twiliov1.ReasonOriginalUnknown))

	deleteNumber(t, ns, "n")
	waitGone(t, ns, "n")
	g.Expect(twilioRequests("UpdateNumber", tw.SID)).To(BeEmpty(), "nothing saved, nothing written back")
}

// (h) Two objects for one number: the older owns it, the newer is Conflict and never writes.
func TestOneOwnerPerNumber(t *testing.T) {
	g := NewWithT(t)
	ns1, ns2 := newNamespace(t), newNamespace(t)
	acct1, acct2 := createAccount(t, ns1, testAuthToken), createAccount(t, ns2, testAuthToken)
	e164 := nextE164()
	tw := addTwilioNumber(e164, withURL(originalURL))
	createNumber(t, ns1, "first", acct1, e164, nil)
	waitReady(t, ns1, "first", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	createNumber(t, ns2, "second", acct2, e164, func(n *twiliov1.TwilioPhoneNumber) {
		n.Spec.VoiceRouting = twiliov1.VoiceRoutingDisabled // would restore if it acted
	})

	n := waitReady(t, ns2, "second", metav1.ConditionFalse, twiliov1.ReasonConflict)
	_, _, msg := condition(n.Status.Conditions, twiliov1.ConditionReady)
	g.Expect(msg).To(ContainSubstring(ns1 + "/first"))
	g.Consistently(func() int { return len(twilioRequests("UpdateNumber", tw.SID)) }, "1s", tick).Should(Equal(1))
	g.Expect(twilioNumber(g, tw.SID).VoiceURL).To(Equal(testVoiceURL))

	// When the owner goes (restoring), the next object takes over and acts
	// on its own spec, from a fresh read of Twilio: it never reports the
	// number as still ours (OriginalUnknown) from the old owner's state.
	deleteNumber(t, ns1, "first")
	waitGone(t, ns1, "first")
	waitReady(t, ns2, "second", metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled)
	g.Expect(twilioNumber(g, tw.SID).VoiceURL).To(Equal(originalURL))
	g.Expect(eventReasons(g, ns2, "second")).NotTo(ContainElement(twiliov1.ReasonOriginalUnknown))
}

// (i) An out-of-band change is reported and re-applied; the saved original is unchanged.
func TestDriftIsReappliedWithoutTouchingOriginal(t *testing.T) {
	g := NewWithT(t)
	ns, acct, e164, tw := newScenario(t, withURL(originalURL))
	createNumber(t, ns, "n", acct, e164, nil)
	waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonConfigured)

	emulator.UpdateNumber(tw.SID, func(n *twiliosim.Number) { n.VoiceURL = "https://console-edit.example.com/voice" })
	g.Eventually(func(g Gomega) []string { return eventReasons(g, ns, "n") }, wait, tick).Should(ContainElement("DriftDetected"))
	g.Eventually(func(g Gomega) string { return twilioNumber(g, tw.SID).VoiceURL }, wait, tick).Should(Equal(testVoiceURL))
	n := waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(n.Status.PreviousVoiceURL).To(Equal(ptrTo(originalURL)))
	g.Expect(n.Annotations[twiliov1.AnnotationSavedRouting]).To(ContainSubstring(originalURL))
}

// (j) Wrong credentials: the account says InvalidCredentials, its numbers AccountNotReady.
func TestInvalidCredentials(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "wrongToken123")
	e164 := nextE164()
	tw := addTwilioNumber(e164, withURL(originalURL))
	createNumber(t, ns, "n", acct, e164, nil)

	g.Eventually(func(g Gomega) string {
		a := &twiliov1.TwilioAccount{}
		g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: acct}, a)).To(Succeed())
		s, r, msg := condition(a.Status.Conditions, twiliov1.ConditionReady)
		g.Expect(msg).To(ContainSubstring("twilio-credentials"))
		return string(s) + "/" + r
	}, wait, tick).Should(Equal("False/" + twiliov1.ReasonInvalidCredentials))
	waitReady(t, ns, "n", metav1.ConditionFalse, twiliov1.ReasonAccountNotReady)
	g.Expect(twilioRequests("UpdateNumber", tw.SID)).To(BeEmpty())
}

// (j) A number that is not in the account is reported, and never bought.
func TestNumberNotInAccount(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, testAuthToken)
	e164 := nextE164()
	createNumber(t, ns, "n", acct, e164, nil)

	n := waitReady(t, ns, "n", metav1.ConditionFalse, twiliov1.ReasonNumberNotFound)
	_, _, msg := condition(n.Status.Conditions, twiliov1.ConditionReady)
	g.Expect(msg).To(ContainSubstring(e164))
	assertNeverBoughtReleasedOrTransferred(t)

	// Deleting it needs nothing from Twilio.
	deleteNumber(t, ns, "n")
	waitGone(t, ns, "n")
}

// (j) A burst of 429s backs off and converges with nothing lost.
func TestRateLimitedBackoffConverges(t *testing.T) {
	g := NewWithT(t)
	ns, acct, e164, tw := newScenario(t, withURL(originalURL))
	emulator.FailNext(func(r twiliosim.Request) bool { return r.NumberSID == tw.SID },
		twiliosim.Fault{Status: http.StatusTooManyRequests, Code: 20429, Message: "Too Many Requests"}, 8)
	createNumber(t, ns, "n", acct, e164, nil)

	n := waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(n.Status.PreviousVoiceURL).To(Equal(ptrTo(originalURL)))
	var tooMany int
	for _, r := range emulator.Requests() {
		if r.NumberSID == tw.SID && r.Status == http.StatusTooManyRequests {
			tooMany++
		}
	}
	g.Expect(tooMany).To(Equal(8))
	g.Expect(succeeded(twilioRequests("UpdateNumber", tw.SID))).To(HaveLen(1))
}

// (j) 5xx: Synced=False TwilioAPIError while it lasts, retried, then converges.
func TestServerErrorsRetried(t *testing.T) {
	g := NewWithT(t)
	ns, acct, e164, tw := newScenario(t, withURL(originalURL))
	heal := failUpdatesUntilHealed(tw.SID, twiliosim.Fault{Status: http.StatusServiceUnavailable, Code: 20503, Message: "Service unavailable"})
	createNumber(t, ns, "n", acct, e164, nil)

	waitSynced(t, ns, "n", metav1.ConditionFalse, twiliov1.ReasonTwilioAPIError)
	n := getNumber(g, ns, "n")
	g.Expect(n.Status.PreviousVoiceURL).To(Equal(ptrTo(originalURL)), "saved before the failing write")
	g.Eventually(func() int { return len(twilioRequests("UpdateNumber", tw.SID)) }, wait, tick).Should(BeNumerically(">=", 3), "retried with backoff")

	heal()
	waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(twilioNumber(g, tw.SID).VoiceURL).To(Equal(testVoiceURL))
}

// (k) The API server refuses invalid objects with a message that says what to fix.
func TestSchemaRefusesInvalidObjects(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	valid := func() *twiliov1.TwilioPhoneNumber {
		return &twiliov1.TwilioPhoneNumber{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "bad-"},
			Spec: twiliov1.TwilioPhoneNumberSpec{
				AccountRef: twiliov1.LocalObjectReference{Name: "main"}, PhoneNumber: "+14155550100",
			},
		}
	}
	tests := []struct {
		name    string
		obj     client.Object
		wantMsg string
	}{
		{"E.164 without plus", func() client.Object { n := valid(); n.Spec.PhoneNumber = "4155550100"; return n }(), "spec.phoneNumber: Invalid value: \"4155550100\": phoneNumber must be in E.164 form: a plus sign, the country code and the number, digits only, at most 15 digits (for example +14155550100)"},
		{"E.164 too long", func() client.Object {
			n := valid()
			n.Spec.PhoneNumber = "+123456789012345"
			n.Spec.PhoneNumber += "6"
			return n
		}(), "phoneNumber must be in E.164 form"},
		{"unknown routing", func() client.Object { n := valid(); n.Spec.VoiceRouting = "Off"; return n }(), `spec.voiceRouting: Unsupported value: "Off": supported values: "Enabled", "Disabled"`},
		{"unknown deletion policy", func() client.Object { n := valid(); n.Spec.DeletionPolicy = "Delete"; return n }(), `supported values: "Restore", "Orphan", "Release"`},
		{"unknown acquire", func() client.Object { n := valid(); n.Spec.Acquire = "Buy"; return n }(), `supported values: "Existing", "Purchase"`},
		{"agent not a websocket", func() client.Object {
			n := valid()
			n.Spec.Agent = &twiliov1.AgentSpec{URL: "http://agent/media"}
			return n
		}(), `spec.agent.url: Invalid value: "http://agent/media": must be a ws:// or wss:// URL such as wss://agent.example.com/media: a host, then an optional path and query string, without spaces or a #fragment`},
		{"agent URL with a fragment", func() client.Object {
			n := valid()
			n.Spec.Agent = &twiliov1.AgentSpec{URL: "wss://agent.example.com/media#x"}
			return n
		}(), "without spaces or a #fragment"},
		{"unquoted phone number", unquotedNumber(ns), `phoneNumber must be a quoted string such as "+14155550100": unquoted, YAML reads it as the integer 14155550100 and drops the plus sign`},
		{"bad account SID", &twiliov1.TwilioAccount{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "bad-"},
			Spec:       twiliov1.TwilioAccountSpec{AccountSID: "AC123", CredentialsSecretRef: twiliov1.SecretReference{Name: "s"}},
		}, "spec.accountSid: Invalid value: \"AC123\": accountSid must be a Twilio account SID: AC followed by 32 hexadecimal characters, as shown in the Twilio Console"},
		{"purchases without a cap", &twiliov1.TwilioAccount{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "bad-"},
			Spec: twiliov1.TwilioAccountSpec{AccountSID: testAccountSID, CredentialsSecretRef: twiliov1.SecretReference{Name: "s"},
				Purchasing: &twiliov1.PurchasingSpec{Enabled: true}},
		}, "spec.purchasing.maxNumbers must be above 0 when purchases are enabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := k8s.Create(ctx, tt.obj)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("create succeeded or failed otherwise (%v); want Invalid", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("message %q does not contain %q", err.Error(), tt.wantMsg)
			}
		})
	}

	t.Run("phoneNumber is immutable", func(t *testing.T) {
		n := valid()
		if err := k8s.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		base := n.DeepCopy()
		n.Spec.PhoneNumber = "+14155550199"
		err := k8s.Patch(ctx, n, client.MergeFrom(base))
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "phoneNumber is immutable; create a new TwilioPhoneNumber for another number") {
			t.Fatalf("changing phoneNumber: got %v", err)
		}
		var statusErr *apierrors.StatusError
		if errors.As(err, &statusErr) && statusErr.ErrStatus.Details != nil && len(statusErr.ErrStatus.Details.Causes) > 0 {
			if f := statusErr.ErrStatus.Details.Causes[0].Field; f != "spec.phoneNumber" {
				t.Errorf("cause field = %q, want spec.phoneNumber", f)
			}
		}
	})

	t.Run("agent URL with a query string", func(t *testing.T) {
		n := valid()
		n.Spec.Agent = &twiliov1.AgentSpec{URL: "wss://agent.example.com/media?tenant=acme&lang=en"}
		if err := k8s.Create(ctx, n); err != nil {
			t.Fatalf("a query string is allowed: %v", err)
		}
	})

	t.Run("defaults", func(t *testing.T) {
		n := valid()
		if err := k8s.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		if n.Spec.VoiceRouting != twiliov1.VoiceRoutingEnabled || n.Spec.DeletionPolicy != twiliov1.DeletionPolicyRestore || !n.RecordingEnabled() {
			t.Errorf("defaults: routing %q, deletion %q, recording %v", n.Spec.VoiceRouting, n.Spec.DeletionPolicy, n.RecordingEnabled())
		}
	})
}

// (j) A 4xx from Twilio is terminal: Synced=False TwilioRejected, and the
// refused write is not sent again until something it depends on changes (the
// spec, the account's credentials, the number's live routing); then it converges.
func TestTerminalErrorWaitsForAChange(t *testing.T) {
	g := NewWithT(t)
	ns, acct, e164, tw := newScenario(t, withURL(originalURL))
	heal := failUpdatesUntilHealed(tw.SID, twiliosim.Fault{Status: http.StatusBadRequest, Code: 21502, Message: "Invalid url"})
	createNumber(t, ns, "n", acct, e164, nil)

	waitSynced(t, ns, "n", metav1.ConditionFalse, twiliov1.ReasonTwilioRejected)
	g.Expect(getNumber(g, ns, "n").Status.PreviousVoiceURL).To(Equal(ptrTo(originalURL)), "saved before the refused write")
	g.Expect(twilioRequests("UpdateNumber", tw.SID)).To(HaveLen(1),
		"the operator's own writes (annotation, finalizer, status) must not make it send a refused write again")

	// Reconciles that change nothing the write depends on: a user's
	// annotation, and the polls.
	n := getNumber(g, ns, "n")
	base := n.DeepCopy()
	n.Annotations["example.com/note"] = "unrelated"
	g.Expect(k8s.Patch(context.Background(), n, client.MergeFrom(base))).To(Succeed())
	g.Consistently(func() int { return len(twilioRequests("UpdateNumber", tw.SID)) }, 3*testPoll, tick).Should(Equal(1),
		"a terminal error must not be retried, not even by the poll")

	// The number changed in Twilio (someone edited it in the console): the
	// next poll tries once more, and Twilio refuses again.
	emulator.UpdateNumber(tw.SID, func(n *twiliosim.Number) { n.VoiceURL = "https://console-edit.example.com/voice" })
	g.Eventually(func() int { return len(twilioRequests("UpdateNumber", tw.SID)) }, wait, tick).Should(Equal(2))
	g.Consistently(func() int { return len(twilioRequests("UpdateNumber", tw.SID)) }, 2*testPoll, tick).Should(Equal(2))

	// The spec changes; the operator tries again and converges.
	heal()
	n = getNumber(g, ns, "n")
	base = n.DeepCopy()
	n.Spec.Recording.Enabled = ptrTo(false)
	g.Expect(k8s.Patch(context.Background(), n, client.MergeFrom(base))).To(Succeed())
	waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(twilioNumber(g, tw.SID).VoiceURL).To(Equal(testVoiceURL))
	g.Expect(getNumber(g, ns, "n").Status.PreviousVoiceURL).To(Equal(ptrTo(originalURL)),
		"the original saved before the first refused write is kept; the console edit is drift")
}

// unquotedNumber is a TwilioPhoneNumber as YAML reads phoneNumber: +14155550100
// without quotes: an integer.
func unquotedNumber(ns string) client.Object {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": twiliov1.GroupVersion.String(), "kind": "TwilioPhoneNumber",
		"metadata": map[string]any{"namespace": ns, "generateName": "bad-"},
		"spec":     map[string]any{"accountRef": map[string]any{"name": "main"}, "phoneNumber": int64(14155550100)},
	}}
	return u
}
