package controllers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/egress"
	"github.com/loquent/twilio-voice-operator/internal/twilio"
)

// Finalizer holds a TwilioPhoneNumber that saved a number's original routing
// until that routing was handed back (or deletionPolicy is Orphan). It is
// added in the same write that saves the original and removed with it.
const Finalizer = "twilio.loquent.io/restore-voice-routing"

// TwilioPhoneNumberReconciler points each number's Voice URL at the webhook
// server, saving the original routing first, and restores it exactly when
// routing is Disabled or the object is deleted.
type TwilioPhoneNumberReconciler struct {
	client.Client
	// APIReader reads from the API server itself, bypassing the informer
	// cache, right before any write that depends on saved state.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Connector *Connector
	// VoiceURL is the URL numbers are pointed at: {public URL}/twilio/voice.
	VoiceURL string
	// PollInterval is how often Twilio is re-read for drift (with jitter).
	PollInterval time.Duration
	// GuardKey signs the saved-routing annotation (see savedAnnotation).
	GuardKey []byte
	// EarlierVoiceURLs are voice URLs this operator used before (earlier
	// public URLs): like status.configuredVoiceURL, never saved as an
	// original, and re-pointed without a drift warning.
	EarlierVoiceURLs []string
	// AgentPolicy, when set, is the agent egress policy the webhook server
	// applies at dial time; a number whose agent it refuses is not taken over.
	AgentPolicy *egress.Policy
	// Preflight makes every write that points a number here wait for the
	// account's preflight of the public voice path (see preflightGate).
	Preflight bool
	// PreflightClient sends preflights; nil means a client with
	// preflight.DefaultTimeout that follows no redirects.
	PreflightClient *http.Client
	// TakeoverBurst and TakeoverPerMinute pace take-overs per account when the
	// TwilioAccount sets no spec.takeover; 0 means unpaced.
	TakeoverBurst, TakeoverPerMinute int

	// Publisher, when set, is asked to publish again when a number names
	// agent headers (see agentheaders.go).
	Publisher *credentialsPublisher

	rejected      rejections
	gates         *takeoverGates
	purchaseLocks accountLocks
	refusedSales  sync.Map // saleKey → why Twilio refused the sale: see saleRefused
}

// numberScope carries what one reconcile learned, shared by its steps.
type numberScope struct {
	obj  *twiliov1.TwilioPhoneNumber
	base *twiliov1.TwilioPhoneNumber // last persisted state, for merge patches
	conn *Connection
	acct *twiliov1.TwilioAccount
	live twilio.Number
	// fresh is true once obj's metadata and saved state were read from the
	// API server itself in this reconcile (readFresh).
	fresh bool
	// prevReady is the Ready condition as the reconcile found it.
	prevReady *metav1.Condition
	// accountStalled is set when the account the number waits for needs a
	// human (its own Stalled): the number is then Stalled too.
	accountStalled bool
	// sms is what this reconcile does with the number's SMS routing, and
	// messagingMarked says the Messaging condition was set (see messaging.go).
	sms             smsPlan
	messagingMarked bool
}

// +kubebuilder:rbac:groups=twilio.loquent.io,resources=twiliophonenumbers,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=twilio.loquent.io,resources=twiliophonenumbers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=twilio.loquent.io,resources=twiliophonenumbers/finalizers,verbs=update
// +kubebuilder:rbac:groups=twilio.loquent.io,resources=twilioaccounts,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile implements reconcile.Reconciler.
func (r *TwilioPhoneNumberReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	obj := &twiliov1.TwilioPhoneNumber{}
	if err := r.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			r.rejected.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !obj.DeletionTimestamp.IsZero() {
		defer r.gates.forgetObject(obj.UID)
	}
	s := &numberScope{obj: obj, base: obj.DeepCopy()}
	if c := meta.FindStatusCondition(obj.Status.Conditions, twiliov1.ConditionReady); c != nil {
		s.prevReady = c.DeepCopy()
	}
	defer func() {
		if isStale(retErr) {
			// Worked from an old copy: start again from a newer one, soon.
			log.FromContext(ctx).V(1).Info("Cached copy is behind the API server; requeueing", "reason", retErr.Error())
			res, retErr = ctrl.Result{RequeueAfter: staleRetry()}, nil
			return
		}
		if err := r.patchStatus(ctx, s); err != nil {
			res, retErr = ctrl.Result{}, kerrors.NewAggregate([]error{retErr, err})
		}
	}()

	if err := r.repairGuard(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	if !obj.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, s)
	}
	return r.reconcileNormal(ctx, s)
}

// staleRetry is how long to wait before reconciling again after working from
// a stale copy: long enough for a lagging cache to catch up, jittered.
func staleRetry() time.Duration {
	return 100*time.Millisecond + rand.N(200*time.Millisecond)
}

func (r *TwilioPhoneNumberReconciler) reconcileNormal(ctx context.Context, s *numberScope) (ctrl.Result, error) {
	if owner, err := r.olderOwner(ctx, s.obj); err != nil || owner != nil {
		if owner != nil {
			r.markConflict(s.obj, owner)
		}
		return ctrl.Result{}, err
	}
	if ok, err := r.connect(ctx, s); !ok || err != nil {
		return ctrl.Result{}, err
	}
	found, err := r.observe(ctx, s)
	if err != nil {
		return r.twilioResult(s.obj, err)
	}
	if !found && s.obj.Spec.Acquire == twiliov1.AcquirePurchase {
		return r.ensurePurchased(ctx, s)
	}
	if !found {
		r.markNotFound(s)
		return r.twilioResult(s.obj, nil)
	}
	if done, res, err := r.settleFound(ctx, s); done || err != nil {
		return res, err
	}
	if !s.obj.RoutingEnabled() {
		return r.ensureRestored(ctx, s)
	}
	if res, err, stop := r.checkAnswerable(ctx, s); stop {
		return res, err
	}
	return r.ensureRouted(ctx, s)
}

// checkAnswerable stops a take-over (stop) whose calls could not reach an
// agent, or whose account is going: it says why on the object.
func (r *TwilioPhoneNumberReconciler) checkAnswerable(ctx context.Context, s *numberScope) (res ctrl.Result, err error, stop bool) {
	if why := handingBack(s.acct); why != "" {
		res, err = r.markNotAnswerable(s, twiliov1.ReasonAccountNotReady, why)
		return res, err, true
	}
	if s.obj.Spec.Agent == nil {
		res, err = r.markNotAnswerable(s, twiliov1.ReasonNoAgent,
			"spec.agent is not set, so the number is not taken over: every call would hear a goodbye and be hung up on. Add spec.agent.url, or set voiceRouting: Disabled")
		return res, err, true
	}
	if refused := r.agentRefused(s.obj); refused != nil {
		res, err = r.markNotAnswerable(s, twiliov1.ReasonAgentNotAllowed,
			fmt.Sprintf("spec.agent.url is refused by the agent egress policy, so the number is not taken over: %v", refused))
		return res, err, true
	}
	if problem, err := r.agentHeadersProblem(ctx, s.obj); err != nil || problem != "" {
		if err != nil {
			return ctrl.Result{}, err, true
		}
		res, err = r.markNotAnswerable(s, twiliov1.ReasonAgentNotAllowed, problem)
		return res, err, true
	}
	if s.obj.Spec.Agent.HeadersSecretRef != nil && r.Publisher != nil && !r.prevCurrent(s, twiliov1.ReasonConfigured, twiliov1.ReasonOriginalUnknown) {
		r.Publisher.Trigger() // publish this Secret's headers for the webhook server
	}
	return ctrl.Result{}, nil, false
}

func (r *TwilioPhoneNumberReconciler) reconcileDelete(ctx context.Context, s *numberScope) (ctrl.Result, error) {
	obj := s.obj
	if !controllerutil.ContainsFinalizer(obj, Finalizer) {
		return ctrl.Result{}, nil
	}
	// Whether there is an original to restore is decided on the server's copy.
	saved, err := r.confirmGuard(ctx, s)
	if err != nil {
		return ctrl.Result{}, err
	}
	switch rec := purchaseOf(r.GuardKey, obj); {
	case rec != nil && obj.Spec.DeletionPolicy != twiliov1.DeletionPolicyOrphan &&
		(!rec.bought() || obj.Spec.DeletionPolicy == twiliov1.DeletionPolicyRelease):
		// A pending purchase is settled, and a Release applied; a bought
		// number with Restore is restored like any other.
		if done, res, err := r.deletePurchased(ctx, s, rec); done || err != nil {
			return res, err
		}
		saved = guardOf(r.GuardKey, obj) // settling a pending purchase may have saved its original
	case obj.Spec.DeletionPolicy == twiliov1.DeletionPolicyRelease:
		r.event(obj, corev1.EventTypeWarning, "ReleaseRefused", "Delete",
			"deletionPolicy is Release, but this operator did not buy %s, so it never releases it; its original routing is restored instead", obj.Spec.PhoneNumber)
	}
	if obj.Spec.DeletionPolicy == twiliov1.DeletionPolicyOrphan || saved == nil {
		if saved != nil {
			r.event(obj, corev1.EventTypeNormal, "Orphaned", "Delete", "Left the number routed to the webhook server (deletionPolicy Orphan); the original was %s", describeSaved(*saved))
		}
		return ctrl.Result{}, r.removeFinalizer(ctx, s)
	}
	ok, err := r.connect(ctx, s)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !ok {
		return r.restoreBlocked(s, "Cannot restore the original routing ("+describeSaved(*saved)+")")
	}
	setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionFalse, twiliov1.ReasonProgressing,
		"Being deleted: restoring the original routing ("+describeSaved(*saved)+") before the object goes")
	found, err := r.observe(ctx, s)
	if err != nil {
		return r.twilioResult(obj, err)
	}
	if !found {
		// The number left the account: there is nothing left to restore it on.
		r.event(obj, corev1.EventTypeWarning, "NothingToRestore", "Delete",
			"The number is no longer in the Twilio account; its saved original routing (%s) was not restored", describeSaved(*saved))
		return ctrl.Result{}, r.removeFinalizer(ctx, s)
	}
	if res, err := r.ensureRestored(ctx, s); err != nil || guardOf(r.GuardKey, obj) != nil || obj.Status.SavedRouting != nil {
		return res, err
	}
	return ctrl.Result{}, r.removeFinalizer(ctx, s)
}

// restoreBlocked reports a deletion waiting for its account.
func (r *TwilioPhoneNumberReconciler) restoreBlocked(s *numberScope, what string) (ctrl.Result, error) {
	obj := s.obj
	setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionFalse, twiliov1.ReasonRestoreBlocked,
		fmt.Sprintf("%s while TwilioAccount %q is not Ready; fix the account, or set deletionPolicy: Orphan to delete without restoring",
			what, obj.Spec.AccountRef.Name))
	return ctrl.Result{}, nil // the account watch requeues this object
}

// deletePurchased handles the purchase of an object being deleted: a
// pending one is settled first; with deletionPolicy Release a bought number
// is released when the rails allow it (done), else the deletion goes on as
// Restore.
func (r *TwilioPhoneNumberReconciler) deletePurchased(ctx context.Context, s *numberScope, rec *purchaseRecord) (done bool, res ctrl.Result, err error) {
	obj := s.obj
	ok, err := r.connect(ctx, s)
	if err != nil {
		return true, ctrl.Result{}, err
	}
	if !ok {
		res, err = r.restoreBlocked(s, "Cannot settle the purchase of the number")
		return true, res, err
	}
	found := false
	if !rec.bought() {
		if found, err = r.settleDeleting(ctx, s); err != nil {
			res, err = r.twilioResult(obj, err)
			return true, res, err
		}
	} else if found, err = r.observe(ctx, s); err != nil {
		res, err = r.twilioResult(obj, err)
		return true, res, err
	}
	if !found || obj.Spec.DeletionPolicy != twiliov1.DeletionPolicyRelease {
		return false, ctrl.Result{}, nil
	}
	released, err := r.releaseOnDelete(ctx, s)
	if err != nil {
		res, err = r.twilioResult(obj, err)
		return true, res, err
	}
	if !released {
		return false, ctrl.Result{}, nil
	}
	return true, ctrl.Result{}, r.removeFinalizer(ctx, s)
}

// olderOwner returns the TwilioPhoneNumber that owns the same number ahead of
// obj, or nil when obj owns it (order: twiliov1.OwnsBefore). A rival's claim
// counts only on facts the operator established, never on anything a user can
// write: see claimCounts.
func (r *TwilioPhoneNumberReconciler) olderOwner(ctx context.Context, obj *twiliov1.TwilioPhoneNumber) (*twiliov1.TwilioPhoneNumber, error) {
	var list twiliov1.TwilioPhoneNumberList
	if err := r.List(ctx, &list, client.MatchingFields{IndexPhoneNumber: obj.Spec.PhoneNumber}); err != nil {
		return nil, fmt.Errorf("list TwilioPhoneNumbers for %s: %w", obj.Spec.PhoneNumber, err)
	}
	for i := range list.Items {
		other := &list.Items[i]
		if other.UID == obj.UID || !twiliov1.OwnsBefore(other, obj) {
			continue
		}
		counts, err := r.claimCounts(ctx, other)
		if err != nil {
			return nil, err
		}
		if counts {
			return other, nil
		}
	}
	return nil, nil
}

// claimCounts reports whether another object's claim on its number counts:
// its TwilioAccount is verified by the operator (and owns its account SID),
// and the number is in that Twilio account.
func (r *TwilioPhoneNumberReconciler) claimCounts(ctx context.Context, other *twiliov1.TwilioPhoneNumber) (bool, error) {
	var acct twiliov1.TwilioAccount
	if err := r.Get(ctx, client.ObjectKey{Namespace: other.Namespace, Name: other.Spec.AccountRef.Name}, &acct); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	if !accountVerified(&acct) {
		return false, nil
	}
	if inv := r.Connector.InventoryOf(acct.Spec.AccountSID); inv != nil {
		if _, found, err := inv.Lookup(ctx, other.Spec.PhoneNumber, r.PollInterval); err == nil {
			return found, nil
		}
	}
	// Not connected to that account yet: the operator's own record that it
	// found the number there.
	return other.Status.PhoneNumberSID != "", nil
}

func (r *TwilioPhoneNumberReconciler) markConflict(obj, owner *twiliov1.TwilioPhoneNumber) {
	msg := fmt.Sprintf("TwilioPhoneNumber %s/%s already manages %s; this object makes no Twilio changes until that one is deleted",
		owner.Namespace, owner.Name, obj.Spec.PhoneNumber)
	if setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionFalse, twiliov1.ReasonConflict, msg) {
		r.event(obj, corev1.EventTypeWarning, twiliov1.ReasonConflict, "Reconcile", "%s", msg)
	}
}

// connect finds the account and its Twilio connection. ok is false (with
// Ready=False AccountNotReady) when the account is missing or not Ready. A
// connect that succeeds clears an AccountNotReady left from before.
func (r *TwilioPhoneNumberReconciler) connect(ctx context.Context, s *numberScope) (ok bool, err error) {
	obj := s.obj
	var acct twiliov1.TwilioAccount
	notReady := func(why string) (bool, error) {
		setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionFalse, twiliov1.ReasonAccountNotReady,
			fmt.Sprintf("TwilioAccount %q %s", obj.Spec.AccountRef.Name, why))
		return false, nil
	}
	if err := r.Get(ctx, client.ObjectKey{Namespace: obj.Namespace, Name: obj.Spec.AccountRef.Name}, &acct); err != nil {
		if apierrors.IsNotFound(err) {
			return notReady("does not exist in this namespace")
		}
		return false, fmt.Errorf("get TwilioAccount: %w", err)
	}
	if !isConditionReason(acct.Status.Conditions, twiliov1.ConditionReady, metav1.ConditionTrue, twiliov1.ReasonVerified) {
		s.accountStalled = accountStalled(&acct)
		if c := meta.FindStatusCondition(acct.Status.Conditions, twiliov1.ConditionReady); c != nil {
			return notReady(fmt.Sprintf("is not Ready (%s): %s", c.Reason, c.Message))
		}
		return notReady("is not verified yet")
	}
	conn, err := r.Connector.Connect(ctx, &acct)
	if err != nil {
		if se, isSecret := asConfigError(err); isSecret {
			return notReady(se.Message)
		}
		return false, err
	}
	// The account is Ready=True Verified (checked above): its connection may
	// list the SID's shared inventory (after a restart, before the account
	// reconciler has verified it again).
	conn.Trust()
	s.conn, s.acct = conn, &acct
	if isConditionReason(obj.Status.Conditions, twiliov1.ConditionReady, metav1.ConditionFalse, twiliov1.ReasonAccountNotReady) {
		setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionUnknown, twiliov1.ReasonProgressing,
			fmt.Sprintf("TwilioAccount %q is Ready; reading the number from Twilio", obj.Spec.AccountRef.Name))
	}
	return true, nil
}

// observe reads the number from the account inventory (one shared list call
// per poll interval). A miss is confirmed once with a targeted lookup; while
// the object already reports NumberNotFound for this generation, the
// inventory's own list answers. An object that was a Conflict loser until now
// reads the number afresh: the owner it replaces has just changed it.
func (r *TwilioPhoneNumberReconciler) observe(ctx context.Context, s *numberScope) (found bool, err error) {
	var n twilio.Number
	if r.prevReason(s) == twiliov1.ReasonConflict {
		n, err = s.conn.Client.FindNumber(ctx, s.obj.Spec.PhoneNumber)
		found = err == nil
		if found {
			s.conn.Inventory.Record(n)
		}
	} else {
		n, found, err = s.conn.Inventory.Lookup(ctx, s.obj.Spec.PhoneNumber, r.PollInterval)
		if err == nil && !found && !r.prevCurrent(s, twiliov1.ReasonNumberNotFound) {
			n, err = s.conn.Client.FindNumber(ctx, s.obj.Spec.PhoneNumber)
			found = err == nil
		}
	}
	if twilio.IsNotFound(err) {
		err = nil
	}
	if found {
		r.recordLive(s, n)
	}
	return found, err
}

// prevReason is the reason of the Ready condition the reconcile started from.
func (r *TwilioPhoneNumberReconciler) prevReason(s *numberScope) string {
	if s.prevReady == nil {
		return ""
	}
	return s.prevReady.Reason
}

// prevCurrent reports whether the reconcile started from a Ready condition
// with this reason that describes the object's current generation.
func (r *TwilioPhoneNumberReconciler) prevCurrent(s *numberScope, reasons ...string) bool {
	if s.prevReady == nil || s.prevReady.ObservedGeneration != s.obj.Generation {
		return false
	}
	for _, reason := range reasons {
		if s.prevReady.Reason == reason {
			return true
		}
	}
	return false
}

func (r *TwilioPhoneNumberReconciler) markNotFound(s *numberScope) {
	markNotFoundWhy(s, "add it to the account, set spec.acquire: Purchase to buy it (if the TwilioAccount allows purchases), or fix spec.phoneNumber")
}

func (r *TwilioPhoneNumberReconciler) recordLive(s *numberScope, n twilio.Number) {
	s.live = n
	s.obj.Status.PhoneNumberSID = n.SID
	s.obj.Status.FriendlyName = n.FriendlyName
	s.obj.Status.VoiceURL = n.Routing.VoiceURL
}

// refresh re-reads the number right before a write, so what is saved and
// compared is current.
func (r *TwilioPhoneNumberReconciler) refresh(ctx context.Context, s *numberScope) error {
	n, err := s.conn.Client.FetchNumber(ctx, s.live.SID)
	if err != nil {
		return err
	}
	s.conn.Inventory.Record(n)
	r.recordLive(s, n)
	return nil
}

// ensureRouted makes the number route to the webhook server. The Twilio
// write is sent only once the API server itself holds the guard of the
// original it overwrites: read uncached right before the write, and saved
// there first (annotation and finalizer, then status) when it holds none.
func (r *TwilioPhoneNumberReconciler) ensureRouted(ctx context.Context, s *numberScope) (ctrl.Result, error) {
	obj := s.obj
	if err := r.planSMS(ctx, s); err != nil {
		return r.twilioResult(obj, err)
	}
	if r.isRouted(s, s.live.Routing, obj.Status.SavedRouting) {
		return r.routed(ctx, s)
	}
	if trunk := s.live.Routing.TrunkSID; trunk != "" && !obj.Spec.AllowTrunkDetach {
		return r.trunkAttached(s, trunk) // known from the list: no fetch per poll
	}
	if err := r.refresh(ctx, s); err != nil {
		return r.twilioResult(obj, err)
	}
	live := s.live.Routing
	if r.isRouted(s, live, obj.Status.SavedRouting) {
		return r.routed(ctx, s)
	}
	if live.TrunkSID != "" && !obj.Spec.AllowTrunkDetach {
		return r.trunkAttached(s, live.TrunkSID)
	}
	saved, err := r.confirmGuard(ctx, s)
	if err != nil {
		return ctrl.Result{}, err
	}
	if r.isRouted(s, live, saved) {
		return r.routed(ctx, s)
	}
	// The number still points at a URL this operator set before the public
	// URL changed: re-pointing it is the operator's own change, not drift.
	earlier := r.earlierVoiceURLs(obj)
	ownEarlier := live.VoiceURL != "" && live.VoiceURL != r.VoiceURL && slices.Contains(earlier, live.VoiceURL) &&
		live.TrunkSID == "" && live.VoiceApplicationSID == ""
	// Drift: the number routed to us for this very generation and now does
	// not. A spec change in between (a Disabled→Enabled flip, whose restore
	// was ours) is not drift.
	drift := !ownEarlier && r.prevCurrent(s, twiliov1.ReasonConfigured, twiliov1.ReasonOriginalUnknown) && s.prevReady.Status == metav1.ConditionTrue &&
		!routesTo(live, r.VoiceURL) // only the fallback URL differs: a spec change, not drift
	if msg, yes := r.contested(s, live, earlier, drift); yes {
		return r.markContested(s, msg)
	}
	if ok, res := r.preflightGate(ctx, s); !ok {
		return res, nil
	}
	if ok, res := r.paceGate(s); !ok {
		return res, nil
	}
	setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionFalse, twiliov1.ReasonProgressing,
		"Pointing the number at "+r.VoiceURL+" (live: "+describe(live)+")")
	// At the operator's own earlier URL with nothing saved, no original is
	// known (OriginalUnknown): nothing is saved, and the write overwrites
	// only the operator's own routing.
	savedNow := saved == nil && !ownEarlier
	if ownEarlier {
		r.event(obj, corev1.EventTypeNormal, "PublicURLChanged", "Configure",
			"The number points at %s, which this operator set before its public URL changed; re-pointing it at %s", live.VoiceURL, r.VoiceURL)
	}
	if savedNow {
		orig := originalFrom(live, r.VoiceURL, earlier...)
		if r.ownCallbackURL(orig.StatusCallback, StatusPath, earlier) {
			orig.StatusCallback, orig.StatusCallbackMethod = "", "" // ours, never an original
		}
		if s.sms.want {
			r.captureSMS(&orig, live, earlier)
		}
		if drift {
			r.event(obj, corev1.EventTypeWarning, "DriftDetected", "Reconcile",
				"Voice routing was changed outside the operator (now %s); no original routing was known, so this routing is saved as the original and restored on hand-back; re-applying", describe(live))
		}
		if err := r.saveOriginal(ctx, s, orig); err != nil {
			return ctrl.Result{}, err
		}
		saved = &orig
	} else if drift {
		r.event(obj, corev1.EventTypeWarning, "DriftDetected", "Reconcile",
			"Voice routing was changed outside the operator (now %s); re-applying. The saved original is unchanged", describe(live))
	}
	if saved != nil && s.sms.want && !saved.SMSSaved {
		if saved, err = r.saveSMSPart(ctx, s, *saved, live, earlier); err != nil {
			return ctrl.Result{}, err
		}
	}
	fallbackURL, fallbackMethod, _ := desiredFallback(obj, saved)
	update := takeoverUpdate(live, r.VoiceURL, fallbackURL, fallbackMethod)
	r.statusCallbackUpdate(obj, live, saved, earlier, &update)
	r.smsUpdate(s.sms, live, saved, earlier, &update)
	if err := r.updateRouting(ctx, s, false, update); err != nil {
		return r.twilioResult(obj, err)
	}
	if saved != nil && saved.SMSSaved && !s.sms.want {
		if err := r.dropSMSPart(ctx, s, *saved); err != nil {
			return ctrl.Result{}, err
		}
		rest := withoutSMS(*saved)
		saved = &rest
	}
	obj.Status.ConfiguredVoiceURL = r.VoiceURL
	switch {
	case saved == nil:
		r.event(obj, corev1.EventTypeNormal, twiliov1.ReasonConfigured, "Configure", "Voice URL set to %s; no original routing is known (it already routed to this operator)", r.VoiceURL)
	case savedNow:
		r.event(obj, corev1.EventTypeNormal, twiliov1.ReasonConfigured, "Configure", "Voice URL set to %s; original routing saved (%s)",
			r.VoiceURL, describeSaved(*saved))
	default:
		r.event(obj, corev1.EventTypeNormal, twiliov1.ReasonConfigured, "Configure", "Voice URL set to %s; the saved original routing (%s) is kept",
			r.VoiceURL, describeSaved(*saved))
	}
	return r.routed(ctx, s)
}

// agentRefused applies the webhook server's agent egress policy to
// spec.agent.url (its literal form; the webhook server checks the resolved
// address again at dial time).
func (r *TwilioPhoneNumberReconciler) agentRefused(obj *twiliov1.TwilioPhoneNumber) error {
	if r.AgentPolicy == nil || obj.Spec.Agent == nil {
		return nil
	}
	return r.AgentPolicy.CheckURL(obj.Spec.Agent.URL)
}

// markNotAnswerable reports a number whose calls could not reach an agent
// (none set, or a refused destination) and takes nothing over: it never
// points a number at a dead end. A number already routed here is left as it
// is (its calls get the hang-up answer until the spec is fixed).
func (r *TwilioPhoneNumberReconciler) markNotAnswerable(s *numberScope, reason, msg string) (ctrl.Result, error) {
	obj := s.obj
	if setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionFalse, reason, msg) {
		r.event(obj, corev1.EventTypeWarning, reason, "Reconcile", "%s", msg)
	}
	return r.twilioResult(obj, nil)
}

func (r *TwilioPhoneNumberReconciler) trunkAttached(s *numberScope, trunk string) (ctrl.Result, error) {
	obj := s.obj
	setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionFalse, twiliov1.ReasonTrunkAttached,
		fmt.Sprintf("The number is on SIP trunk %s, which takes precedence over its Voice URL; set spec.allowTrunkDetach: true to detach it (the trunk is saved and put back on restore)", trunk))
	return r.twilioResult(obj, nil)
}

// updateRouting sends one routing write for the live number in s, unless
// Twilio already refused the very same write (see rejections): then it
// returns that refusal again without calling Twilio.
func (r *TwilioPhoneNumberReconciler) updateRouting(ctx context.Context, s *numberScope, restore bool, u twilio.RoutingUpdate) error {
	key := client.ObjectKeyFromObject(s.obj)
	attempt := writeAttempt{uid: s.obj.UID, generation: s.obj.Generation, conn: s.conn, live: s.live.Routing, restore: restore}
	if err := r.rejected.refused(key, attempt); err != nil {
		return err
	}
	n, err := s.conn.Client.UpdateRouting(ctx, s.live.SID, u)
	r.rejected.record(key, attempt, err)
	if err != nil {
		return err
	}
	s.conn.Inventory.Record(n)
	r.recordLive(s, n)
	return nil
}

// routed reports a number that routes to the webhook server. Before it says
// that no original was saved (OriginalUnknown), it asks the API server: the
// cache may not show this operator's own save yet.
func (r *TwilioPhoneNumberReconciler) routed(ctx context.Context, s *numberScope) (ctrl.Result, error) {
	obj := s.obj
	if obj.Status.SavedRouting == nil && !s.fresh && !r.prevCurrent(s, twiliov1.ReasonOriginalUnknown) {
		if _, err := r.confirmGuard(ctx, s); err != nil {
			return ctrl.Result{}, err
		}
	}
	obj.Status.ConfiguredVoiceURL = r.VoiceURL
	r.markMessaging(s)
	if obj.Status.SavedRouting == nil {
		msg := "The number already routed to this operator's webhook and no original routing was saved, so none was recorded; restore will leave the number unchanged"
		if setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionTrue, twiliov1.ReasonOriginalUnknown, msg) {
			r.event(obj, corev1.EventTypeWarning, twiliov1.ReasonOriginalUnknown, "Reconcile", "%s", msg)
		}
	} else {
		setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionTrue, twiliov1.ReasonConfigured,
			"Inbound calls route to "+r.VoiceURL)
	}
	return r.twilioResult(obj, nil)
}

// handingBackMessage starts the Ready message of a hand-back under way.
const handingBackMessage = "Handing the number back: "

// ensureRestored writes back the original that the API server's guard holds
// and, only after Twilio accepted it, forgets it (status, then annotation and
// finalizer).
func (r *TwilioPhoneNumberReconciler) ensureRestored(ctx context.Context, s *numberScope) (ctrl.Result, error) {
	obj := s.obj
	var saved *twiliov1.SavedRouting
	if obj.Status.SavedRouting != nil || obj.Annotations[twiliov1.AnnotationSavedRouting] != "" || !r.prevCurrent(s, twiliov1.ReasonRoutingDisabled) {
		var err error
		if saved, err = r.confirmGuard(ctx, s); err != nil {
			return ctrl.Result{}, err
		}
	}
	if saved == nil {
		obj.Status.ConfiguredVoiceURL = "" // nothing of ours is configured
		switch {
		case r.prevCurrent(s, twiliov1.ReasonRoutingDisabled):
			// Keep the message of a hand-back this generation already reported.
		case r.prevCurrent(s, twiliov1.ReasonProgressing) && strings.HasPrefix(s.prevReady.Message, handingBackMessage):
			// The hand-back finished (its saved copy is forgotten) after the
			// copy this reconcile read was cached.
			setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled,
				"Voice routing is Disabled; the original routing is back in place ("+describe(s.live.Routing)+")")
		default:
			setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled,
				"Voice routing is Disabled; the operator holds no saved routing for this number and leaves it as it is ("+describe(s.live.Routing)+")")
		}
		return r.twilioResult(obj, nil)
	}
	if err := r.refresh(ctx, s); err != nil {
		return r.twilioResult(obj, err)
	}
	// Another install took the number over from the same original (it never
	// takes over from a marked URL) and restores it when it hands the number
	// back: writing the original here would cut it off.
	leftTo := ""
	if live := s.live.Routing; live.TrunkSID == "" && live.VoiceApplicationSID == "" &&
		otherInstallURL(live.VoiceURL, r.VoiceURL, r.earlierVoiceURLs(obj)) {
		leftTo = live.VoiceURL
	} else if !matchesSaved(s.live.Routing, *saved) {
		if err := r.updateRouting(ctx, s, true, restoreUpdate(*saved, s.live.Routing)); err != nil {
			return r.twilioResult(obj, err)
		}
	}
	// Until the saved state is forgotten the hand-back is still under way;
	// RoutingDisabled is written after, with nothing saved left.
	setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionFalse, twiliov1.ReasonProgressing,
		handingBackMessage+"the original routing is in place in Twilio ("+describeSaved(*saved)+"); forgetting the saved copy")
	if err := r.forgetOriginal(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	obj.Status.ConfiguredVoiceURL = ""
	if leftTo != "" {
		setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled,
			"Voice routing is Disabled; another install of the operator routes the number ("+leftTo+") and restores its original when it hands it back")
		r.event(obj, corev1.EventTypeWarning, "LeftToOtherInstall", "Restore",
			"The number is routed by another install of the operator (%s), which took it over from the same original (%s) and restores it; it was left routed there",
			leftTo, describeSaved(*saved))
		return r.twilioResult(obj, nil)
	}
	setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled,
		"Voice routing is Disabled; the original routing is back in place ("+describeSaved(*saved)+")")
	r.event(obj, corev1.EventTypeNormal, "Restored", "Restore", "Original voice routing restored (%s)", describeSaved(*saved))
	return r.twilioResult(obj, nil)
}

// patchStatus sends the status changes since the last persisted state, if
// any, stamped with the generation they describe. It never changes the saved
// routing: only the guarded writes in guard.go do.
func (r *TwilioPhoneNumberReconciler) patchStatus(ctx context.Context, s *numberScope) error {
	s.obj.Status.ObservedGeneration = s.obj.Generation
	s.obj.Status.SavedRouting, s.obj.Status.PreviousVoiceURL = s.base.Status.SavedRouting, s.base.Status.PreviousVoiceURL
	s.obj.Status.Original = originalSummary(s.obj.Status.SavedRouting)
	s.obj.Status.Purchase = purchaseStatus(purchaseOf(r.GuardKey, s.obj))
	r.settleMessaging(s)
	setKstatus(&s.obj.Status.Conditions, s.obj.Generation, func(ready *metav1.Condition) bool {
		waitsForAccount := ready.Reason == twiliov1.ReasonAccountNotReady || ready.Reason == twiliov1.ReasonRestoreBlocked
		return stalledNumberReasons[ready.Reason] || (waitsForAccount && s.accountStalled)
	}, nil)
	if equality.Semantic.DeepEqual(s.base.Status, s.obj.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, s.obj, client.MergeFrom(s.base)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // deleted once its finalizer went: nothing left to record
		}
		return fmt.Errorf("patch status of %s/%s: %w", s.obj.Namespace, s.obj.Name, err)
	}
	s.base = s.obj.DeepCopy()
	return nil
}

// twilioResult sets Synced from the outcome of the last Twilio exchange and
// picks how to continue: poll (success, and terminal 4xx: the poll re-reads
// the number, but a refused write is not sent again until something it
// depends on changed), or back off (429, 5xx, network).
func (r *TwilioPhoneNumberReconciler) twilioResult(obj *twiliov1.TwilioPhoneNumber, err error) (ctrl.Result, error) {
	status, reason, msg := syncedCondition(err)
	if setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionSynced, status, reason, msg) && err != nil {
		r.event(obj, corev1.EventTypeWarning, reason, "Reconcile", "%s", msg)
	}
	switch {
	case err == nil, twilio.ClassOf(err) == twilio.ClassTerminal:
		return ctrl.Result{RequeueAfter: r.jittered()}, nil
	case twilio.ClassOf(err) == twilio.ClassWait:
		return ctrl.Result{RequeueAfter: time.Second + rand.N(2*time.Second)}, nil
	default:
		return ctrl.Result{}, err
	}
}

// jittered spreads polls over [interval, 1.2×interval) so numbers do not poll in lockstep.
func (r *TwilioPhoneNumberReconciler) jittered() time.Duration {
	return r.PollInterval + rand.N(r.PollInterval/5+1)
}

func (r *TwilioPhoneNumberReconciler) event(obj *twiliov1.TwilioPhoneNumber, typ, reason, action, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(obj, nil, typ, reason, action, note, args...)
	}
}
