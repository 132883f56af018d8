package controllers

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
)

// A TwilioAccount and its credentials Secret outlive the numbers that need
// them for a hand-back, whatever order they are deleted in (kubectl delete -f
// of a bundle deletes the Secret first):
//   - the account carries AccountFinalizer and is not removed while any of
//     its TwilioPhoneNumbers holds a saved original (status or guard);
//   - the Secret carries CredentialsFinalizer while an account that uses it
//     may still need it. A terminating Secret stays readable, so the account
//     keeps verifying and its numbers keep restoring.
// While either is being deleted the account takes nothing new over
// (handingBack), and NumbersHandedBack says what it waits for.

// holdsOriginal reports whether a number still needs its account for a
// hand-back: it holds a saved original, or the guard finalizer that comes
// with one.
func holdsOriginal(n *twiliov1.TwilioPhoneNumber) bool {
	return n.HoldsOriginal() || controllerutil.ContainsFinalizer(n, Finalizer)
}

// handingBack says why an account takes nothing new over, or "".
func handingBack(acct *twiliov1.TwilioAccount) string {
	if !acct.DeletionTimestamp.IsZero() {
		return fmt.Sprintf("TwilioAccount %q is being deleted: it hands its numbers back and takes nothing new over", acct.Name)
	}
	if c := meta.FindStatusCondition(acct.Status.Conditions, twiliov1.ConditionNumbersHandedBack); c != nil && c.Status == metav1.ConditionFalse {
		return fmt.Sprintf("TwilioAccount %q takes nothing new over while its credentials Secret is being deleted", acct.Name)
	}
	return ""
}

// holding lists the numbers of acct that hold saved originals, by name.
func holding(numbers []twiliov1.TwilioPhoneNumber) []string {
	var names []string
	for i := range numbers {
		if holdsOriginal(&numbers[i]) {
			names = append(names, numbers[i].Name)
		}
	}
	sort.Strings(names)
	return names
}

// reconcileHandBack keeps the account's and its Secret's finalizers and the
// NumbersHandedBack condition. done is true when a deleting account has
// nothing left to hand back and its finalizer was removed.
func (r *TwilioAccountReconciler) reconcileHandBack(ctx context.Context, acct *twiliov1.TwilioAccount, numbers []twiliov1.TwilioPhoneNumber) (done bool, err error) {
	deleting := !acct.DeletionTimestamp.IsZero()
	if !deleting && !controllerutil.ContainsFinalizer(acct, twiliov1.AccountFinalizer) {
		if err := r.patchAccountFinalizer(ctx, acct, true); err != nil {
			return false, err
		}
	}
	secret, err := r.credentialsSecret(ctx, acct)
	if err != nil {
		return false, err
	}
	secretTerminating := secret != nil && !secret.DeletionTimestamp.IsZero()
	held := holding(numbers)
	if deleting || secretTerminating {
		// Finalizers may go on this answer: ask the API server, not the
		// cache, which may not show a number's fresh save yet. Both
		// finalizers are decided on this one answer.
		if held, err = r.holdingNow(ctx, acct); err != nil {
			return false, err
		}
	}
	if err := r.keepCredentials(ctx, acct, secret, len(held) > 0); err != nil {
		return false, err
	}
	switch {
	case (deleting || secretTerminating) && len(held) > 0:
		msg := fmt.Sprintf("%d TwilioPhoneNumber(s) still hold saved originals and are handed back first: %s. Delete them or set voiceRouting: Disabled (deletionPolicy: Orphan deletes one without restoring)",
			len(held), listNames(held, 10))
		if secretTerminating {
			msg = fmt.Sprintf("Credentials Secret %q is being deleted; it is kept until then. ", acct.Spec.CredentialsSecretRef.Name) + msg
		}
		if setCondition(&acct.Status.Conditions, acct.Generation, twiliov1.ConditionNumbersHandedBack, metav1.ConditionFalse, twiliov1.ReasonNumbersStillRouted, msg) && r.Recorder != nil {
			r.Recorder.Eventf(acct, nil, corev1.EventTypeNormal, twiliov1.ReasonNumbersStillRouted, "Delete", "%s", msg)
		}
	case deleting || secretTerminating:
		setCondition(&acct.Status.Conditions, acct.Generation, twiliov1.ConditionNumbersHandedBack, metav1.ConditionTrue, twiliov1.ReasonNumbersHandedBack,
			"No TwilioPhoneNumber of this account holds a saved original")
	default:
		meta.RemoveStatusCondition(&acct.Status.Conditions, twiliov1.ConditionNumbersHandedBack)
	}
	if !deleting || len(held) > 0 {
		return false, nil
	}
	// keepCredentials above already let the Secret go, unless another account uses it.
	if controllerutil.ContainsFinalizer(acct, twiliov1.AccountFinalizer) {
		if err := r.patchAccountFinalizer(ctx, acct, false); err != nil {
			return false, err
		}
	}
	return true, nil
}

func listNames(names []string, max int) string {
	if len(names) <= max {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:max], ", ") + fmt.Sprintf(" and %d more", len(names)-max)
}

func (r *TwilioAccountReconciler) patchAccountFinalizer(ctx context.Context, acct *twiliov1.TwilioAccount, add bool) error {
	before := acct.DeepCopy()
	if add {
		controllerutil.AddFinalizer(acct, twiliov1.AccountFinalizer)
	} else {
		controllerutil.RemoveFinalizer(acct, twiliov1.AccountFinalizer)
	}
	status := acct.Status
	if err := r.Patch(ctx, acct, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("update finalizers of TwilioAccount %s/%s: %w", acct.Namespace, acct.Name, err))
	}
	acct.Status = status // the patch answer carries the stored status; keep the one being computed
	return nil
}

// credentialsSecret reads the metadata of the account's Secret; nil when it
// does not exist.
func (r *TwilioAccountReconciler) credentialsSecret(ctx context.Context, acct *twiliov1.TwilioAccount) (*metav1.PartialObjectMetadata, error) {
	secret := &metav1.PartialObjectMetadata{}
	secret.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	key := client.ObjectKey{Namespace: acct.Namespace, Name: acct.Spec.CredentialsSecretRef.Name}
	if err := r.Get(ctx, key, secret); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	return secret, nil
}

// keepCredentials puts CredentialsFinalizer on the account's Secret while an
// account that uses it needs it (see needsCredentials), and removes it when
// none does. holds says whether acct's own numbers hold saved originals.
func (r *TwilioAccountReconciler) keepCredentials(ctx context.Context, acct *twiliov1.TwilioAccount, secret *metav1.PartialObjectMetadata, holds bool) error {
	if secret == nil {
		return nil
	}
	terminating := !secret.DeletionTimestamp.IsZero()
	key := client.ObjectKeyFromObject(secret)
	var users twiliov1.TwilioAccountList
	if err := r.List(ctx, &users, client.InNamespace(acct.Namespace), client.MatchingFields{IndexSecretRef: key.Name}); err != nil {
		return fmt.Errorf("list TwilioAccounts using Secret %s: %w", key.Name, err)
	}
	need := (acct.DeletionTimestamp.IsZero() && !terminating) || holds
	for i := range users.Items {
		if need {
			break
		}
		if u := &users.Items[i]; u.UID != acct.UID {
			var err error
			if need, err = r.needsCredentials(ctx, u, terminating); err != nil {
				return err
			}
		}
	}
	if need == controllerutil.ContainsFinalizer(secret, twiliov1.CredentialsFinalizer) {
		return nil
	}
	before := secret.DeepCopy()
	if need {
		controllerutil.AddFinalizer(secret, twiliov1.CredentialsFinalizer)
	} else {
		controllerutil.RemoveFinalizer(secret, twiliov1.CredentialsFinalizer)
	}
	if err := r.Patch(ctx, secret, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("update finalizers of Secret %s: %w", key, err))
	}
	return nil
}

// needsCredentials reports whether an account needs its Secret kept: while it
// is in use (neither it nor the Secret is being deleted), and for as long as
// any of its numbers holds a saved original.
func (r *TwilioAccountReconciler) needsCredentials(ctx context.Context, acct *twiliov1.TwilioAccount, secretTerminating bool) (bool, error) {
	if acct.DeletionTimestamp.IsZero() && !secretTerminating {
		return true, nil
	}
	if !controllerutil.ContainsFinalizer(acct, twiliov1.AccountFinalizer) && !acct.DeletionTimestamp.IsZero() {
		return false, nil
	}
	held, err := r.holdingNow(ctx, acct)
	return len(held) > 0, err
}

// holdingNow lists, from the API server itself, the numbers of acct that
// hold saved originals. It decides whether a finalizer that keeps their
// credentials may go, so it never trusts the cache, which can lag a number's
// save by seconds.
func (r *TwilioAccountReconciler) holdingNow(ctx context.Context, acct *twiliov1.TwilioAccount) ([]string, error) {
	var all twiliov1.TwilioPhoneNumberList
	if err := r.APIReader.List(ctx, &all, client.InNamespace(acct.Namespace)); err != nil {
		return nil, fmt.Errorf("list TwilioPhoneNumbers of %s: %w", acct.Name, err)
	}
	mine := slices.DeleteFunc(all.Items, func(n twiliov1.TwilioPhoneNumber) bool { return n.Spec.AccountRef.Name != acct.Name })
	return holding(mine), nil
}
