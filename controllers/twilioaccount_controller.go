package controllers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/twilio"
)

// TwilioAccountReconciler verifies each account's credentials against
// Twilio and reports what it found.
type TwilioAccountReconciler struct {
	client.Client
	// APIReader reads from the API server itself: before a finalizer that
	// keeps credentials for hand-backs goes (see holdingNow).
	APIReader client.Reader
	Recorder  events.EventRecorder
	Connector *Connector
	// Shared lists namespaces whose accounts may use the same account SID.
	Shared sharedNamespaces
	// Publisher, when set, is told after each reconcile so that the webhook
	// server's credentials follow what was verified.
	Publisher *credentialsPublisher
	// PollInterval is how often credentials and counts are re-checked (with jitter).
	PollInterval time.Duration
}

// +kubebuilder:rbac:groups=twilio.loquent.io,resources=twilioaccounts,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=twilio.loquent.io,resources=twilioaccounts/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=twilio.loquent.io,resources=twilioaccounts/status,verbs=get;update;patch

// Reconcile implements reconcile.Reconciler.
func (r *TwilioAccountReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	acct := &twiliov1.TwilioAccount{}
	if err := r.Get(ctx, req.NamespacedName, acct); err != nil {
		if apierrors.IsNotFound(err) {
			r.Connector.Forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	base := acct.DeepCopy()
	res, err := r.reconcileAccount(ctx, acct, accountVerified(base))
	if r.Publisher != nil {
		defer r.Publisher.Trigger()
	}
	acct.Status.ObservedGeneration = acct.Generation
	var waiting *metav1.Condition
	if c := meta.FindStatusCondition(acct.Status.Conditions, twiliov1.ConditionNumbersHandedBack); c != nil && c.Status == metav1.ConditionFalse {
		waiting = c
	}
	setKstatus(&acct.Status.Conditions, acct.Generation, func(ready *metav1.Condition) bool { return stalledAccountReasons[ready.Reason] }, waiting)
	if !equality.Semantic.DeepEqual(base.Status, acct.Status) {
		if perr := r.Status().Patch(ctx, acct, client.MergeFrom(base)); perr != nil && !apierrors.IsNotFound(perr) {
			return ctrl.Result{}, fmt.Errorf("patch status of %s: %w", req.NamespacedName, perr)
		}
	}
	return res, err
}

func (r *TwilioAccountReconciler) reconcileAccount(ctx context.Context, acct *twiliov1.TwilioAccount, incumbent bool) (ctrl.Result, error) {
	var managed twiliov1.TwilioPhoneNumberList
	if err := r.List(ctx, &managed, client.InNamespace(acct.Namespace), client.MatchingFields{IndexAccountRef: acct.Name}); err != nil {
		return ctrl.Result{}, fmt.Errorf("list TwilioPhoneNumbers of %s: %w", acct.Name, err)
	}
	acct.Status.NumbersManaged = int32(len(managed.Items))
	acct.Status.NumbersPurchased = 0
	for i := range managed.Items {
		if managed.Items[i].Status.Purchase != nil {
			acct.Status.NumbersPurchased++
		}
	}
	if done, err := r.reconcileHandBack(ctx, acct, managed.Items); err != nil || done {
		return ctrl.Result{}, err
	}

	conn, err := r.Connector.Connect(ctx, acct)
	if se, ok := asConfigError(err); ok {
		r.setReady(acct, metav1.ConditionFalse, se.Reason, se.Message)
		return ctrl.Result{}, nil // the Secret watch brings us back
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if conn.VerifiedWithin(r.PollInterval) && acct.Status.ObservedGeneration == acct.Generation &&
		meta.IsStatusConditionTrue(acct.Status.Conditions, twiliov1.ConditionReady) {
		// Verified this interval with these credentials (a new Secret or spec
		// makes a new connection): only refresh the counts, from the shared inventory.
		count, err := conn.Inventory.Count(ctx, r.PollInterval)
		if err == nil {
			c32 := int32(count)
			acct.Status.NumbersInAccount = &c32
		}
		return ctrl.Result{RequeueAfter: r.jittered()}, nil
	}
	info, err := conn.Client.VerifyAccount(ctx)
	var owner *twiliov1.TwilioAccount
	if err == nil {
		if owner, err = r.olderSIDOwner(ctx, acct, incumbent); err != nil {
			return ctrl.Result{}, err
		}
	}
	if err == nil && owner == nil {
		// Only the SID's owner vouches for it: its connection lists the
		// account's shared inventory and its token is published.
		conn.MarkVerified()
		var count int
		count, err = conn.Inventory.Count(ctx, r.PollInterval)
		c32 := int32(count)
		acct.Status.NumbersInAccount = &c32
	}
	status, reason, msg := syncedCondition(err)
	setCondition(&acct.Status.Conditions, acct.Generation, twiliov1.ConditionSynced, status, reason, msg)
	switch {
	case err == nil && owner != nil:
		r.setReady(acct, metav1.ConditionFalse, twiliov1.ReasonConflict,
			fmt.Sprintf("TwilioAccount %s/%s already uses account SID %s; webhooks for it are checked with that account's credentials only. Use that TwilioAccount, or ask the cluster operator to let these namespaces share the SID (--account-sid-sharing-namespaces)",
				owner.Namespace, owner.Name, acct.Spec.AccountSID))
	case err == nil:
		acct.Status.FriendlyName, acct.Status.Type, acct.Status.AccountStatus = info.FriendlyName, info.Type, info.Status
		r.setReady(acct, metav1.ConditionTrue, twiliov1.ReasonVerified,
			fmt.Sprintf("Twilio accepted the credentials for %s (status %s)", acct.Spec.AccountSID, info.Status))
	case twilio.IsAuth(err):
		r.setReady(acct, metav1.ConditionFalse, twiliov1.ReasonInvalidCredentials,
			fmt.Sprintf("Twilio refused the credentials in Secret %q for %s: check %s (or %s and %s) and spec.accountSid: %v",
				acct.Spec.CredentialsSecretRef.Name, acct.Spec.AccountSID, SecretKeyAuthToken, SecretKeyAPIKeySID, SecretKeyAPIKeySecret, err))
		return ctrl.Result{}, nil
	case twilio.ClassOf(err) == twilio.ClassTerminal:
		r.setReady(acct, metav1.ConditionFalse, twiliov1.ReasonTwilioRejected, fmt.Sprintf("Twilio refused to read account %s: %v", acct.Spec.AccountSID, err))
		return ctrl.Result{}, nil
	default:
		return ctrl.Result{}, err // keep Ready as it was; retry with backoff
	}
	return ctrl.Result{RequeueAfter: r.jittered()}, nil
}

// olderSIDOwner returns the verified TwilioAccount that uses acct's account
// SID ahead of it (outside the namespaces allowed to share), or nil. Only one
// of them vouches for the SID's webhooks: a tenant cannot claim another's
// account by naming its SID, even with valid credentials.
func (r *TwilioAccountReconciler) olderSIDOwner(ctx context.Context, acct *twiliov1.TwilioAccount, incumbent bool) (*twiliov1.TwilioAccount, error) {
	var same twiliov1.TwilioAccountList
	if err := r.List(ctx, &same, client.MatchingFields{IndexAccountSID: acct.Spec.AccountSID}); err != nil {
		return nil, fmt.Errorf("list TwilioAccounts for %s: %w", acct.Spec.AccountSID, err)
	}
	var rivals []*twiliov1.TwilioAccount
	for i := range same.Items {
		if a := &same.Items[i]; a.DeletionTimestamp.IsZero() && accountVerified(a) {
			rivals = append(rivals, a)
		}
	}
	return olderSIDOwner(acct, incumbent, rivals, r.Shared), nil
}

func (r *TwilioAccountReconciler) jittered() time.Duration {
	return r.PollInterval + rand.N(r.PollInterval/5+1)
}

func (r *TwilioAccountReconciler) setReady(acct *twiliov1.TwilioAccount, status metav1.ConditionStatus, reason, msg string) {
	if setCondition(&acct.Status.Conditions, acct.Generation, twiliov1.ConditionReady, status, reason, msg) && r.Recorder != nil {
		typ := corev1.EventTypeNormal
		if status != metav1.ConditionTrue {
			typ = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(acct, nil, typ, reason, "Verify", "%s", msg)
	}
}
