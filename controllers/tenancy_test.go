package controllers

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/credentials"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

// The tenancy tests run in namespaces outside the suite's SID-sharing
// pattern (t-*), as separate customer teams would.

var tenantSeq atomic.Int64

// newTenant creates a namespace for one customer team.
func newTenant(t *testing.T, team string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("tenant-%s-%d", team, tenantSeq.Add(1))}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

// newTwilioAccount adds an account to the emulator and declares it in ns
// with this token.
func declareAccount(t *testing.T, ns, name, sid, token, apiURL string) {
	t.Helper()
	ctx := context.Background()
	if err := k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-creds"},
		StringData: map[string]string{SecretKeyAuthToken: token}}); err != nil {
		t.Fatalf("create Secret: %v", err)
	}
	if err := k8s.Create(ctx, &twiliov1.TwilioAccount{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: twiliov1.TwilioAccountSpec{AccountSID: sid, APIURL: apiURL,
			CredentialsSecretRef: twiliov1.SecretReference{Name: name + "-creds"}},
	}); err != nil {
		t.Fatalf("create TwilioAccount: %v", err)
	}
}

func waitAccount(t *testing.T, ns, name, want string) string {
	t.Helper()
	var msg string
	NewWithT(t).Eventually(func(g Gomega) string {
		state, m, _ := accountReady(g, ns, name)
		msg = m
		return state
	}, wait, tick).Should(Equal(want))
	return msg
}

// published returns the accounts in the webhook server's credentials Secret.
func published(g Gomega) []credentials.Account {
	s := &corev1.Secret{}
	g.Expect(k8s.Get(context.Background(), credentialsSecret, s)).To(Succeed())
	p, err := credentials.Parse(s.Data[credentials.Key])
	g.Expect(err).NotTo(HaveOccurred())
	return p.Accounts
}

func publishedKeys(g Gomega) []string {
	var out []string
	for _, a := range published(g) {
		out = append(out, a.Namespace+"/"+a.Name)
	}
	return out
}

// Tenant A names tenant B's account SID (an identifier, not a secret): with a
// made-up token it is InvalidCredentials, and even with the real token it is
// a Conflict loser. Only B's token is published for the webhook server.
func TestTenantCannotClaimAnotherTenantsAccountSID(t *testing.T) {
	g := NewWithT(t)
	victim := emulator.AddAccount(twiliosim.Account{FriendlyName: "Tenant B"})
	nsB, nsA := newTenant(t, "b"), newTenant(t, "a")
	declareAccount(t, nsB, "b", victim.SID, victim.AuthToken, simURL)
	waitAccount(t, nsB, "b", "True/"+twiliov1.ReasonVerified)

	declareAccount(t, nsA, "leaked", victim.SID, victim.AuthToken, simURL)
	msg := waitAccount(t, nsA, "leaked", "False/"+twiliov1.ReasonConflict)
	g.Expect(msg).To(ContainSubstring(nsB + "/b"))
	// Last, so that nothing B does afterwards could have undone its effect:
	// an account with a made-up token, and a tiny budget, for B's SID.
	declareAccount(t, nsA, "forged", victim.SID, "made-up-token", simURL)
	forged := &twiliov1.TwilioAccount{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: nsA, Name: "forged"}, forged)).To(Succeed())
	forgedBase := forged.DeepCopy()
	forged.Spec.MaxConcurrentRequests = 1
	g.Expect(k8s.Patch(context.Background(), forged, client.MergeFrom(forgedBase))).To(Succeed())
	waitAccount(t, nsA, "forged", "False/"+twiliov1.ReasonInvalidCredentials)

	g.Eventually(func(g Gomega) []string { return publishedKeys(g) }, wait, tick).Should(ContainElement(nsB + "/b"))
	g.Consistently(func(g Gomega) []string { return publishedKeys(g) }, "1s", tick).ShouldNot(
		Or(ContainElement(nsA+"/forged"), ContainElement(nsA+"/leaked")))
	for _, a := range published(g) {
		if a.AccountSID == victim.SID {
			g.Expect(a.AuthToken).To(Equal(victim.AuthToken), "only the verified token is published for the SID")
		}
	}

	// B's own flow still works: a number of B's account is taken over, read
	// through B's credentials (the account list shared per SID never
	// switches to a tenant's unverified ones), and it stays in sync over
	// several polls.
	e164 := nextE164()
	emulator.AddNumber(twiliosim.Number{AccountSID: victim.SID, PhoneNumber: e164, VoiceURL: originalURL})
	createNumber(t, nsB, "line", "b", e164, nil)
	waitReady(t, nsB, "line", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	g.Consistently(func(g Gomega) string {
		_, r, _ := condition(getNumber(g, nsB, "line").Status.Conditions, twiliov1.ConditionSynced)
		return r
	}, 3*testPoll, tick).Should(Equal(twiliov1.ReasonSynced))
	// A's claim on B's number through the Conflict account goes nowhere:
	// B's object owns it, and nothing is written.
	createNumber(t, nsA, "line", "leaked", e164, nil)
	waitReady(t, nsA, "line", metav1.ConditionFalse, twiliov1.ReasonConflict)
	g.Expect(succeeded(twilioRequests(twiliosim.KindUpdateNumber, getNumber(g, nsB, "line").Status.PhoneNumberSID))).To(HaveLen(1), "only B's take-over")
}

// The hijack: B's object was deleted with Orphan (the number still routes to
// the webhook server, nothing saved), A holds an older claim on the number
// with a hand-written saved-routing annotation. When B re-creates its object,
// B owns the number: A's account does not have it, and A's annotation proves
// nothing and is never copied into status.
func TestForgedClaimNeitherWinsNorIsTrusted(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	victim := emulator.AddAccount(twiliosim.Account{FriendlyName: "Tenant B"})
	attacker := emulator.AddAccount(twiliosim.Account{FriendlyName: "Tenant A"})
	nsB, nsA := newTenant(t, "b"), newTenant(t, "a")
	declareAccount(t, nsB, "b", victim.SID, victim.AuthToken, simURL)
	declareAccount(t, nsA, "a", attacker.SID, attacker.AuthToken, simURL)
	e164 := nextE164()
	tw := emulator.AddNumber(twiliosim.Number{AccountSID: victim.SID, PhoneNumber: e164, VoiceURL: testVoiceURL})

	forged := fmt.Sprintf(`{"routing":{"voiceUrl":"https://attacker.example.com/voice"},"mac":"%s"}`, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	createNumber(t, nsA, "claim", "a", e164, func(n *twiliov1.TwilioPhoneNumber) {
		n.Annotations = map[string]string{twiliov1.AnnotationSavedRouting: forged}
		n.Finalizers = []string{Finalizer}
	})
	waitReady(t, nsA, "claim", metav1.ConditionFalse, twiliov1.ReasonNumberNotFound)
	createNumber(t, nsB, "line", "b", e164, nil)

	n := waitReady(t, nsB, "line", metav1.ConditionTrue, twiliov1.ReasonOriginalUnknown)
	g.Expect(n.Status.PhoneNumberSID).To(Equal(tw.SID))
	claim := getNumber(g, nsA, "claim")
	g.Expect(claim.Status.SavedRouting).To(BeNil(), "a hand-written annotation is never copied into status")
	g.Expect(claim.Status.PreviousVoiceURL).To(BeNil())
	g.Expect(twilioRequests(twiliosim.KindUpdateNumber, tw.SID)).To(BeEmpty(), "nobody wrote the number")

	// A deletes its claim: nothing of the victim's number is restored to the
	// attacker's "original".
	g.Expect(k8s.Delete(ctx, claim)).To(Succeed())
	waitGone(t, nsA, "claim")
	g.Expect(twilioNumber(g, tw.SID).VoiceURL).To(Equal(testVoiceURL))
}

// spec.apiURL is tenant-controlled: the manager sends credentials only to
// Twilio or to origins its --allowed-api-urls names.
func TestAPIURLOutsideTheAllowListGetsNoCredentials(t *testing.T) {
	g := NewWithT(t)
	var hits atomic.Int32
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer fake.Close()
	ns := newTenant(t, "a")
	declareAccount(t, ns, "a", testAccountSID, testAuthToken, fake.URL)
	msg := waitAccount(t, ns, "a", "False/"+twiliov1.ReasonAPIURLNotAllowed)
	g.Expect(msg).To(ContainSubstring("--allowed-api-urls"))
	g.Consistently(hits.Load, "1s", tick).Should(BeZero())
}

// A namespace editor (the role aggregated to edit) manages
// TwilioPhoneNumbers, but cannot declare TwilioAccounts or write status.
func TestEditorRoleManagesNumbersOnly(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newTenant(t, "a")
	data, err := os.ReadFile(filepath.Join("..", "config", "rbac", "editor_role.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	role := &rbacv1.ClusterRole{}
	g.Expect(yaml.Unmarshal(data, role)).To(Succeed())
	role.Name = "tenancy-test-" + ns
	g.Expect(k8s.Create(ctx, role)).To(Succeed())
	g.Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "editor"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: "editor@" + ns}},
	})).To(Succeed())
	cfg := rest.CopyConfig(restConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "editor@" + ns}
	editor, err := client.New(cfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())

	num := &twiliov1.TwilioPhoneNumber{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "n"},
		Spec:       twiliov1.TwilioPhoneNumberSpec{AccountRef: twiliov1.LocalObjectReference{Name: "a"}, PhoneNumber: nextE164()},
	}
	g.Eventually(func() error { return editor.Create(ctx, num) }, wait, tick).Should(Succeed(), "RBAC caches settle")
	err = editor.Create(ctx, &twiliov1.TwilioAccount{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "a"},
		Spec:       twiliov1.TwilioAccountSpec{AccountSID: testAccountSID, CredentialsSecretRef: twiliov1.SecretReference{Name: "x"}},
	})
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "creating a TwilioAccount: %v", err)
	num.Status.SavedRouting = &twiliov1.SavedRouting{VoiceURL: "https://attacker.example.com"}
	err = editor.Status().Update(ctx, num)
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "writing status: %v", err)
}

// spec.agent.url is tenant-written: a destination the agent egress policy
// refuses (here loopback, the webhook pod itself) is reported on the object,
// and the number is not taken over.
func TestRefusedAgentIsReportedAndNotTakenOver(t *testing.T) {
	g := NewWithT(t)
	ns, acct, e164, tw := newScenario(t, withURL(originalURL))
	createNumber(t, ns, "n", acct, e164, func(n *twiliov1.TwilioPhoneNumber) {
		n.Spec.Agent = &twiliov1.AgentSpec{URL: "ws://127.0.0.1:9090/metrics"}
	})
	n := waitReady(t, ns, "n", metav1.ConditionFalse, twiliov1.ReasonAgentNotAllowed)
	_, _, msg := condition(n.Status.Conditions, twiliov1.ConditionReady)
	g.Expect(msg).To(ContainSubstring("--allow-loopback-agents"))
	g.Expect(twilioRequests(twiliosim.KindUpdateNumber, tw.SID)).To(BeEmpty())
	g.Eventually(func(g Gomega) []string { return eventReasons(g, ns, "n") }, wait, tick).Should(ContainElement(twiliov1.ReasonAgentNotAllowed))

	// Fixed: taken over.
	base := n.DeepCopy()
	n.Spec.Agent.URL = "ws://support-agent.agents.svc:8080/media"
	g.Expect(k8s.Patch(context.Background(), n, client.MergeFrom(base))).To(Succeed())
	waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonConfigured)
}

// Enabled with no agent: every call would be hung up on, so the number is
// held (NoAgent) and not taken over until spec.agent is set.
func TestNoAgentIsNotTakenOver(t *testing.T) {
	g := NewWithT(t)
	ns, acct, e164, tw := newScenario(t, withURL(originalURL))
	createNumber(t, ns, "n", acct, e164, func(n *twiliov1.TwilioPhoneNumber) { n.Spec.Agent = nil })
	n := waitReady(t, ns, "n", metav1.ConditionFalse, twiliov1.ReasonNoAgent)
	g.Expect(twilioRequests(twiliosim.KindUpdateNumber, tw.SID)).To(BeEmpty())
	g.Expect(twilioNumber(g, tw.SID).VoiceURL).To(Equal(originalURL))

	base := n.DeepCopy()
	n.Spec.Agent = &twiliov1.AgentSpec{URL: "ws://support-agent.agents.svc:8080/media"}
	g.Expect(k8s.Patch(context.Background(), n, client.MergeFrom(base))).To(Succeed())
	waitReady(t, ns, "n", metav1.ConditionTrue, twiliov1.ReasonConfigured)
}
