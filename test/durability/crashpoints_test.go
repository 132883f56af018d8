package durability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/controllers"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

// TestEveryCrashPoint walks one number through take-over (voice and SMS),
// SMS handed back alone (messaging Disabled) and taken again, hand-back
// (Disabled), take-over again (Enabled) and deletion, with the manager killed
// right after its k-th write, for every k until a run has no write left to
// crash after. After each step, a number that routes to the webhook has its
// guard on the API server holding the original, and at the end the original
// is back exactly.
func TestEveryCrashPoint(t *testing.T) {
	walkCrashPoints(t, "life cycle", 40, crashPointScenario)
}

// walkCrashPoints runs scenario with a crash after write k, for k = 1, 2, …
// until a run has no write left to crash after (at most most runs).
func walkCrashPoints(t *testing.T, what string, most int64, scenario func(t *testing.T, k int64) (crashed bool)) {
	t.Helper()
	for k := int64(1); k <= most; k++ {
		var crashed bool
		if !t.Run(fmt.Sprintf("crash after write %d", k), func(t *testing.T) { crashed = scenario(t, k) }) {
			return
		}
		if !crashed {
			t.Logf("the %s takes %d writes: a crash after each one was tried", what, k-1)
			return
		}
	}
	t.Fatalf("the %s still had writes left after %d crash points", what, most)
}

func crashPointScenario(t *testing.T, k int64) (crashed bool) {
	g := NewWithT(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	accountSID := fmt.Sprintf("AC%032x", 0xc000+k)
	sim, ns, simURL := newAccount(t, accountSID, "crashpoint-", 0)
	orig := sim.AddNumber(twiliosim.Number{AccountSID: accountSID, PhoneNumber: fmt.Sprintf("+1629555%04d", k),
		VoiceURL: "https://old.example.com/voice", VoiceMethod: "GET", StatusCallback: "https://status.example.com/cb",
		SmsURL: "https://old.example.com/sms", SmsMethod: "GET", SmsFallbackURL: "https://old.example.com/sms-fallback"})
	sup := startCrashing(ctx, g, simURL, k, 1)
	defer func() {
		cancel()
		<-sup.finished
	}()
	waitVerified(ctx, g, ns.Name)

	key := client.ObjectKey{Namespace: ns.Name, Name: "n"}
	g.Expect(k8s.Create(ctx, &twiliov1.TwilioPhoneNumber{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "n"},
		Spec: twiliov1.TwilioPhoneNumberSpec{AccountRef: twiliov1.LocalObjectReference{Name: "main"}, PhoneNumber: orig.PhoneNumber,
			Agent: &twiliov1.AgentSpec{URL: "ws://agent.agents.svc:8080/media"}, Messaging: twiliov1.MessagingEnabled},
	})).To(Succeed())

	want := routing(orig)
	// step waits for the Ready reason, then checks the guard: routed to us
	// means the server holds the original.
	step := func(reason string) {
		t.Helper()
		g.Eventually(func(g Gomega) {
			obj := &twiliov1.TwilioPhoneNumber{}
			g.Expect(k8s.Get(ctx, key, obj)).To(Succeed())
			c := meta.FindStatusCondition(obj.Status.Conditions, twiliov1.ConditionReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(reason), c.Message)
			g.Expect(obj.Status.ObservedGeneration).To(Equal(obj.Generation))
		}).WithTimeout(60 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
		obj := &twiliov1.TwilioPhoneNumber{}
		g.Expect(k8s.Get(ctx, key, obj)).To(Succeed())
		live, _ := sim.Number(orig.SID)
		if live.VoiceURL == voiceURL {
			g.Expect(obj.Finalizers).To(ContainElement(controllers.Finalizer))
			g.Expect(obj.Annotations).To(HaveKey(twiliov1.AnnotationSavedRouting))
			g.Expect(obj.Status.SavedRouting).NotTo(BeNil())
			g.Expect(obj.Status.SavedRouting.VoiceURL).To(Equal(orig.VoiceURL))
			g.Expect(obj.Status.SavedRouting.StatusCallback).To(Equal(orig.StatusCallback))
			if live.SmsURL != orig.SmsURL {
				g.Expect(obj.Status.SavedRouting.SMSSaved).To(BeTrue(), "SMS routed here only with the SMS original saved")
				g.Expect(obj.Status.SavedRouting.SmsURL).To(Equal(orig.SmsURL))
				g.Expect(obj.Status.SavedRouting.SmsFallbackURL).To(Equal(orig.SmsFallbackURL))
			}
		} else {
			g.Expect(routing(live)).To(Equal(want), "handed back exactly")
		}
	}
	step(twiliov1.ReasonConfigured)
	// SMS handed back alone, then taken again.
	g.Expect(retrySetMessaging(ctx, ns.Name, "n", twiliov1.MessagingDisabled)).To(Succeed())
	g.Eventually(func(g Gomega) {
		obj := &twiliov1.TwilioPhoneNumber{}
		g.Expect(k8s.Get(ctx, key, obj)).To(Succeed())
		g.Expect(obj.Status.SavedRouting).NotTo(BeNil())
		g.Expect(obj.Status.SavedRouting.SMSSaved).To(BeFalse())
	}).WithTimeout(60 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	live, _ := sim.Number(orig.SID)
	g.Expect([]string{live.SmsURL, live.SmsMethod, live.SmsFallbackURL}).To(Equal([]string{orig.SmsURL, orig.SmsMethod, orig.SmsFallbackURL}), "SMS handed back exactly")
	g.Expect(retrySetMessaging(ctx, ns.Name, "n", twiliov1.MessagingEnabled)).To(Succeed())
	g.Eventually(func(g Gomega) {
		obj := &twiliov1.TwilioPhoneNumber{}
		g.Expect(k8s.Get(ctx, key, obj)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(obj.Status.Conditions, twiliov1.ConditionMessaging)).To(BeTrue())
	}).WithTimeout(60 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	step(twiliov1.ReasonConfigured)
	g.Expect(retrySetRouting(ctx, ns.Name, "n", twiliov1.VoiceRoutingDisabled)).To(Succeed())
	step(twiliov1.ReasonRoutingDisabled)
	g.Expect(retrySetRouting(ctx, ns.Name, "n", twiliov1.VoiceRoutingEnabled)).To(Succeed())
	step(twiliov1.ReasonConfigured)
	g.Expect(k8s.Delete(ctx, &twiliov1.TwilioPhoneNumber{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "n"}})).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, key, &twiliov1.TwilioPhoneNumber{}))
	}).WithTimeout(60 * time.Second).Should(BeTrue())
	live, _ = sim.Number(orig.SID)
	g.Expect(routing(live)).To(Equal(want), "the original is back exactly")
	sup.logWrites(t)
	counts := sup.crashCounts()
	t.Logf("crash after write %d: %v", k, counts)
	return counts[afterKubeWrite]+counts[afterTwilioWrite] > 0
}

// TestEveryCrashPointOfAPurchase buys a number (acquire: Purchase, routing
// set in the create call) and releases it (deletionPolicy Release), with
// the manager killed right after its k-th write, for every k. Each run buys
// the number exactly once and ends with it released.
func TestEveryCrashPointOfAPurchase(t *testing.T) {
	walkCrashPoints(t, "purchase life cycle", 20, purchaseCrashScenario)
}

func purchaseCrashScenario(t *testing.T, k int64) (crashed bool) {
	g := NewWithT(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	accountSID := fmt.Sprintf("AC%032x", 0xb000+k)
	sim, ns, simURL := newAccount(t, accountSID, "purchase-crash-", 0)
	e164 := fmt.Sprintf("+1630555%04d", k)
	sim.AddAvailable(twiliosim.AvailableNumber{PhoneNumber: e164})
	acctKey := client.ObjectKey{Namespace: ns.Name, Name: "main"}
	g.Eventually(func() error {
		acct := &twiliov1.TwilioAccount{}
		if err := k8s.Get(ctx, acctKey, acct); err != nil {
			return err
		}
		acct.Spec.Purchasing = &twiliov1.PurchasingSpec{Enabled: true, MaxNumbers: 1, AllowRelease: true}
		return k8s.Update(ctx, acct)
	}).WithTimeout(10 * time.Second).Should(Succeed())
	sup := startCrashing(ctx, g, simURL, k, 3)
	defer func() {
		cancel()
		<-sup.finished
	}()
	waitVerified(ctx, g, ns.Name)

	key := client.ObjectKey{Namespace: ns.Name, Name: "n"}
	g.Expect(k8s.Create(ctx, &twiliov1.TwilioPhoneNumber{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "n"},
		Spec: twiliov1.TwilioPhoneNumberSpec{AccountRef: twiliov1.LocalObjectReference{Name: "main"}, PhoneNumber: e164,
			Agent: &twiliov1.AgentSpec{URL: "ws://agent.agents.svc:8080/media"}, Acquire: twiliov1.AcquirePurchase,
			DeletionPolicy: twiliov1.DeletionPolicyRelease},
	})).To(Succeed())
	var sid string
	g.Eventually(func(g Gomega) {
		obj := &twiliov1.TwilioPhoneNumber{}
		g.Expect(k8s.Get(ctx, key, obj)).To(Succeed())
		c := meta.FindStatusCondition(obj.Status.Conditions, twiliov1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(twiliov1.ReasonConfigured), c.Message)
		g.Expect(obj.Status.Purchase).NotTo(BeNil())
		g.Expect(obj.Status.PreviousVoiceURL).To(HaveValue(BeEmpty()))
		sid = obj.Status.Purchase.PhoneNumberSID
	}).WithTimeout(60 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	live, ok := sim.Number(sid)
	g.Expect(ok).To(BeTrue())
	g.Expect(live.VoiceURL).To(Equal(voiceURL))

	g.Expect(k8s.Delete(ctx, &twiliov1.TwilioPhoneNumber{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "n"}})).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, key, &twiliov1.TwilioPhoneNumber{}))
	}).WithTimeout(60 * time.Second).Should(BeTrue())
	_, stillThere := sim.Number(sid)
	g.Expect(stillThere).To(BeFalse(), "released")
	processed := 0
	for _, r := range sim.Requests() {
		if r.Kind == twiliosim.KindCreateNumber && r.Status > 0 && r.Status < 300 {
			processed++
		}
	}
	g.Expect(processed).To(Equal(1), "bought exactly once")
	sup.logWrites(t)
	counts := sup.crashCounts()
	t.Logf("crash after write %d: %v", k, counts)
	return counts[afterKubeWrite]+counts[afterTwilioWrite] > 0
}

// logWrites logs, with -v, what each write of the last incarnation was.
func (s *supervisor) logWrites(t *testing.T) {
	if !testing.Verbose() {
		return
	}
	s.mu.Lock()
	cur := s.current
	s.mu.Unlock()
	cur.mu.Lock()
	defer cur.mu.Unlock()
	for i, w := range cur.log {
		t.Logf("write %d of the last incarnation: %s", i+1, w)
	}
}

// startCrashing starts a manager that dies right after its k-th write (and
// is restarted).
func startCrashing(ctx context.Context, g Gomega, simURL string, k int64, seed uint64) *supervisor {
	sup := &supervisor{
		cfg: restCfg, lag: 200 * time.Millisecond, rng: rand.New(rand.NewPCG(uint64(k), seed)), crashAt: k,
		opts: controllers.Options{VoiceURL: voiceURL, PollInterval: pollPeriod, ConcurrentReconciles: 2, GuardKey: guardKey, AllowedAPIURLs: []string{simURL}},
	}
	g.Expect(sup.start(ctx)).To(Succeed())
	return sup
}

// waitVerified waits until the namespace's account "main" is verified,
// before the number exists: only the number's writes are counted.
func waitVerified(ctx context.Context, g Gomega, ns string) {
	g.Eventually(func(g Gomega) {
		acct := &twiliov1.TwilioAccount{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "main"}, acct)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(acct.Status.Conditions, twiliov1.ConditionReady)).To(BeTrue())
	}).WithTimeout(30 * time.Second).Should(Succeed())
}
