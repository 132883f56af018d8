package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/credentials"
	"github.com/loquent/twilio-voice-operator/internal/twiliosig"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

// otherInstall is the Voice URL another install of the operator (another
// cluster, another public URL) sets.
var otherInstall = InstallVoiceURL("https://other-cluster.example.com", "b2")

func TestOtherInstallsURLIsContestedNeverSaved(t *testing.T) {
	ns, acct, e164, tw := newScenario(t, withURL(otherInstall))
	createNumber(t, ns, "shared", acct, e164, nil)

	n := waitReady(t, ns, "shared", metav1.ConditionFalse, twiliov1.ReasonContested)
	_, _, msg := condition(n.Status.Conditions, twiliov1.ConditionReady)
	g := NewWithT(t)
	g.Expect(msg).To(ContainSubstring(otherInstall))
	g.Expect(n.Status.SavedRouting).To(BeNil(), "another install's URL is never saved as the original")
	g.Expect(n.Finalizers).NotTo(ContainElement(Finalizer))
	g.Consistently(func(g Gomega) {
		g.Expect(twilioNumber(g, tw.SID).VoiceURL).To(Equal(otherInstall))
	}, 3*testPoll, tick).Should(Succeed())
	g.Expect(succeeded(twilioRequests("UpdateNumber", tw.SID))).To(BeEmpty(), "no write to a number another install routes")

	// The other install hands the number back: this one takes it over then.
	emulator.UpdateNumber(tw.SID, func(n *twiliosim.Number) { n.VoiceURL = "https://old-platform.example.com/voice" })
	n = waitReady(t, ns, "shared", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(n.Status.SavedRouting.VoiceURL).To(Equal("https://old-platform.example.com/voice"))
}

func TestRoutingFlippingBackIsContested(t *testing.T) {
	const foreign = "https://rival-platform.example.com/voice"
	ns, acct, e164, tw := newScenario(t, withURL("https://old-platform.example.com/voice"))
	createNumber(t, ns, "flips", acct, e164, nil)
	waitReady(t, ns, "flips", metav1.ConditionTrue, twiliov1.ReasonConfigured)

	// Something else keeps setting its URL back after every re-apply.
	g := NewWithT(t)
	flips := 0
	g.Eventually(func(g Gomega) {
		if twilioNumber(g, tw.SID).VoiceURL == testVoiceURL {
			emulator.UpdateNumber(tw.SID, func(n *twiliosim.Number) { n.VoiceURL = foreign })
			flips++
		}
		_, reason, _ := condition(getNumber(g, ns, "flips").Status.Conditions, twiliov1.ConditionReady)
		g.Expect(reason).To(Equal(twiliov1.ReasonContested))
	}, 8*testPoll, 50*time.Millisecond).Should(Succeed())
	g.Expect(flips).To(Equal(contestFlips), "Contested at the third flip back to the same URL")

	n := getNumber(g, ns, "flips")
	_, _, msg := condition(n.Status.Conditions, twiliov1.ConditionReady)
	g.Expect(msg).To(ContainSubstring(foreign))
	g.Expect(n.Status.SavedRouting.VoiceURL).To(Equal("https://old-platform.example.com/voice"), "the saved original is untouched")
	writes := len(succeeded(twilioRequests("UpdateNumber", tw.SID)))
	g.Consistently(func() int { return len(succeeded(twilioRequests("UpdateNumber", tw.SID))) }, 3*testPoll, tick).
		Should(Equal(writes), "a Contested number is not re-applied")

	// Deleting it still restores the saved original.
	deleteNumber(t, ns, "flips")
	waitGone(t, ns, "flips")
	g.Expect(twilioNumber(g, tw.SID).VoiceURL).To(Equal("https://old-platform.example.com/voice"))
}

func TestHandBackLeavesAnotherInstallsRouting(t *testing.T) {
	ns, acct, e164, tw := newScenario(t, withURL("https://old-platform.example.com/voice"))
	createNumber(t, ns, "both", acct, e164, nil)
	waitReady(t, ns, "both", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	// Both installs took over from the same original; the other one wrote last.
	emulator.UpdateNumber(tw.SID, func(n *twiliosim.Number) { n.VoiceURL = otherInstall })
	waitReady(t, ns, "both", metav1.ConditionFalse, twiliov1.ReasonContested)

	deleteNumber(t, ns, "both")
	waitGone(t, ns, "both")
	g := NewWithT(t)
	g.Expect(twilioNumber(g, tw.SID).VoiceURL).To(Equal(otherInstall), "the install that routes the number keeps it")
	g.Eventually(func(g Gomega) []string { return eventReasons(g, ns, "both") }, wait, tick).Should(ContainElement("LeftToOtherInstall"))
}

func TestTakeoversArePacedPerAccount(t *testing.T) {
	ns := newNamespace(t)
	acct := createAccount(t, ns, testAuthToken, func(a *twiliov1.TwilioAccount) {
		a.Spec.Takeover = &twiliov1.TakeoverPacing{Burst: ptrTo(int32(2)), PerMinute: ptrTo(int32(60))}
	})
	g := NewWithT(t)

	const count = 5
	sids := make([]string, count)
	for i := range count {
		e164 := nextE164()
		sids[i] = addTwilioNumber(e164, withURL("https://old-platform.example.com/voice")).SID
		createNumber(t, ns, "n"+string(rune('a'+i)), acct, e164, nil)
	}
	sawPaced := false
	g.Eventually(func(g Gomega) {
		var list twiliov1.TwilioPhoneNumberList
		g.Expect(k8s.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
		configured := 0
		for i := range list.Items {
			switch _, reason, _ := condition(list.Items[i].Status.Conditions, twiliov1.ConditionReady); reason {
			case twiliov1.ReasonTakeoverPaced:
				sawPaced = true
			case twiliov1.ReasonConfigured:
				configured++
			}
		}
		g.Expect(configured).To(Equal(count))
	}, wait, 20*time.Millisecond).Should(Succeed())
	g.Expect(sawPaced).To(BeTrue(), "numbers waiting for their turn say so")

	var times []time.Time
	for _, sid := range sids {
		for _, r := range succeeded(twilioRequests("UpdateNumber", sid)) {
			times = append(times, r.Time)
		}
	}
	g.Expect(times).To(HaveLen(count))
	slices.SortFunc(times, time.Time.Compare)
	// Two at once, then one a second: the fifth comes at least ~3 s after the first.
	g.Expect(times[count-1].Sub(times[0])).To(BeNumerically(">=", 2500*time.Millisecond), "%v", times)
	g.Expect(times[1].Sub(times[0])).To(BeNumerically("<", time.Second), "the burst goes at once")
}

func TestFallbackURLSetWhileRoutedAndRestored(t *testing.T) {
	ns, acct, e164, tw := newScenario(t, func(n *twiliosim.Number) {
		n.VoiceURL, n.VoiceMethod = "https://old-platform.example.com/voice", "GET"
		n.VoiceFallbackURL = "https://old-platform.example.com/fallback"
	})
	createNumber(t, ns, "fb", acct, e164, func(n *twiliov1.TwilioPhoneNumber) {
		n.Spec.Fallback = &twiliov1.FallbackSpec{OriginalAsVoiceFallback: true}
	})
	waitReady(t, ns, "fb", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g := NewWithT(t)
	live := twilioNumber(g, tw.SID)
	g.Expect([]string{live.VoiceURL, live.VoiceFallbackURL, live.VoiceFallbackMethod}).
		To(Equal([]string{testVoiceURL, "https://old-platform.example.com/voice", "GET"}),
			"Twilio reaches the old platform when the webhook server cannot answer")

	// Drift of the fallback alone is repaired too.
	emulator.UpdateNumber(tw.SID, func(n *twiliosim.Number) { n.VoiceFallbackURL = "" })
	g.Eventually(func(g Gomega) string { return twilioNumber(g, tw.SID).VoiceFallbackURL }, wait, tick).
		Should(Equal("https://old-platform.example.com/voice"))

	setRouting(t, ns, "fb", twiliov1.VoiceRoutingDisabled)
	waitReady(t, ns, "fb", metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled)
	live = twilioNumber(g, tw.SID)
	g.Expect([]string{live.VoiceURL, live.VoiceFallbackURL}).
		To(Equal([]string{"https://old-platform.example.com/voice", "https://old-platform.example.com/fallback"}), "restore puts the original fallback back")
}

// TestBundleDeleteRestoresEveryOriginal deletes a Secret, its TwilioAccount and
// their numbers in the order kubectl delete -f of one file does.
func TestBundleDeleteRestoresEveryOriginal(t *testing.T) {
	ns := newNamespace(t)
	acct := createAccount(t, ns, testAuthToken)
	originals := map[string]string{}
	for i := range 3 {
		e164 := nextE164()
		orig := "https://old-platform.example.com/voice/" + string(rune('a'+i))
		originals[addTwilioNumber(e164, withURL(orig)).SID] = orig
		createNumber(t, ns, "b"+string(rune('a'+i)), acct, e164, nil)
	}
	for i := range 3 {
		waitReady(t, ns, "b"+string(rune('a'+i)), metav1.ConditionTrue, twiliov1.ReasonConfigured)
	}
	g := NewWithT(t)
	ctx := context.Background()
	secret := &corev1.Secret{}
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "twilio-credentials"}, secret)).To(Succeed())
		g.Expect(secret.Finalizers).To(ContainElement(twiliov1.CredentialsFinalizer))
	}, wait, tick).Should(Succeed())

	g.Expect(k8s.Delete(ctx, secret)).To(Succeed())
	g.Expect(k8s.Delete(ctx, &twiliov1.TwilioAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: acct}})).To(Succeed())
	// The account waits, and says for what.
	g.Eventually(func(g Gomega) string {
		a := &twiliov1.TwilioAccount{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: acct}, a)).To(Succeed())
		_, reason, msg := condition(a.Status.Conditions, twiliov1.ConditionNumbersHandedBack)
		return reason + ": " + msg
	}, wait, tick).Should(And(HavePrefix(twiliov1.ReasonNumbersStillRouted), ContainSubstring("3 TwilioPhoneNumber"), ContainSubstring("ba, bb, bc")))
	for i := range 3 {
		deleteNumber(t, ns, "b"+string(rune('a'+i)))
	}
	for i := range 3 {
		waitGone(t, ns, "b"+string(rune('a'+i)))
	}
	for sid, orig := range originals {
		g.Expect(twilioNumber(g, sid).VoiceURL).To(Equal(orig))
	}
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: acct}, &twiliov1.TwilioAccount{})) &&
			apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "twilio-credentials"}, &corev1.Secret{}))
	}, wait, tick).Should(BeTrue(), func() string {
		a := &twiliov1.TwilioAccount{}
		_ = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: acct}, a)
		s := &corev1.Secret{}
		_ = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "twilio-credentials"}, s)
		return fmt.Sprintf("account finalizers %v conditions %+v; secret finalizers %v", a.Finalizers, a.Status.Conditions, s.Finalizers)
	})
}

func TestAccountWithoutNumbersDeletesAtOnce(t *testing.T) {
	ns := newNamespace(t)
	acct := createAccount(t, ns, testAuthToken)
	ctx := context.Background()
	g := NewWithT(t)
	a := &twiliov1.TwilioAccount{}
	g.Eventually(func(g Gomega) []string {
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: acct}, a)).To(Succeed())
		return a.Finalizers
	}, wait, tick).Should(ContainElement(twiliov1.AccountFinalizer))
	g.Expect(k8s.Delete(ctx, a)).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: acct}, &twiliov1.TwilioAccount{}))
	}, wait, tick).Should(BeTrue())
	secret := &corev1.Secret{}
	g.Eventually(func(g Gomega) bool {
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "twilio-credentials"}, secret)).To(Succeed())
		return controllerutil.ContainsFinalizer(secret, twiliov1.CredentialsFinalizer)
	}, wait, tick).Should(BeFalse(), "a Secret no account uses is let go")
}

func TestStreamTokenSecretCreatedOnceAndKept(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	key := client.ObjectKey{Namespace: ns, Name: "stream-token"}
	g.Expect(EnsureStreamTokenSecret(ctx, k8s, key)).To(Succeed())
	s := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, key, s)).To(Succeed())
	first := string(s.Data[StreamTokenSecretKey])
	g.Expect(first).To(MatchRegexp(`^[A-Za-z0-9+/]{64}$`), "one text key of 64 base64 characters")

	g.Expect(EnsureStreamTokenSecret(ctx, k8s, key)).To(Succeed())
	g.Expect(k8s.Get(ctx, key, s)).To(Succeed())
	g.Expect(string(s.Data[StreamTokenSecretKey])).To(Equal(first), "an existing key is never replaced")
}

// TestAgentHeadersNeedALabelledSecret: a number's agent credentials come from
// a Secret only once someone who may write Secrets labelled it; then the
// manager publishes its keys (not handshake headers) for the webhook server.
func TestAgentHeadersNeedALabelledSecret(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns, acct, e164, tw := newScenario(t, withURL(originalURL))
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agent-creds"},
		StringData: map[string]string{"Authorization": "Bearer agent-s3cret", "Sec-WebSocket-Protocol": "x", "Host": "evil"}}
	g.Expect(k8s.Create(ctx, secret)).To(Succeed())
	createNumber(t, ns, "creds", acct, e164, func(n *twiliov1.TwilioPhoneNumber) {
		n.Spec.Agent.HeadersSecretRef = &twiliov1.SecretReference{Name: "agent-creds"}
	})
	n := waitReady(t, ns, "creds", metav1.ConditionFalse, twiliov1.ReasonAgentNotAllowed)
	_, _, msg := condition(n.Status.Conditions, twiliov1.ConditionReady)
	g.Expect(msg).To(ContainSubstring(twiliov1.LabelAgentHeaders))
	g.Expect(succeeded(twilioRequests("UpdateNumber", tw.SID))).To(BeEmpty(), "not taken over")
	// Any change of the Secret makes the manager publish again: still not this one.
	base := secret.DeepCopy()
	secret.Annotations = map[string]string{"touched": "1"}
	g.Expect(k8s.Patch(ctx, secret, client.MergeFrom(base))).To(Succeed())
	g.Consistently(func(g Gomega) map[string]map[string]string { return publishedHeaders(g, ns) }, 2*time.Second, tick).
		ShouldNot(HaveKey("agent-creds"), "an unlabelled Secret is never published")

	base = secret.DeepCopy()
	secret.Labels = map[string]string{twiliov1.LabelAgentHeaders: "true"}
	g.Expect(k8s.Patch(ctx, secret, client.MergeFrom(base))).To(Succeed())
	waitReady(t, ns, "creds", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Eventually(func(g Gomega) map[string]map[string]string { return publishedHeaders(g, ns) }, wait, tick).
		Should(HaveKeyWithValue("agent-creds", map[string]string{"Authorization": "Bearer agent-s3cret"}), "handshake headers are not sent")
}

// publishedHeaders reads the agent headers the manager published for ns, by Secret name.
func publishedHeaders(g Gomega, ns string) map[string]map[string]string {
	s := &corev1.Secret{}
	g.Expect(k8s.Get(context.Background(), credentialsSecret, s)).To(Succeed())
	p, err := credentials.Parse(s.Data[credentials.Key])
	g.Expect(err).NotTo(HaveOccurred())
	out := map[string]map[string]string{}
	for _, h := range p.AgentHeaders {
		if h.Namespace == ns {
			out[h.Secret] = h.Headers
		}
	}
	return out
}

// TestAccountEventSinkIsPublished: an account's default event sink reaches
// the webhook server with its verified credentials.
func TestAccountEventSinkIsPublished(t *testing.T) {
	ns := newNamespace(t)
	acct := createAccount(t, ns, testAuthToken, func(a *twiliov1.TwilioAccount) {
		a.Spec.Events = &twiliov1.EventsSpec{Sink: &twiliov1.EventSink{URL: "http://broker-ingress.knative-eventing.svc/voice/default"}}
	})
	NewWithT(t).Eventually(func(g Gomega) string {
		s := &corev1.Secret{}
		g.Expect(k8s.Get(context.Background(), credentialsSecret, s)).To(Succeed())
		p, err := credentials.Parse(s.Data[credentials.Key])
		g.Expect(err).NotTo(HaveOccurred())
		for _, a := range p.Accounts {
			if a.Namespace == ns && a.Name == acct {
				return a.EventSinkURL
			}
		}
		return ""
	}, wait, tick).Should(Equal("http://broker-ingress.knative-eventing.svc/voice/default"))
}

// TestCallStatusCallbackTakenOverAndGivenBack: with spec.events.callStatus the
// take-over points StatusCallback at the webhook server; turning it off or
// handing the number back puts the original status callback back.
func TestCallStatusCallbackTakenOverAndGivenBack(t *testing.T) {
	const origStatus = "https://old-platform.example.com/status"
	ns, acct, e164, tw := newScenario(t, func(n *twiliosim.Number) {
		n.VoiceURL, n.StatusCallback, n.StatusCallbackMethod = originalURL, origStatus, "GET"
	})
	createNumber(t, ns, "status", acct, e164, func(n *twiliov1.TwilioPhoneNumber) {
		n.Spec.Events = &twiliov1.EventsSpec{CallStatus: true}
	})
	n := waitReady(t, ns, "status", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g := NewWithT(t)
	g.Expect(n.Status.SavedRouting.StatusCallback).To(Equal(origStatus))
	live := twilioNumber(g, tw.SID)
	g.Expect([]string{live.StatusCallback, live.StatusCallbackMethod}).To(Equal([]string{testPublicURL + StatusPath + twiliosig.ConnectionOverrides, "POST"}))

	// Turned off while routed: the original comes back, the number stays ours.
	n = getNumber(g, ns, "status")
	base := n.DeepCopy()
	n.Spec.Events = nil
	g.Expect(k8s.Patch(context.Background(), n, client.MergeFrom(base))).To(Succeed())
	g.Eventually(func(g Gomega) []string {
		l := twilioNumber(g, tw.SID)
		return []string{l.VoiceURL, l.StatusCallback, l.StatusCallbackMethod}
	}, wait, tick).Should(Equal([]string{testVoiceURL, origStatus, "GET"}))
	waitReady(t, ns, "status", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Expect(eventReasons(g, ns, "status")).NotTo(ContainElement("DriftDetected"))

	setRouting(t, ns, "status", twiliov1.VoiceRoutingDisabled)
	waitReady(t, ns, "status", metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled)
	live = twilioNumber(g, tw.SID)
	g.Expect([]string{live.VoiceURL, live.StatusCallback}).To(Equal([]string{originalURL, origStatus}))
}

// TestAccountFinalizerAsksTheAPIServer: whether a deleting account's
// finalizer may go is decided on the API server's list of its numbers, not
// on a cache that does not show a number's fresh save yet.
func TestAccountFinalizerAsksTheAPIServer(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	acct := createAccount(t, ns, testAuthToken)
	a := &twiliov1.TwilioAccount{}
	g.Eventually(func(g Gomega) []string {
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: acct}, a)).To(Succeed())
		return a.Finalizers
	}, wait, tick).Should(ContainElement(twiliov1.AccountFinalizer))
	// A number that holds a saved original (its guard finalizer).
	n := &twiliov1.TwilioPhoneNumber{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "held", Finalizers: []string{Finalizer}},
		Spec: twiliov1.TwilioPhoneNumberSpec{AccountRef: twiliov1.LocalObjectReference{Name: acct}, PhoneNumber: nextE164(),
			VoiceRouting: twiliov1.VoiceRoutingDisabled},
	}
	g.Expect(k8s.Create(ctx, n)).To(Succeed())
	g.Expect(k8s.Delete(ctx, a)).To(Succeed())
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(a), a)).To(Succeed())

	// A cache that does not list the number yet.
	stale := interceptor.NewClient(fake.NewClientBuilder().WithScheme(scheme).Build(), interceptor.Funcs{
		Get: func(ctx context.Context, _ client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			return k8s.Get(ctx, key, obj, opts...)
		},
		List: func(ctx context.Context, _ client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if _, numbers := list.(*twiliov1.TwilioPhoneNumberList); numbers {
				return nil // the cache lags: no number yet
			}
			return k8s.List(ctx, list, client.InNamespace(ns)) // the namespace's one account uses the Secret
		},
	})
	r := &TwilioAccountReconciler{Client: stale, APIReader: k8s}
	done, err := r.reconcileHandBack(ctx, a, nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(done).To(BeFalse(), "the account waits for the number the API server shows")
	_, reason, msg := condition(a.Status.Conditions, twiliov1.ConditionNumbersHandedBack)
	g.Expect(reason).To(Equal(twiliov1.ReasonNumbersStillRouted))
	g.Expect(msg).To(ContainSubstring("held"))
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(a), a)).To(Succeed())
	g.Expect(a.Finalizers).To(ContainElement(twiliov1.AccountFinalizer))

	// Let the objects go.
	base := n.DeepCopy()
	n.Finalizers = nil
	g.Expect(client.IgnoreNotFound(k8s.Patch(ctx, n, client.MergeFrom(base)))).To(Succeed())
}

// TestOwnStatusCallbackNeverSavedAsOriginal: a status callback that already
// points at this operator's /twilio/status, at its public URL or an earlier
// one, is never saved as the original.
func TestOwnStatusCallbackNeverSavedAsOriginal(t *testing.T) {
	for name, ours := range map[string]string{
		"left-over": testPublicURL + StatusPath + twiliosig.ConnectionOverrides,
		"earlier":   strings.TrimSuffix(earlierVoiceURL, VoicePath) + StatusPath + twiliosig.ConnectionOverrides,
	} {
		t.Run(name, func(t *testing.T) {
			ns, acct, e164, tw := newScenario(t, func(n *twiliosim.Number) { n.VoiceURL, n.StatusCallback = originalURL, ours })
			createNumber(t, ns, name, acct, e164, func(n *twiliov1.TwilioPhoneNumber) {
				n.Spec.Events = &twiliov1.EventsSpec{CallStatus: true}
			})
			n := waitReady(t, ns, name, metav1.ConditionTrue, twiliov1.ReasonConfigured)
			g := NewWithT(t)
			g.Expect(n.Status.SavedRouting.VoiceURL).To(Equal(originalURL))
			g.Expect(n.Status.SavedRouting.StatusCallback).To(BeEmpty(), "our own status URL is not an original")
			setRouting(t, ns, name, twiliov1.VoiceRoutingDisabled)
			waitReady(t, ns, name, metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled)
			g.Expect(twilioNumber(g, tw.SID).StatusCallback).To(BeEmpty(), "hand-back does not leave the number calling us")
		})
	}
}
