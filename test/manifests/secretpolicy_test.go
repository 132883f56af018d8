package manifests

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestManagerChangesOnlyItsFinalizerOnSecrets installs each render's manager
// RBAC and Secret-write policy for real and acts as the manager's
// ServiceAccount: its finalizer on a tenant's Secret is accepted, any other
// change (the data, a label, another finalizer) is refused by the API server.
func TestManagerChangesOnlyItsFinalizerOnSecrets(t *testing.T) {
	for i, r := range renders(t) {
		t.Run(r.name, func(t *testing.T) {
			ctx := t.Context()
			g := NewWithT(t)
			sa, saNS := serviceAccountOf(t, r.objs, "manager")
			policies := filter(r.objs, "ValidatingAdmissionPolicy", "manager")
			g.Expect(policies).To(HaveLen(1), "the Secret-write policy is installed by default")
			for _, kind := range []string{"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ClusterRole", "ClusterRoleBinding"} {
				for _, o := range filter(r.objs, kind, "") {
					g.Expect(apply(ctx, o)).To(Succeed(), "%s %s", kind, o.GetName())
				}
			}
			tenant := fmt.Sprintf("tenant-policy-%d", i)
			g.Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenant}}))).To(Succeed())
			secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "acme-twilio"}, StringData: map[string]string{"authToken": "t0ken"}}
			g.Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, secret))).To(Succeed())

			cfg := rest.CopyConfig(restCfg)
			cfg.Impersonate = rest.ImpersonationConfig{
				UserName: "system:serviceaccount:" + saNS + ":" + sa,
				Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + saNS, "system:authenticated"},
			}
			mgr, err := client.New(cfg, client.Options{})
			g.Expect(err).NotTo(HaveOccurred())
			patch := func(mutate func(*unstructured.Unstructured)) error {
				u := &unstructured.Unstructured{}
				u.SetAPIVersion("v1")
				u.SetKind("Secret")
				if err := mgr.Get(ctx, client.ObjectKeyFromObject(secret), u); err != nil {
					return err
				}
				before := u.DeepCopy()
				mutate(u)
				return mgr.Patch(ctx, u, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
			}
			// The policy is loaded asynchronously: wait until it refuses
			// (each attempt changes the data anew, so none is a no-op).
			attempt := 0
			g.Eventually(func() error {
				attempt++
				return patch(func(u *unstructured.Unstructured) {
					_ = unstructured.SetNestedField(u.Object, base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "stolen-%d", attempt)), "data", "authToken")
				})
			}, 30*time.Second, 200*time.Millisecond).Should(MatchError(ContainSubstring("may change only its finalizer")))
			for name, mutate := range map[string]func(*unstructured.Unstructured){
				"a label":           func(u *unstructured.Unstructured) { u.SetLabels(map[string]string{"x": "y"}) },
				"another finalizer": func(u *unstructured.Unstructured) { u.SetFinalizers(append(u.GetFinalizers(), "example.com/other")) },
			} {
				err := patch(mutate)
				g.Expect(apierrors.IsForbidden(err) || apierrors.IsInvalid(err)).To(BeTrue(), "%s: %v", name, err)
			}
			g.Expect(patch(func(u *unstructured.Unstructured) {
				u.SetFinalizers(append(u.GetFinalizers(), "twilio.loquent.io/credentials-in-use"))
			})).To(Succeed(), "its own finalizer is allowed")
			g.Expect(patch(func(u *unstructured.Unstructured) { u.SetFinalizers(nil) })).To(Succeed(), "and removing it")
			deleteAll(t, r.objs, "ValidatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy")
		})
	}
}

func deleteAll(t *testing.T, objs []*unstructured.Unstructured, kinds ...string) {
	t.Helper()
	for _, kind := range kinds {
		for _, o := range filter(objs, kind, "") {
			if err := k8s.Delete(context.Background(), o.DeepCopy()); client.IgnoreNotFound(err) != nil {
				t.Errorf("delete %s %s: %v", kind, o.GetName(), err)
			}
		}
	}
}
