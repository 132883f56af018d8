package controllers

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	corev1 "k8s.io/api/core/v1"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
)

// Field indexes on the manager's cache.
const (
	// IndexPhoneNumber indexes TwilioPhoneNumbers by spec.phoneNumber (all namespaces).
	IndexPhoneNumber = "spec.phoneNumber"
	// IndexAccountRef indexes TwilioPhoneNumbers by spec.accountRef.name.
	IndexAccountRef = "spec.accountRef.name"
	// IndexSecretRef indexes TwilioAccounts by spec.credentialsSecretRef.name.
	IndexSecretRef = "spec.credentialsSecretRef.name"
)

// SetupIndexes registers the field indexes both reconcilers use.
func SetupIndexes(ctx context.Context, mgr ctrl.Manager) error {
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &twiliov1.TwilioPhoneNumber{}, IndexPhoneNumber, func(o client.Object) []string {
		return []string{o.(*twiliov1.TwilioPhoneNumber).Spec.PhoneNumber}
	}); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &twiliov1.TwilioPhoneNumber{}, IndexAccountRef, func(o client.Object) []string {
		return []string{o.(*twiliov1.TwilioPhoneNumber).Spec.AccountRef.Name}
	}); err != nil {
		return err
	}
	return idx.IndexField(ctx, &twiliov1.TwilioAccount{}, IndexSecretRef, func(o client.Object) []string {
		return []string{o.(*twiliov1.TwilioAccount).Spec.CredentialsSecretRef.Name}
	})
}

// SetupWithManager registers the TwilioPhoneNumber controller.
func (r *TwilioPhoneNumberReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&twiliov1.TwilioPhoneNumber{}, builder.WithPredicates(notStatusOnly())).
		// When an owner goes, the next-oldest object for the same number takes over.
		Watches(&twiliov1.TwilioPhoneNumber{}, handler.EnqueueRequestsFromMapFunc(r.sameNumber),
			deleteOnly()).
		// A number waits for its account to become Ready.
		Watches(&twiliov1.TwilioAccount{}, handler.EnqueueRequestsFromMapFunc(r.numbersOfAccount),
			readyChanged()).
		WithOptions(opts).
		Named("twiliophonenumber").
		Complete(r)
}

func (r *TwilioPhoneNumberReconciler) sameNumber(ctx context.Context, o client.Object) []reconcile.Request {
	var list twiliov1.TwilioPhoneNumberList
	if err := r.List(ctx, &list, client.MatchingFields{IndexPhoneNumber: o.(*twiliov1.TwilioPhoneNumber).Spec.PhoneNumber}); err != nil {
		return nil
	}
	return requestsFor(list.Items, o.GetUID())
}

func (r *TwilioPhoneNumberReconciler) numbersOfAccount(ctx context.Context, o client.Object) []reconcile.Request {
	var list twiliov1.TwilioPhoneNumberList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{IndexAccountRef: o.GetName()}); err != nil {
		return nil
	}
	return requestsFor(list.Items, "")
}

func requestsFor(items []twiliov1.TwilioPhoneNumber, skip types.UID) []reconcile.Request {
	reqs := make([]reconcile.Request, 0, len(items))
	for i := range items {
		if items[i].UID != skip {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&items[i])})
		}
	}
	return reqs
}

// SetupWithManager registers the TwilioAccount controller.
func (r *TwilioAccountReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&twiliov1.TwilioAccount{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.accountsOfSecret)).
		// Keep the managed-number count current.
		Watches(&twiliov1.TwilioPhoneNumber{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			n := o.(*twiliov1.TwilioPhoneNumber)
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: n.Namespace, Name: n.Spec.AccountRef.Name}}}
		}), createOrDelete()).
		WithOptions(opts).
		Named("twilioaccount").
		Complete(r)
}

func (r *TwilioAccountReconciler) accountsOfSecret(ctx context.Context, o client.Object) []reconcile.Request {
	var list twiliov1.TwilioAccountList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{IndexSecretRef: o.GetName()}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}

// notStatusOnly drops updates that changed nothing but the status, which only
// this reconciler writes: each of its own status patches would otherwise
// cost one more reconcile. A status that lost the saved routing while the
// annotation still holds a copy passes, so the copy is put back at once.
func notStatusOnly() predicate.Predicate {
	return predicate.Or[client.Object](
		predicate.GenerationChangedPredicate{},
		predicate.AnnotationChangedPredicate{},
		predicate.Funcs{
			UpdateFunc: func(e event.UpdateEvent) bool {
				oldObj, newObj := e.ObjectOld, e.ObjectNew
				if !equality.Semantic.DeepEqual(oldObj.GetFinalizers(), newObj.GetFinalizers()) ||
					!equality.Semantic.DeepEqual(oldObj.GetDeletionTimestamp(), newObj.GetDeletionTimestamp()) {
					return true
				}
				n := newObj.(*twiliov1.TwilioPhoneNumber)
				return n.Status.SavedRouting == nil && n.Annotations[twiliov1.AnnotationSavedRouting] != ""
			},
		},
	)
}

func deleteOnly() builder.Predicates {
	return builder.WithPredicates(predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectOld.GetDeletionTimestamp() == nil && e.ObjectNew.GetDeletionTimestamp() != nil
		},
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
		GenericFunc: func(event.GenericEvent) bool { return false },
	})
}

func createOrDelete() builder.Predicates {
	return builder.WithPredicates(predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return true },
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
		GenericFunc: func(event.GenericEvent) bool { return false },
	})
}

// readyChanged passes account updates that change its spec or its Ready condition.
func readyChanged() builder.Predicates {
	return builder.WithPredicates(predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			if e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() {
				return true
			}
			oldReady := meta.FindStatusCondition(e.ObjectOld.(*twiliov1.TwilioAccount).Status.Conditions, twiliov1.ConditionReady)
			newReady := meta.FindStatusCondition(e.ObjectNew.(*twiliov1.TwilioAccount).Status.Conditions, twiliov1.ConditionReady)
			if oldReady == nil || newReady == nil {
				return oldReady != newReady
			}
			return oldReady.Status != newReady.Status || oldReady.Reason != newReady.Reason
		},
	})
}

// Options configure both controllers.
type Options struct {
	// VoiceURL is where numbers are pointed: {public URL}/twilio/voice.
	VoiceURL string
	// PollInterval is how often Twilio is re-read for drift.
	PollInterval time.Duration
	// ConcurrentReconciles is how many TwilioPhoneNumbers reconcile in parallel.
	ConcurrentReconciles int
	// MaxConcurrentTwilioRequests is the per-account budget of in-flight
	// Twilio calls when the TwilioAccount sets none (default 10).
	MaxConcurrentTwilioRequests int
	// Transport carries Twilio calls; nil means http.DefaultTransport.
	Transport http.RoundTripper
	// Controller holds further controller options (rate limiter, …).
	Controller controller.Options
}

// Setup registers the field indexes and both controllers with mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) error {
	if err := SetupIndexes(ctx, mgr); err != nil {
		return fmt.Errorf("register field indexes: %w", err)
	}
	conn := &Connector{Reader: mgr.GetClient(), Transport: o.Transport, DefaultMaxConcurrent: o.MaxConcurrentTwilioRequests}
	numberOpts := o.Controller
	numberOpts.MaxConcurrentReconciles = o.ConcurrentReconciles
	if err := (&TwilioPhoneNumberReconciler{
		Client:       mgr.GetClient(),
		APIReader:    mgr.GetAPIReader(),
		Recorder:     mgr.GetEventRecorder("twilio-voice-operator"),
		Connector:    conn,
		VoiceURL:     o.VoiceURL,
		PollInterval: o.PollInterval,
	}).SetupWithManager(mgr, numberOpts); err != nil {
		return fmt.Errorf("set up TwilioPhoneNumber controller: %w", err)
	}
	acctOpts := o.Controller
	acctOpts.MaxConcurrentReconciles = 2
	if err := (&TwilioAccountReconciler{
		Client:       mgr.GetClient(),
		Recorder:     mgr.GetEventRecorder("twilio-voice-operator"),
		Connector:    conn,
		PollInterval: o.PollInterval,
	}).SetupWithManager(mgr, acctOpts); err != nil {
		return fmt.Errorf("set up TwilioAccount controller: %w", err)
	}
	return nil
}
