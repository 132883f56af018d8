package webhookserver

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
)

// watchedSecrets lists the Secrets the routing watches.
func watchedSecrets(r *Routing) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for k := range r.watches {
		out = append(out, k.String())
	}
	return out
}

// TestRoutingWatchesOnlyReferencedSecrets: the server follows exactly the
// Secrets its TwilioAccounts reference, keeps only their auth tokens, and
// follows a changed reference or a deleted account live.
func TestRoutingWatchesOnlyReferencedSecrets(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	unrelated := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "unrelated"}, Data: map[string][]byte{authTokenKey: []byte("nope")}}
	g.Expect(k8s.Create(t.Context(), unrelated)).To(Succeed())
	h := startServer(t, ns)

	g.Expect(watchedSecrets(h.routing)).To(ConsistOf(ns + "/main-creds"))
	h.routing.mu.Lock()
	w := h.routing.watches[types.NamespacedName{Namespace: ns, Name: "main-creds"}]
	h.routing.mu.Unlock()
	items := w.informer.GetStore().List()
	g.Expect(items).To(HaveLen(1))
	g.Expect(items[0].(*corev1.Secret).Data).To(HaveKey(authTokenKey))
	g.Expect(items[0].(*corev1.Secret).Data).To(HaveLen(1), "other credentials are not kept in memory")
	g.Expect(h.routing.Validators(acct.sid)).To(HaveLen(1))

	// Point the account at another Secret.
	rotated := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "main-creds-2"}, Data: map[string][]byte{authTokenKey: []byte("secondToken")}}
	g.Expect(k8s.Create(t.Context(), rotated)).To(Succeed())
	var a twiliov1.TwilioAccount
	g.Expect(k8s.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "main"}, &a)).To(Succeed())
	a.Spec.CredentialsSecretRef.Name = "main-creds-2"
	g.Expect(k8s.Update(t.Context(), &a)).To(Succeed())
	g.Eventually(func() []string { return watchedSecrets(h.routing) }).Should(ConsistOf(ns + "/main-creds-2"))
	g.Eventually(func() bool {
		v := h.routing.Validators(acct.sid)
		return len(v) == 1 && v[0].Validator.Validate(testPublicURL, map[string]string{}, sign("secondToken", testPublicURL, nil))
	}).Should(BeTrue())

	// The account goes: no Secret is watched and its requests are refused.
	g.Expect(k8s.Delete(t.Context(), &a)).To(Succeed())
	g.Eventually(func() []string { return watchedSecrets(h.routing) }).Should(BeEmpty())
	g.Eventually(func() []AccountValidator { return h.routing.Validators(acct.sid) }).Should(BeEmpty())
}

func TestChangesRoutingIgnoresStatusWrites(t *testing.T) {
	num := &twiliov1.TwilioPhoneNumber{}
	num.Generation = 1
	statusOnly := num.DeepCopy()
	statusOnly.Status.PhoneNumberSID = "PN1"
	specChange := num.DeepCopy()
	specChange.Generation = 2
	tookOver := num.DeepCopy()
	tookOver.Status.SavedRouting = &twiliov1.SavedRouting{VoiceURL: "https://old"}
	acct := &twiliov1.TwilioAccount{}
	acctStatus := acct.DeepCopy()
	acctStatus.Status.NumbersManaged = 3
	tests := []struct {
		name     string
		old, new any
		want     bool
	}{
		{"number status only", num, statusOnly, false},
		{"number spec", num, specChange, true},
		{"number took over (ownership order)", num, tookOver, true},
		{"account status only", acct, acctStatus, false},
	}
	for _, tt := range tests {
		if got := changesRouting(tt.old, tt.new); got != tt.want {
			t.Errorf("%s: changesRouting = %v, want %v", tt.name, got, tt.want)
		}
	}
}
