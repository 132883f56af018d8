package controllers

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/time/rate"
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
	"github.com/loquent/twilio-voice-operator/internal/egress"
)

// Field indexes on the manager's cache.
const (
	// IndexPhoneNumber indexes TwilioPhoneNumbers by spec.phoneNumber (all namespaces).
	IndexPhoneNumber = "spec.phoneNumber"
	// IndexAccountRef indexes TwilioPhoneNumbers by spec.accountRef.name.
	IndexAccountRef = "spec.accountRef.name"
	// IndexSecretRef indexes TwilioAccounts by spec.credentialsSecretRef.name.
	IndexSecretRef = "spec.credentialsSecretRef.name"
	// IndexAccountSID indexes TwilioAccounts by spec.accountSid (all namespaces).
	IndexAccountSID = "spec.accountSid"
	// IndexAgentHeadersSecret indexes TwilioPhoneNumbers by
	// spec.agent.headersSecretRef.name.
	IndexAgentHeadersSecret = "spec.agent.headersSecretRef.name" //nolint:gosec // a field path, not a credential
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
	if err := idx.IndexField(ctx, &twiliov1.TwilioPhoneNumber{}, IndexAgentHeadersSecret, func(o client.Object) []string {
		if a := o.(*twiliov1.TwilioPhoneNumber).Spec.Agent; a != nil && a.HeadersSecretRef != nil {
			return []string{a.HeadersSecretRef.Name}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &twiliov1.TwilioAccount{}, IndexAccountSID, func(o client.Object) []string {
		return []string{o.(*twiliov1.TwilioAccount).Spec.AccountSID}
	}); err != nil {
		return err
	}
	return idx.IndexField(ctx, &twiliov1.TwilioAccount{}, IndexSecretRef, func(o client.Object) []string {
		return []string{o.(*twiliov1.TwilioAccount).Spec.CredentialsSecretRef.Name}
	})
}

// SetupWithManager registers the TwilioPhoneNumber controller.
func (r *TwilioPhoneNumberReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	if r.gates == nil {
		r.gates = &takeoverGates{pacers: map[types.NamespacedName]*rate.Limiter{}, flips: map[types.UID][]flip{}, pendingSince: map[types.UID]time.Time{}}
	}
	if r.PreflightClient == nil {
		r.PreflightClient = defaultPreflightClient()
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&twiliov1.TwilioPhoneNumber{}, builder.WithPredicates(notStatusOnly())).
		// When an owner goes, the next-oldest object for the same number takes
		// over; when a claim appears, the others re-check who owns it, so a
		// loser is told at once.
		Watches(&twiliov1.TwilioPhoneNumber{}, handler.EnqueueRequestsFromMapFunc(r.sameNumber),
			createOrDeleting()).
		// A number waits for its account to become Ready.
		Watches(&twiliov1.TwilioAccount{}, handler.EnqueueRequestsFromMapFunc(r.numbersOfAccount),
			readyChanged()).
		// A number waits for its agent headers Secret (and its label).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.numbersOfHeadersSecret)).
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

func (r *TwilioPhoneNumberReconciler) numbersOfHeadersSecret(ctx context.Context, o client.Object) []reconcile.Request {
	var list twiliov1.TwilioPhoneNumberList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{IndexAgentHeadersSecret: o.GetName()}); err != nil {
		return nil
	}
	if len(list.Items) > 0 && r.Publisher != nil {
		r.Publisher.Trigger() // its headers may have changed
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
		// Metadata only: the manager caches no Secret's data (Connector
		// reads a referenced Secret's data when its resourceVersion changes).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.accountsOfSecret)).
		// When an account using the same SID goes or changes its Ready, the
		// others re-check who owns the SID.
		Watches(&twiliov1.TwilioAccount{}, handler.EnqueueRequestsFromMapFunc(r.sameSID), readyChanged()).
		// Keep the managed-number count current, and know when numbers stop
		// holding originals (a deleting account waits for that).
		Watches(&twiliov1.TwilioPhoneNumber{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			n := o.(*twiliov1.TwilioPhoneNumber)
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: n.Namespace, Name: n.Spec.AccountRef.Name}}}
		}), createDeleteOrHolding()).
		WithOptions(opts).
		Named("twilioaccount").
		Complete(r)
}

func (r *TwilioAccountReconciler) sameSID(ctx context.Context, o client.Object) []reconcile.Request {
	var list twiliov1.TwilioAccountList
	if err := r.List(ctx, &list, client.MatchingFields{IndexAccountSID: o.(*twiliov1.TwilioAccount).Spec.AccountSID}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		if list.Items[i].UID != o.GetUID() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return reqs
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

func createOrDeleting() builder.Predicates {
	return builder.WithPredicates(predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return true },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectOld.GetDeletionTimestamp() == nil && e.ObjectNew.GetDeletionTimestamp() != nil
		},
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
		GenericFunc: func(event.GenericEvent) bool { return false },
	})
}

// createDeleteOrHolding passes numbers created or deleted, and updates that
// change whether a number holds a saved original.
func createDeleteOrHolding() builder.Predicates {
	return builder.WithPredicates(predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return true },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := e.ObjectOld.(*twiliov1.TwilioPhoneNumber), e.ObjectNew.(*twiliov1.TwilioPhoneNumber)
			return holdsOriginal(o) != holdsOriginal(n) || (o.Status.Purchase == nil) != (n.Status.Purchase == nil)
		},
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
	// AllowedAPIURLs are the spec.apiURL origins accepted besides Twilio's
	// own API hosts (an emulator, an egress proxy).
	AllowedAPIURLs []string
	// SharedSIDNamespaces may hold TwilioAccounts with the same account SID
	// (names or path.Match patterns).
	SharedSIDNamespaces []string
	// WebhookCredentialsSecret, when set, is the Secret the manager keeps
	// the verified accounts' auth tokens in for the webhook server.
	WebhookCredentialsSecret types.NamespacedName
	// EarlierVoiceURLs are voice URLs of earlier public URLs of this
	// operator: never saved as originals, re-pointed without drift warnings.
	EarlierVoiceURLs []string
	// AgentPolicy, when set, is the webhook server's agent egress policy: a
	// number whose spec.agent.url it refuses is not taken over.
	AgentPolicy *egress.Policy
	// GuardKey signs the saved-routing annotation, so that one a user wrote
	// is never taken for the operator's own (at least 32 bytes). Empty means
	// a random key for this process only (tests, benchmarks); production
	// passes a persistent one (cmd/manager keeps it in a Secret).
	GuardKey []byte
	// Preflight proves the public voice path (a signed request to VoiceURL
	// that must come back streaming to the number's agent) before numbers of
	// an account are pointed at it. Off in tests without a webhook server.
	Preflight bool
	// PreflightClient sends preflights; nil means the default client.
	PreflightClient *http.Client
	// TakeoverBurst and TakeoverPerMinute pace take-overs per account for
	// TwilioAccounts without spec.takeover: Burst at once, then PerMinute;
	// 0 means unpaced.
	TakeoverBurst, TakeoverPerMinute int
}

// Setup registers the field indexes and both controllers with mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) error {
	if err := SetupIndexes(ctx, mgr); err != nil {
		return fmt.Errorf("register field indexes: %w", err)
	}
	switch {
	case len(o.GuardKey) == 0:
		// Tests and benchmarks: a key for this process only. Annotations
		// signed by an earlier process are then rebuilt from status.
		o.GuardKey = make([]byte, 32)
		_, _ = rand.Read(o.GuardKey)
	case len(o.GuardKey) < 32:
		return fmt.Errorf("the guard key must have at least 32 bytes, got %d", len(o.GuardKey))
	}
	conn := &Connector{Reader: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Transport: o.Transport,
		DefaultMaxConcurrent: o.MaxConcurrentTwilioRequests, AllowedAPIURLs: o.AllowedAPIURLs}
	shared := sharedNamespaces(o.SharedSIDNamespaces)
	var publisher *credentialsPublisher
	if o.WebhookCredentialsSecret.Name != "" {
		publisher = &credentialsPublisher{client: mgr.GetClient(), apiReader: mgr.GetAPIReader(), connector: conn,
			secret: o.WebhookCredentialsSecret, shared: shared, trigger: make(chan struct{}, 1), resync: time.Minute}
		if err := mgr.Add(publisher); err != nil {
			return fmt.Errorf("add credentials publisher: %w", err)
		}
	}
	if err := mgr.Add(&numberStates{reader: mgr.GetClient(), interval: 30 * time.Second}); err != nil {
		return fmt.Errorf("add the twilio_numbers metric: %w", err)
	}
	numberOpts := o.Controller
	numberOpts.MaxConcurrentReconciles = o.ConcurrentReconciles
	if err := (&TwilioPhoneNumberReconciler{
		Client:            mgr.GetClient(),
		APIReader:         mgr.GetAPIReader(),
		Recorder:          mgr.GetEventRecorder("twilio-voice-operator"),
		Connector:         conn,
		VoiceURL:          o.VoiceURL,
		PollInterval:      o.PollInterval,
		GuardKey:          o.GuardKey,
		AgentPolicy:       o.AgentPolicy,
		EarlierVoiceURLs:  o.EarlierVoiceURLs,
		Preflight:         o.Preflight,
		PreflightClient:   o.PreflightClient,
		TakeoverBurst:     o.TakeoverBurst,
		TakeoverPerMinute: o.TakeoverPerMinute,
		Publisher:         publisher,
	}).SetupWithManager(mgr, numberOpts); err != nil {
		return fmt.Errorf("set up TwilioPhoneNumber controller: %w", err)
	}
	acctOpts := o.Controller
	acctOpts.MaxConcurrentReconciles = 2
	if err := (&TwilioAccountReconciler{
		Client:       mgr.GetClient(),
		APIReader:    mgr.GetAPIReader(),
		Recorder:     mgr.GetEventRecorder("twilio-voice-operator"),
		Connector:    conn,
		PollInterval: o.PollInterval,
		Shared:       shared,
		Publisher:    publisher,
	}).SetupWithManager(mgr, acctOpts); err != nil {
		return fmt.Errorf("set up TwilioAccount controller: %w", err)
	}
	return nil
}
