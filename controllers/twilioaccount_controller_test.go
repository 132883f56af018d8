package controllers

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
)

func accountReady(g Gomega, ns, name string) (string, string, *twiliov1.TwilioAccount) {
	a := &twiliov1.TwilioAccount{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, a)).To(Succeed())
	s, r, msg := condition(a.Status.Conditions, twiliov1.ConditionReady)
	return string(s) + "/" + r, msg, a
}

func TestAccountReportsWhatTwilioSays(t *testing.T) {
	g := NewWithT(t)
	ns, acct, e164, _ := newScenario(t, withURL(originalURL))
	createNumber(t, ns, "n", acct, e164, nil)

	g.Eventually(func(g Gomega) {
		state, _, a := accountReady(g, ns, acct)
		g.Expect(state).To(Equal("True/" + twiliov1.ReasonVerified))
		g.Expect(a.Status.FriendlyName).To(Equal("Test account"))
		g.Expect(a.Status.Type).To(Equal("Full"))
		g.Expect(a.Status.AccountStatus).To(Equal("active"))
		g.Expect(a.Status.NumbersManaged).To(Equal(int32(1)))
		g.Expect(a.Status.NumbersInAccount).NotTo(BeNil())
		g.Expect(*a.Status.NumbersInAccount).To(BeNumerically(">=", 1))
		s, _, _ := condition(a.Status.Conditions, twiliov1.ConditionSynced)
		g.Expect(s).To(Equal(metav1.ConditionTrue))
	}, wait, tick).Should(Succeed())
}

func TestAccountSecretProblemsSayWhatToFix(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	acct := &twiliov1.TwilioAccount{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "main"},
		Spec:       twiliov1.TwilioAccountSpec{AccountSID: testAccountSID, CredentialsSecretRef: twiliov1.SecretReference{Name: "creds"}, APIURL: simURL},
	}
	g.Expect(k8s.Create(ctx, acct)).To(Succeed())
	g.Eventually(func(g Gomega) string {
		state, msg, _ := accountReady(g, ns, "main")
		g.Expect(msg).To(ContainSubstring(ns + "/creds"))
		return state
	}, wait, tick).Should(Equal("False/" + twiliov1.ReasonSecretNotFound))

	// A Secret with only half of an API key: named keys in the message.
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"},
		StringData: map[string]string{SecretKeyAuthToken: testAuthToken, SecretKeyAPIKeySID: "SK0123456789abcdef0123456789abcdef"}}
	g.Expect(k8s.Create(ctx, secret)).To(Succeed())
	g.Eventually(func(g Gomega) string {
		state, msg, _ := accountReady(g, ns, "main")
		g.Expect(msg).To(ContainSubstring(SecretKeyAPIKeySecret))
		return state
	}, wait, tick).Should(Equal("False/" + twiliov1.ReasonSecretInvalid))

	// Fixing the Secret is enough: the Secret watch brings the account back.
	base := secret.DeepCopy()
	secret.StringData = nil
	secret.Data = map[string][]byte{SecretKeyAuthToken: []byte(testAuthToken)}
	g.Expect(k8s.Patch(ctx, secret, client.MergeFrom(base))).To(Succeed())
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(secret), secret)).To(Succeed())
	delete(secret.Data, SecretKeyAPIKeySID)
	g.Expect(k8s.Update(ctx, secret)).To(Succeed())
	g.Eventually(func(g Gomega) string {
		state, _, _ := accountReady(g, ns, "main")
		return state
	}, wait, tick).Should(Equal("True/" + twiliov1.ReasonVerified))
}
