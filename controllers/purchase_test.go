package controllers

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

func allowPurchases(maxNumbers int32, allowRelease bool) func(*twiliov1.TwilioAccount) {
	return func(a *twiliov1.TwilioAccount) {
		a.Spec.Purchasing = &twiliov1.PurchasingSpec{Enabled: true, MaxNumbers: maxNumbers, AllowRelease: allowRelease}
	}
}

// buyer points a TwilioAccount at the emulated account purchases happen in.
func buyer(a *twiliov1.TwilioAccount) { a.Spec.AccountSID = testBuyerSID }

func purchaseOn(n *twiliov1.TwilioPhoneNumber) { n.Spec.Acquire = twiliov1.AcquirePurchase }

// onSale puts a fresh number on sale in the emulated market.
func onSale() string {
	e164 := nextE164()
	emulator.AddAvailable(twiliosim.AvailableNumber{PhoneNumber: e164})
	return e164
}

// creates returns the create (purchase) requests Twilio received for e164
// that it processed, answered or not.
func creates(e164 string) []twiliosim.Request {
	var out []twiliosim.Request
	for _, r := range emulator.Requests() {
		if r.Kind == twiliosim.KindCreateNumber && r.Form.Get("PhoneNumber") == e164 && r.Status != 0 {
			out = append(out, r)
		}
	}
	return out
}

func waitBought(t *testing.T, ns, name string) *twiliov1.TwilioPhoneNumber {
	t.Helper()
	obj := waitReady(t, ns, name, metav1.ConditionTrue, twiliov1.ReasonConfigured)
	NewWithT(t).Eventually(func(g Gomega) {
		obj = getNumber(g, ns, name)
		g.Expect(obj.Status.Purchase).NotTo(BeNil())
		g.Expect(obj.Status.Purchase.PhoneNumberSID).To(HavePrefix("PN"))
	}, wait, tick).Should(Succeed())
	return obj
}

// TestBuyWithRoutingSetAtPurchase: a number not in the account, asked for
// with acquire: Purchase through an account that allows purchases, is bought
// once, with its voice routing in the create call: configured, Twilio had
// no previous URL.
func TestBuyWithRoutingSetAtPurchase(t *testing.T) {
	ns := newNamespace(t)
	acct := createAccount(t, ns, testAuthToken, buyer, allowPurchases(2, false))
	e164 := onSale()
	createNumber(t, ns, "bought", acct, e164, func(n *twiliov1.TwilioPhoneNumber) {
		purchaseOn(n)
		n.Spec.Messaging = twiliov1.MessagingEnabled
	})
	obj := waitBought(t, ns, "bought")
	g := NewWithT(t)
	g.Expect(obj.Status.PreviousVoiceURL).NotTo(BeNil())
	g.Expect(*obj.Status.PreviousVoiceURL).To(BeEmpty(), "configured, Twilio had no previous URL")
	g.Expect(obj.Status.Original).To(Equal("(none)"))

	reqs := creates(e164)
	g.Expect(reqs).To(HaveLen(1), "bought once")
	g.Expect(reqs[0].Form.Get("VoiceUrl")).To(Equal(testVoiceURL), "the routing is set in the purchase itself")
	g.Expect(reqs[0].Form.Get("SmsUrl")).To(Equal(testEventsURL))
	g.Expect(reqs[0].Form.Get("FriendlyName")).To(ContainSubstring(obj.Status.Purchase.IntentID))
	g.Expect(succeeded(twilioRequests(twiliosim.KindUpdateNumber, obj.Status.Purchase.PhoneNumberSID))).To(BeEmpty(),
		"no write after the purchase: the create call routed it")
	live := twilioNumber(g, obj.Status.Purchase.PhoneNumberSID)
	g.Expect(live.VoiceURL).To(Equal(testVoiceURL))
	g.Expect(eventReasons(g, ns, "bought")).To(ContainElement("Purchased"))
	g.Expect(testutil.ToFloat64(numbersPurchased.WithLabelValues(ns, acct))).To(Equal(1.0), "twilio_numbers_purchased_total")
	g.Eventually(func(g Gomega) int32 {
		a := &twiliov1.TwilioAccount{}
		g.Expect(k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: acct}, a)).To(Succeed())
		return a.Status.NumbersPurchased
	}, wait, tick).Should(Equal(int32(1)))

	// Hand-back of a bought number: empty routing, the number stays.
	setRouting(t, ns, "bought", twiliov1.VoiceRoutingDisabled)
	waitReady(t, ns, "bought", metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled)
	live = twilioNumber(g, obj.Status.Purchase.PhoneNumberSID)
	g.Expect([]string{live.VoiceURL, live.SmsURL}).To(Equal([]string{"", ""}))
	g.Expect(getNumber(g, ns, "bought").Finalizers).To(ContainElement(Finalizer), "kept, so that the deletion policy of a bought number applies")

	// Deleted with deletionPolicy Restore: it goes, and the number stays.
	deleteNumber(t, ns, "bought")
	waitGone(t, ns, "bought")
	_, kept := emulator.Number(obj.Status.Purchase.PhoneNumberSID)
	g.Expect(kept).To(BeTrue(), "Restore never releases")
}

// TestPurchaseRefusedWithoutOptInOrOverTheLimit: no purchase without the
// account's opt-in, nor above maxNumbers, and no create call either way.
func TestPurchaseRefusedWithoutOptInOrOverTheLimit(t *testing.T) {
	ns := newNamespace(t)
	acct := createAccount(t, ns, testAuthToken, buyer)
	e164 := onSale()
	createNumber(t, ns, "no-opt-in", acct, e164, purchaseOn)
	obj := waitReady(t, ns, "no-opt-in", metav1.ConditionFalse, twiliov1.ReasonPurchaseNotAllowed)
	g := NewWithT(t)
	_, _, msg := condition(obj.Status.Conditions, twiliov1.ConditionReady)
	g.Expect(msg).To(ContainSubstring("spec.purchasing.enabled"))
	st, reason, _ := condition(obj.Status.Conditions, twiliov1.ConditionStalled)
	g.Expect([]string{string(st), reason}).To(Equal([]string{"True", twiliov1.ReasonPurchaseNotAllowed}))
	g.Expect(creates(e164)).To(BeEmpty())
	g.Expect(obj.Status.Purchase).To(BeNil())

	// The account's owner opts in with room for one number.
	g.Eventually(func() error {
		a := &twiliov1.TwilioAccount{}
		if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: acct}, a); err != nil {
			return err
		}
		allowPurchases(1, false)(a)
		return k8s.Update(t.Context(), a)
	}, wait, tick).Should(Succeed())
	waitBought(t, ns, "no-opt-in")
	second := onSale()
	createNumber(t, ns, "over", acct, second, purchaseOn)
	obj = waitReady(t, ns, "over", metav1.ConditionFalse, twiliov1.ReasonPurchaseLimitReached)
	_, _, msg = condition(obj.Status.Conditions, twiliov1.ConditionReady)
	g.Expect(msg).To(ContainSubstring("maxNumbers is 1"))
	g.Expect(creates(second)).To(BeEmpty())
}

// TestPurchaseNeverTwice: a lost create answer, and a crash between the
// create and the write of the purchase record, each end with the number
// bought exactly once.
func TestPurchaseNeverTwice(t *testing.T) {
	ns := newNamespace(t)
	acct := createAccount(t, ns, testAuthToken, buyer, allowPurchases(5, false))

	lost := onSale()
	emulator.FailNext(func(r twiliosim.Request) bool {
		return r.Kind == twiliosim.KindCreateNumber && r.Form.Get("PhoneNumber") == lost
	}, twiliosim.Fault{LoseAnswer: true}, 1)
	createNumber(t, ns, "lost-answer", acct, lost, purchaseOn)
	waitBought(t, ns, "lost-answer")
	g := NewWithT(t)
	g.Expect(creates(lost)).To(HaveLen(1))
	g.Expect(creates(lost)[0].AnswerLost).To(BeTrue())

	crash := onSale()
	var dropped atomic.Bool
	setWriteHook(func(obj client.Object) error {
		n, ok := obj.(*twiliov1.TwilioPhoneNumber)
		if ok && n.Namespace == ns && strings.Contains(n.Annotations[twiliov1.AnnotationPurchase], "phoneNumberSid") && dropped.CompareAndSwap(false, true) {
			return apierrors.NewServiceUnavailable("injected: the manager died after the create call")
		}
		return nil
	})
	defer setWriteHook(nil)
	createNumber(t, ns, "crash", acct, crash, purchaseOn)
	waitBought(t, ns, "crash")
	g.Expect(dropped.Load()).To(BeTrue(), "the record of the purchase was lost once")
	g.Expect(creates(crash)).To(HaveLen(1), "found in the account, not bought again")
}

// TestNumberNotOnSaleIsReported: Twilio refusing the purchase (the number is
// not on sale) leaves nothing bought and no purchase record.
func TestNumberNotOnSaleIsReported(t *testing.T) {
	ns := newNamespace(t)
	acct := createAccount(t, ns, testAuthToken, buyer, allowPurchases(5, true))
	e164 := nextE164() // never stocked
	createNumber(t, ns, "gone", acct, e164, purchaseOn)
	obj := waitReady(t, ns, "gone", metav1.ConditionFalse, twiliov1.ReasonNumberUnavailable)
	g := NewWithT(t)
	g.Expect(obj.Status.Purchase).To(BeNil())
	g.Expect(obj.Annotations).NotTo(HaveKey(twiliov1.AnnotationPurchase))
	_, found := emulator.NumberByPhone(e164)
	g.Expect(found).To(BeFalse())
	g.Consistently(func() int { return len(creates(e164)) }, 3*time.Second, 200*time.Millisecond).Should(Equal(1),
		"a refused sale is not asked again every poll")
}

// TestReleaseOnlyWithAllThreeConditions: deletionPolicy Release releases a
// number only when this operator bought it and the account allows releases;
// otherwise the number is restored and stays, and the refusal is an event.
func TestReleaseOnlyWithAllThreeConditions(t *testing.T) {
	g := NewWithT(t)
	release := func(n *twiliov1.TwilioPhoneNumber) { n.Spec.DeletionPolicy = twiliov1.DeletionPolicyRelease }

	// Bought, Release, but the account does not allow releases.
	ns := newNamespace(t)
	acct := createAccount(t, ns, testAuthToken, buyer, allowPurchases(5, false))
	e164 := onSale()
	createNumber(t, ns, "kept", acct, e164, func(n *twiliov1.TwilioPhoneNumber) { purchaseOn(n); release(n) })
	sid := waitBought(t, ns, "kept").Status.Purchase.PhoneNumberSID
	deleteNumber(t, ns, "kept")
	waitGone(t, ns, "kept")
	live := twilioNumber(g, sid)
	g.Expect(live.VoiceURL).To(BeEmpty(), "restored to its empty original")
	g.Expect(twilioRequests(twiliosim.KindDeleteNumber, sid)).To(BeEmpty())

	// Not bought by the operator, Release, the account allows releases:
	// restored, never released, even with a forged purchase record.
	ns2 := newNamespace(t)
	acct2 := createAccount(t, ns2, testAuthToken, buyer, allowPurchases(5, true))
	existing := nextE164()
	tw := emulator.AddNumber(twiliosim.Number{AccountSID: testBuyerSID, PhoneNumber: existing, VoiceURL: "https://old-platform.example.com/voice"})
	createNumber(t, ns2, "adopted", acct2, existing, func(n *twiliov1.TwilioPhoneNumber) {
		release(n)
		n.Annotations = map[string]string{twiliov1.AnnotationPurchase: `{"record":{"intentId":"forged","requestedAt":"2026-01-01T00:00:00Z","phoneNumberSid":"` + tw.SID + `"},"mac":"AAAA"}`}
	})
	obj := waitReady(t, ns2, "adopted", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(obj.Status.Purchase).To(BeNil(), "a record the operator did not sign proves nothing")
	deleteNumber(t, ns2, "adopted")
	waitGone(t, ns2, "adopted")
	g.Expect(twilioNumber(g, tw.SID).VoiceURL).To(Equal("https://old-platform.example.com/voice"))
	g.Expect(twilioRequests(twiliosim.KindDeleteNumber, tw.SID)).To(BeEmpty(), "never released")

	// All three: released, one explicit step.
	bought := onSale()
	createNumber(t, ns2, "released", acct2, bought, func(n *twiliov1.TwilioPhoneNumber) { purchaseOn(n); release(n) })
	sid = waitBought(t, ns2, "released").Status.Purchase.PhoneNumberSID
	deleteNumber(t, ns2, "released")
	waitGone(t, ns2, "released")
	_, stillThere := emulator.Number(sid)
	g.Expect(stillThere).To(BeFalse(), "released from the account")
	g.Expect(succeeded(twilioRequests(twiliosim.KindDeleteNumber, sid))).To(HaveLen(1))
	g.Expect(testutil.ToFloat64(numbersReleased.WithLabelValues(ns2, acct2))).To(Equal(1.0), "twilio_numbers_released_total")
	g.Expect(testutil.ToFloat64(numbersReleased.WithLabelValues(ns, acct))).To(BeZero(), "the refused release is not counted")
	g.Eventually(func(g Gomega) []string { return eventNotes(g, ns2, "released", "Released") }, wait, tick).
		Should(ContainElement(ContainSubstring(sid)))
	g.Eventually(func(g Gomega) []string { return eventReasons(g, ns2, "adopted") }, wait, tick).Should(ContainElement("ReleaseRefused"))
	g.Eventually(func(g Gomega) []string { return eventReasons(g, ns, "kept") }, wait, tick).Should(ContainElement("ReleaseRefused"))
}

// TestDeletedWhilePurchasePending: the create's answer is lost and the
// record of the purchase cannot be written, and the object is deleted then:
// its finalizer, written with the intent before the create, keeps it until
// the purchase is settled and its deletion policy (Release) applied, so the
// bought number is not left routed here and unrecorded.
func TestDeletedWhilePurchasePending(t *testing.T) {
	ns := newNamespace(t)
	acct := createAccount(t, ns, testAuthToken, buyer, allowPurchases(5, true))
	e164 := onSale()
	emulator.FailNext(func(r twiliosim.Request) bool {
		return r.Kind == twiliosim.KindCreateNumber && r.Form.Get("PhoneNumber") == e164
	}, twiliosim.Fault{LoseAnswer: true}, 1)
	var blocking atomic.Bool
	blocking.Store(true)
	setWriteHook(func(obj client.Object) error {
		n, ok := obj.(*twiliov1.TwilioPhoneNumber)
		if ok && n.Namespace == ns && blocking.Load() && strings.Contains(n.Annotations[twiliov1.AnnotationPurchase], "phoneNumberSid") {
			return apierrors.NewServiceUnavailable("injected: the record of the purchase cannot be written")
		}
		return nil
	})
	defer setWriteHook(nil)
	createNumber(t, ns, "pending", acct, e164, func(n *twiliov1.TwilioPhoneNumber) {
		purchaseOn(n)
		n.Spec.DeletionPolicy = twiliov1.DeletionPolicyRelease
	})
	g := NewWithT(t)
	g.Eventually(func() int { return len(creates(e164)) }, wait, tick).Should(Equal(1), "bought, its answer lost")
	g.Eventually(func(g Gomega) []string { return getNumber(g, ns, "pending").Finalizers }, wait, tick).
		Should(ContainElement(Finalizer), "the pending purchase holds the object")
	deleteNumber(t, ns, "pending")
	blocking.Store(false)
	waitGone(t, ns, "pending")
	_, owned := emulator.NumberByPhone(e164)
	g.Expect(owned).To(BeFalse(), "settled as bought, then released")
	g.Expect(creates(e164)).To(HaveLen(1), "bought once")
}
