package controllers

import (
	"encoding/json"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/twiliosig"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

// testEventsURL is the SmsUrl the operator sets in these tests.
var testEventsURL = testPublicURL + EventsPath + twiliosig.ConnectionOverrides

// smsOf is a number's SMS routing as Twilio has it.
func smsOf(n twiliosim.Number) []string {
	return []string{n.SmsURL, n.SmsMethod, n.SmsFallbackURL, n.SmsFallbackMethod, n.SmsApplicationSID}
}

func withOldSMS(n *twiliosim.Number) {
	n.VoiceURL = "https://old-platform.example.com/voice"
	n.SmsURL, n.SmsMethod = "https://old-platform.example.com/sms", "GET"
	n.SmsFallbackURL, n.SmsFallbackMethod = "https://old-platform.example.com/sms-fallback", "GET"
}

func messagingOn(n *twiliov1.TwilioPhoneNumber) { n.Spec.Messaging = twiliov1.MessagingEnabled }

func setMessaging(t *testing.T, ns, name string, m twiliov1.Messaging) {
	t.Helper()
	NewWithT(t).Eventually(func() error {
		obj := getNumber(NewWithT(t), ns, name)
		obj.Spec.Messaging = m
		return k8s.Update(t.Context(), obj)
	}, wait, tick).Should(Succeed())
}

func waitMessaging(t *testing.T, ns, name string, status metav1.ConditionStatus, reason string) *twiliov1.TwilioPhoneNumber {
	t.Helper()
	var obj *twiliov1.TwilioPhoneNumber
	NewWithT(t).Eventually(func(g Gomega) {
		obj = getNumber(g, ns, name)
		g.Expect(obj.Status.ObservedGeneration).To(Equal(obj.Generation))
		st, r, msg := condition(obj.Status.Conditions, twiliov1.ConditionMessaging)
		g.Expect([]string{string(st), r}).To(Equal([]string{string(status), reason}), msg)
	}, wait, tick).Should(Succeed())
	return obj
}

// TestSMSTakeoverAndRestoreAreExact: with spec.messaging Enabled the number's
// SMS go to the webhook server (its SMS application detached), what it had
// is saved before, and the hand-back puts every SMS field back.
func TestSMSTakeoverAndRestoreAreExact(t *testing.T) {
	ns, acct, e164, tw := newScenario(t, func(n *twiliosim.Number) {
		withOldSMS(n)
		n.SmsApplicationSID = "AP" + "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
	})
	original := smsOf(tw)
	createNumber(t, ns, "sms", acct, e164, messagingOn)
	waitReady(t, ns, "sms", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	obj := waitMessaging(t, ns, "sms", metav1.ConditionTrue, twiliov1.ReasonSMSRouted)
	g := NewWithT(t)

	live := twilioNumber(g, tw.SID)
	g.Expect([]string{live.SmsURL, live.SmsMethod, live.SmsApplicationSID}).To(Equal([]string{testEventsURL, "POST", ""}))
	smsURL, _, _, _ := emulator.EffectiveSmsURL(e164)
	g.Expect(smsURL).To(Equal(testEventsURL), "Twilio sends the number's SMS to the webhook server")
	saved := obj.Status.SavedRouting
	g.Expect(saved).NotTo(BeNil())
	g.Expect(saved.SMSSaved).To(BeTrue())
	g.Expect([]string{saved.SmsURL, saved.SmsMethod, saved.SmsFallbackURL, saved.SmsFallbackMethod, saved.SmsApplicationSID}).To(Equal(original))

	// A Console edit of the SMS fallback while routed: the hand-back still
	// writes back what was saved.
	emulator.UpdateNumber(tw.SID, func(n *twiliosim.Number) { n.SmsFallbackURL = "https://console-edit.example.com/sms-fallback" })
	setRouting(t, ns, "sms", twiliov1.VoiceRoutingDisabled)
	waitReady(t, ns, "sms", metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled)
	g.Expect(smsOf(twilioNumber(g, tw.SID))).To(Equal(original), "every SMS field is back")
	g.Expect(twilioNumber(g, tw.SID).VoiceURL).To(Equal("https://old-platform.example.com/voice"))
	_, reason, _ := condition(getNumber(g, ns, "sms").Status.Conditions, twiliov1.ConditionMessaging)
	g.Expect(reason).To(Equal(twiliov1.ReasonVoiceNotRouted))
}

// TestMessagingOnLaterSavesSMSFirstAndOffRestoresIt: SMS taken over after
// the voice routing save the SMS routing as it is then (a Console edit made
// meanwhile included); turning messaging off puts it back and forgets it,
// leaving the voice take-over as it was.
func TestMessagingOnLaterSavesSMSFirstAndOffRestoresIt(t *testing.T) {
	ns, acct, e164, tw := newScenario(t, withOldSMS)
	createNumber(t, ns, "later", acct, e164, nil)
	waitReady(t, ns, "later", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g := NewWithT(t)
	g.Expect(twilioNumber(g, tw.SID).SmsURL).To(Equal("https://old-platform.example.com/sms"), "messaging is off by default")
	g.Expect(getNumber(g, ns, "later").Status.SavedRouting.SMSSaved).To(BeFalse())

	emulator.UpdateNumber(tw.SID, func(n *twiliosim.Number) { n.SmsURL = "https://console-edit.example.com/sms" })
	edited := smsOf(twilioNumber(g, tw.SID))
	setMessaging(t, ns, "later", twiliov1.MessagingEnabled)
	obj := waitMessaging(t, ns, "later", metav1.ConditionTrue, twiliov1.ReasonSMSRouted)
	s := obj.Status.SavedRouting
	g.Expect([]string{s.SmsURL, s.SmsMethod, s.SmsFallbackURL, s.SmsFallbackMethod, s.SmsApplicationSID}).To(Equal(edited))
	g.Expect(s.VoiceURL).To(Equal("https://old-platform.example.com/voice"), "the voice original is kept")
	g.Expect(twilioNumber(g, tw.SID).SmsURL).To(Equal(testEventsURL))

	setMessaging(t, ns, "later", twiliov1.MessagingDisabled)
	g.Eventually(func(g Gomega) {
		obj := getNumber(g, ns, "later")
		g.Expect(obj.Status.SavedRouting).NotTo(BeNil())
		g.Expect(obj.Status.SavedRouting.SMSSaved).To(BeFalse())
		st, _, _ := condition(obj.Status.Conditions, twiliov1.ConditionMessaging)
		g.Expect(st).To(BeEmpty(), "no Messaging condition without spec.messaging")
	}, wait, tick).Should(Succeed())
	live := twilioNumber(g, tw.SID)
	g.Expect(smsOf(live)).To(Equal(edited), "SMS handed back exactly")
	g.Expect(live.VoiceURL).To(Equal(testVoiceURL), "voice stays taken over")
	var sr signedRouting
	var annotated twiliov1.SavedRouting
	g.Expect(json.Unmarshal([]byte(getNumber(g, ns, "later").Annotations[twiliov1.AnnotationSavedRouting]), &sr)).To(Succeed())
	g.Expect(json.Unmarshal(sr.Routing, &annotated)).To(Succeed())
	g.Expect(annotated.VoiceURL).To(Equal("https://old-platform.example.com/voice"))
	g.Expect(annotated.SMSSaved).To(BeFalse(), "the guard forgot the SMS part too")
}

// TestOwnEventsURLNeverSavedAsSMSOriginal: a number whose SmsUrl is already
// the webhook server's (an earlier install, a copy-paste) saves no SmsUrl.
func TestOwnEventsURLNeverSavedAsSMSOriginal(t *testing.T) {
	ns, acct, e164, tw := newScenario(t, func(n *twiliosim.Number) {
		n.VoiceURL = "https://old-platform.example.com/voice"
		n.SmsURL = testPublicURL + EventsPath // without the fragment
	})
	createNumber(t, ns, "own", acct, e164, messagingOn)
	obj := waitMessaging(t, ns, "own", metav1.ConditionTrue, twiliov1.ReasonSMSRouted)
	g := NewWithT(t)
	g.Expect(obj.Status.SavedRouting.SMSSaved).To(BeTrue())
	g.Expect(obj.Status.SavedRouting.SmsURL).To(BeEmpty())
	setRouting(t, ns, "own", twiliov1.VoiceRoutingDisabled)
	waitReady(t, ns, "own", metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled)
	g.Expect(twilioNumber(g, tw.SID).SmsURL).To(BeEmpty(), "handing back never leaves the SMS pointing at us")
}

// TestNumberInMessagingServiceIsReportedNotDetached: a service whose inbound
// settings override the number's is reported and the number's SMS routing is
// left alone; one that defers to the number gets it routed.
func TestNumberInMessagingServiceIsReportedNotDetached(t *testing.T) {
	ns, acct, e164, tw := newScenario(t, withOldSMS)
	svc := emulator.AddMessagingService(twiliosim.MessagingService{AccountSID: testAccountSID, FriendlyName: "Support line",
		InboundRequestURL: "https://old-platform.example.com/service-inbound", NumberSIDs: []string{tw.SID}})
	createNumber(t, ns, "svc", acct, e164, messagingOn)
	waitReady(t, ns, "svc", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	obj := waitMessaging(t, ns, "svc", metav1.ConditionFalse, twiliov1.ReasonInMessagingService)
	g := NewWithT(t)
	g.Expect(obj.Status.MessagingServiceSID).To(Equal(svc.SID))
	_, _, msg := condition(obj.Status.Conditions, twiliov1.ConditionMessaging)
	g.Expect(msg).To(And(ContainSubstring(svc.SID), ContainSubstring("Support line"), ContainSubstring("use inbound webhook on number")))
	g.Expect(smsOf(twilioNumber(g, tw.SID))).To(Equal(smsOf(tw)), "the number's SMS routing is untouched")
	g.Expect(obj.Status.SavedRouting.SMSSaved).To(BeFalse())
	g.Expect(eventReasons(g, ns, "svc")).To(ContainElement(twiliov1.ReasonInMessagingService))

	// The service defers to the number: now its SmsUrl counts, and is taken.
	emulator.UpdateMessagingService(svc.SID, func(m *twiliosim.MessagingService) { m.UseInboundWebhookOnNumber = true })
	// A spec change re-plans at once (the service list is cached per poll).
	g.Eventually(func() error {
		obj := getNumber(g, ns, "svc")
		obj.Spec.Fallback = &twiliov1.FallbackSpec{Action: twiliov1.FallbackSay, Message: "Sorry"}
		return k8s.Update(t.Context(), obj)
	}, wait, tick).Should(Succeed())
	waitMessaging(t, ns, "svc", metav1.ConditionTrue, twiliov1.ReasonSMSRouted)
	smsURL, _, _, _ := emulator.EffectiveSmsURL(e164)
	g.Expect(smsURL).To(Equal(testEventsURL))
	deleteNumber(t, ns, "svc")
	waitGone(t, ns, "svc")
	g.Expect(smsOf(twilioNumber(g, tw.SID))).To(Equal(smsOf(tw)), "deletion hands the SMS routing back")
}

// TestOriginalUnknownLeavesSMSAlone: a number that already routed its calls
// here, with no saved original, has nothing to save its SMS routing in: its
// SMS are left as they are, and the Messaging condition says why.
func TestOriginalUnknownLeavesSMSAlone(t *testing.T) {
	ns, acct, e164, tw := newScenario(t, func(n *twiliosim.Number) {
		n.VoiceURL = testVoiceURL
		n.SmsURL = "https://old-platform.example.com/sms"
	})
	createNumber(t, ns, "unknown", acct, e164, messagingOn)
	waitReady(t, ns, "unknown", metav1.ConditionTrue, twiliov1.ReasonOriginalUnknown)
	obj := waitMessaging(t, ns, "unknown", metav1.ConditionFalse, twiliov1.ReasonOriginalUnknown)
	g := NewWithT(t)
	g.Expect(obj.Status.SavedRouting).To(BeNil())
	g.Consistently(func(g Gomega) string { return twilioNumber(g, tw.SID).SmsURL }, 3*time.Second, 200*time.Millisecond).
		Should(Equal("https://old-platform.example.com/sms"))
	g.Expect(succeeded(twilioRequests(twiliosim.KindUpdateNumber, tw.SID))).To(BeEmpty(), "nothing written")
}
