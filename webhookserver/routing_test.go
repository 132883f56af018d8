package webhookserver

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/credentials"
)

// TestRoutingReadsOnlyThePublishedCredentials: the server reads one Secret,
// the manager's published credentials, and keeps only that key in memory; a
// TwilioAccount the manager has not published (unverified, a Conflict loser,
// a made-up token) verifies nothing, whatever its own Secret holds.
func TestRoutingReadsOnlyThePublishedCredentials(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	editPublished(t, ns, func(p *credentials.Published) {
		p.Accounts[0].AuthToken = acct.token
	})
	sec := secretOf(t, ns, credentialsSecretName)
	sec.Data["other"] = []byte("not for the routing")
	g.Expect(k8s.Update(t.Context(), sec)).To(Succeed())
	h := startServer(t, ns)

	items := h.routing.creds.informer.GetStore().List()
	g.Expect(items).To(HaveLen(1))
	g.Expect(items[0].(*corev1.Secret).Name).To(Equal(credentialsSecretName))
	g.Expect(items[0].(*corev1.Secret).Data).To(HaveLen(1), "nothing but the published accounts is kept")
	g.Expect(h.routing.Validators(acct.sid)).To(HaveLen(1))

	// Tenant A declares an account for the same SID with its own Secret:
	// never published, never trusted.
	ghost := &twiliov1.TwilioAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ghost"},
		Spec: twiliov1.TwilioAccountSpec{AccountSID: acct.sid, CredentialsSecretRef: twiliov1.SecretReference{Name: "main-creds"}}}
	g.Expect(k8s.Create(t.Context(), ghost)).To(Succeed())
	createNumber(t, ns, "ghost-line", "+14155550999", "ghost", "ws://agent.example.com/media")
	g.Consistently(func() bool { _, ok := h.routing.Lookup("+14155550999"); return ok }, "500ms").Should(BeFalse())

	// Unpublished (the manager no longer vouches for it): refused.
	editPublished(t, ns, func(p *credentials.Published) { p.Accounts = nil })
	g.Eventually(func() []AccountValidator { return h.routing.Validators(acct.sid) }).Should(BeEmpty())
}

// A claim is routed only once the operator found the number in the claim's
// account (status.phoneNumberSid) and did not mark it Conflict; ranking reads
// status only, never annotations.
func TestRoutingFollowsTheOperatorsClaims(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createAccount(t, ns, "main")
	h := startServer(t, ns)
	const number = "+14155550888"

	owner := createNumber(t, ns, "owner", number, "main", "ws://owner.example.com/media")
	g.Eventually(func() string { rt, _ := h.routing.Lookup(number); return rt.Object.Name }).Should(Equal("owner"))

	// An older-looking claim with a hand-written annotation, which the
	// operator marked Conflict: never served.
	forged := &twiliov1.TwilioPhoneNumber{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "aaa-forged",
		Annotations: map[string]string{twiliov1.AnnotationSavedRouting: `{"routing":{"voiceUrl":"x"},"mac":"AAAA"}`}},
		Spec: twiliov1.TwilioPhoneNumberSpec{AccountRef: twiliov1.LocalObjectReference{Name: "main"}, PhoneNumber: number,
			Agent: &twiliov1.AgentSpec{URL: "ws://attacker.example.com/media"}}}
	g.Expect(k8s.Create(t.Context(), forged)).To(Succeed())
	forged.Status.PhoneNumberSID = "PN0"
	forged.Status.Conditions = []metav1.Condition{{Type: twiliov1.ConditionReady, Status: metav1.ConditionFalse,
		Reason: twiliov1.ReasonConflict, Message: "m", LastTransitionTime: metav1.Now()}}
	g.Expect(k8s.Status().Update(t.Context(), forged)).To(Succeed())
	g.Consistently(func() string { rt, _ := h.routing.Lookup(number); return rt.Object.Name }, "500ms").Should(Equal("owner"))

	// The owner goes: the Conflict loser is still not served until the
	// operator says otherwise.
	g.Expect(k8s.Delete(t.Context(), owner)).To(Succeed())
	g.Eventually(func() bool { _, ok := h.routing.Lookup(number); return ok }).Should(BeFalse())
}

func TestChangesRoutingIgnoresStatusWrites(t *testing.T) {
	num := &twiliov1.TwilioPhoneNumber{}
	num.Generation = 1
	statusOnly := num.DeepCopy()
	statusOnly.Status.FriendlyName = "Support line"
	specChange := num.DeepCopy()
	specChange.Generation = 2
	tookOver := num.DeepCopy()
	tookOver.Status.SavedRouting = &twiliov1.SavedRouting{VoiceURL: "https://old"}
	withSaved := func(saved twiliov1.SavedRouting) *twiliov1.TwilioPhoneNumber {
		n := tookOver.DeepCopy()
		n.Status.SavedRouting = &saved
		return n
	}
	tests := []struct {
		name     string
		old, new any
		want     bool
	}{
		{"number status only", num, statusOnly, false},
		{"number spec", num, specChange, true},
		{"number took over (ownership order)", num, tookOver, true},
		{"number found in its account (claim established)", num, statusOnlyClaim(num), true},
		{"saved voice URL (an Original fallback's target)", tookOver, withSaved(twiliov1.SavedRouting{VoiceURL: "https://older"}), true},
		{"saved voice method", tookOver, withSaved(twiliov1.SavedRouting{VoiceURL: "https://old", VoiceMethod: "GET"}), true},
		{"saved routing, other fields", tookOver, withSaved(twiliov1.SavedRouting{VoiceURL: "https://old", StatusCallback: "https://cb"}), false},
	}
	for _, tt := range tests {
		if got := changesRouting(tt.old, tt.new); got != tt.want {
			t.Errorf("%s: changesRouting = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func statusOnlyClaim(n *twiliov1.TwilioPhoneNumber) *twiliov1.TwilioPhoneNumber {
	c := n.DeepCopy()
	c.Status.PhoneNumberSID = "PN1"
	c.Status.FriendlyName = "x"
	return c
}

// knownAccounts counts the accounts whose tokens the routing holds.
func knownAccounts(r *Routing) int { return len(r.table.Load().byAccount) }
