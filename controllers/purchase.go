package controllers

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/twilio"
)

// Buying a number (spec.acquire: Purchase) and releasing it.
//
// Twilio's create is not idempotent, so a purchase is recorded before it is
// made: the purchase record (a signed annotation, AnnotationPurchase) holds
// an intent ID, and the create call puts that ID in the number's
// FriendlyName. Whatever happens after (a crash, a lost answer, a retry),
// the next reconcile looks the number up in the account first: found with
// the intent's ID, it is the purchase, recorded as bought; found without
// it, someone else put it there, and it is taken over as an existing number
// (never released). Only when it is not in the account is the create sent
// (again). A bought number's original routing is empty by construction:
// its routing is set in the create call itself.
//
// Release needs all three: deletionPolicy Release, a purchase record this
// operator signed naming the live number's SID, and the account's
// spec.purchasing.allowRelease. Anything else restores instead, and says so.

var (
	numbersPurchased = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "twilio_numbers_purchased_total",
		Help: "Numbers this operator bought, by the TwilioAccount's namespace and name.",
	}, []string{"namespace", "account"})
	numbersReleased = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "twilio_numbers_released_total",
		Help: "Numbers this operator released (deleted from the Twilio account), by the TwilioAccount's namespace and name.",
	}, []string{"namespace", "account"})
)

func init() {
	metrics.Registry.MustRegister(numbersPurchased, numbersReleased)
}

// purchaseRecord is the signed record of a purchase.
type purchaseRecord struct {
	IntentID       string     `json:"intentId"`
	RequestedAt    time.Time  `json:"requestedAt"`
	PhoneNumberSID string     `json:"phoneNumberSid,omitempty"`
	PurchasedAt    *time.Time `json:"purchasedAt,omitempty"`
}

// bought reports whether the record names a number bought.
func (p *purchaseRecord) bought() bool { return p != nil && p.PhoneNumberSID != "" }

type signedPurchase struct {
	Record json.RawMessage `json:"record"`
	MAC    string          `json:"mac"`
}

const purchaseDomain = "twilio.loquent.io/purchase/v1"

// purchaseOf returns the purchase record on obj that this operator signed,
// nil when there is none (a record it did not sign counts as none).
func purchaseOf(key []byte, obj *twiliov1.TwilioPhoneNumber) *purchaseRecord {
	raw, ok := obj.Annotations[twiliov1.AnnotationPurchase]
	if !ok {
		return nil
	}
	var sp signedPurchase
	if err := json.Unmarshal([]byte(raw), &sp); err != nil || len(sp.Record) == 0 {
		return nil
	}
	mac, err := base64.StdEncoding.DecodeString(sp.MAC)
	if err != nil || !hmac.Equal(mac, objectMAC(key, purchaseDomain, obj, sp.Record)) {
		return nil
	}
	var rec purchaseRecord
	if json.Unmarshal(sp.Record, &rec) != nil || rec.IntentID == "" {
		return nil
	}
	return &rec
}

func purchaseAnnotation(key []byte, obj *twiliov1.TwilioPhoneNumber, rec purchaseRecord) string {
	data, _ := json.Marshal(rec) // strings and times: cannot fail
	b, _ := json.Marshal(signedPurchase{Record: data, MAC: base64.StdEncoding.EncodeToString(objectMAC(key, purchaseDomain, obj, data))})
	return string(b)
}

// purchaseStatus is status.purchase: the signed record as users read it.
func purchaseStatus(rec *purchaseRecord) *twiliov1.PurchaseStatus {
	if rec == nil {
		return nil
	}
	st := &twiliov1.PurchaseStatus{IntentID: rec.IntentID, RequestedAt: metav1.NewTime(rec.RequestedAt), PhoneNumberSID: rec.PhoneNumberSID}
	if rec.PurchasedAt != nil {
		t := metav1.NewTime(*rec.PurchasedAt)
		st.PurchasedAt = &t
	}
	return st
}

// intentName is the FriendlyName the create call gives the number: it
// carries the intent ID (Twilio allows 64 characters).
func intentName(rec purchaseRecord) string { return "Bought by twilio-voice-operator " + rec.IntentID }

// isIntent reports whether a number in the account carries rec's intent.
func isIntent(n twilio.Number, rec *purchaseRecord) bool {
	return rec != nil && strings.Contains(n.FriendlyName, rec.IntentID)
}

// patchPurchase writes the purchase record with the finalizer (nil removes
// the record, and the finalizer unless a saved original still needs it) in
// one metadata patch under a resourceVersion precondition.
func (r *TwilioPhoneNumberReconciler) patchPurchase(ctx context.Context, s *numberScope, rec *purchaseRecord) error {
	m := &twiliov1.TwilioPhoneNumber{ObjectMeta: *s.obj.ObjectMeta.DeepCopy()}
	base := m.DeepCopy()
	if rec == nil {
		delete(m.Annotations, twiliov1.AnnotationPurchase)
		if saved, _ := savedFromAnnotation(r.GuardKey, s.obj); saved == nil {
			controllerutil.RemoveFinalizer(m, Finalizer)
		}
	} else {
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		m.Annotations[twiliov1.AnnotationPurchase] = purchaseAnnotation(r.GuardKey, s.obj, *rec)
		// With the intent, before the create call: an object deleted while
		// its purchase is pending is kept until the purchase is settled.
		controllerutil.AddFinalizer(m, Finalizer)
	}
	if equality.Semantic.DeepEqual(base.ObjectMeta, m.ObjectMeta) {
		return nil
	}
	if err := r.Patch(ctx, m, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("write the purchase record: %w", err)
	}
	s.adoptMeta(m)
	return nil
}

// accountLocks serialises purchases per TwilioAccount, so that counting the
// numbers held against maxNumbers and recording a new intent is one step.
type accountLocks struct {
	mu    sync.Mutex
	locks map[types.NamespacedName]*sync.Mutex
}

func (l *accountLocks) lock(key types.NamespacedName) func() {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[types.NamespacedName]*sync.Mutex{}
	}
	m, ok := l.locks[key]
	if !ok {
		m = &sync.Mutex{}
		l.locks[key] = m
	}
	l.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// saleKey names one generation of an object: a sale Twilio refused is not
// asked for again until the object's spec changes (kept in memory: a
// restarted manager asks once more; a status read could lag behind).
type saleKey struct {
	uid        types.UID
	generation int64
}

// saleRefused returns why Twilio refused to sell this generation's number,
// "" when it has not.
func (r *TwilioPhoneNumberReconciler) saleRefused(obj *twiliov1.TwilioPhoneNumber) string {
	why, _ := r.refusedSales.Load(saleKey{obj.UID, obj.Generation})
	msg, _ := why.(string)
	return msg
}

// purchaseRefusal says why the account does not allow purchases ("" when it does).
func purchaseRefusal(acct *twiliov1.TwilioAccount) string {
	if p := acct.Spec.Purchasing; p == nil || !p.Enabled {
		return fmt.Sprintf("spec.acquire is Purchase and the number is not in the Twilio account, but TwilioAccount %q does not allow purchases: "+
			"an owner of the account may set spec.purchasing.enabled: true and spec.purchasing.maxNumbers on it", acct.Name)
	}
	return ""
}

// heldPurchases counts the numbers of acct that this operator bought or is
// buying, other than obj, read from the API server itself.
func (r *TwilioPhoneNumberReconciler) heldPurchases(ctx context.Context, obj *twiliov1.TwilioPhoneNumber) (int, error) {
	var list twiliov1.TwilioPhoneNumberList
	if err := r.APIReader.List(ctx, &list, client.InNamespace(obj.Namespace)); err != nil {
		return 0, fmt.Errorf("count the numbers bought through TwilioAccount %s: %w", obj.Spec.AccountRef.Name, err)
	}
	held := 0
	for i := range list.Items {
		o := &list.Items[i]
		if o.UID != obj.UID && o.Spec.AccountRef.Name == obj.Spec.AccountRef.Name && purchaseOf(r.GuardKey, o) != nil {
			held++
		}
	}
	return held, nil
}

// ensurePurchased buys a number that is not in the account for an object
// with spec.acquire: Purchase, within the account's rails, and then routes
// it like any other.
func (r *TwilioPhoneNumberReconciler) ensurePurchased(ctx context.Context, s *numberScope) (ctrl.Result, error) {
	obj := s.obj
	if err := r.readFresh(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	rec := purchaseOf(r.GuardKey, obj)
	switch {
	case rec.bought():
		return r.markStalled(s, twiliov1.ReasonPurchaseLost, fmt.Sprintf(
			"This operator bought %s (%s), and it is no longer in Twilio account %s; it is never bought again on its own: "+
				"delete this object, or recreate it to buy the number again", obj.Spec.PhoneNumber, rec.PhoneNumberSID, s.conn.AccountSID))
	case !obj.RoutingEnabled():
		markNotFoundWhy(s, "it is bought only while voiceRouting is Enabled")
		return r.twilioResult(obj, nil)
	case rec == nil && r.saleRefused(obj) != "":
		// Twilio refused to sell it for this generation: not asked again
		// every poll (each ask is a create call), until the spec changes.
		return r.markStalled(s, twiliov1.ReasonNumberUnavailable, r.saleRefused(obj))
	}
	if why := purchaseRefusal(s.acct); why != "" {
		return r.markStalled(s, twiliov1.ReasonPurchaseNotAllowed, why)
	}
	if res, err, stop := r.checkAnswerable(ctx, s); stop {
		return res, err
	}
	if failure := r.preflightFailure(s); failure != "" {
		return r.markStalled(s, twiliov1.ReasonWebhookUnreachable, "Not buying the number while the webhook server does not answer: "+failure)
	}
	unlock := r.purchaseLocks.lock(types.NamespacedName{Namespace: obj.Namespace, Name: s.acct.Name})
	defer unlock()
	if rec == nil {
		held, err := r.heldPurchases(ctx, obj)
		if err != nil {
			return ctrl.Result{}, err
		}
		if max := int(s.acct.Spec.Purchasing.MaxNumbers); held >= max {
			return r.markStalled(s, twiliov1.ReasonPurchaseLimitReached, fmt.Sprintf(
				"TwilioAccount %q already holds %d numbers bought by the operator (spec.purchasing.maxNumbers is %d); release one, or raise maxNumbers",
				s.acct.Name, held, max))
		}
		rec = &purchaseRecord{IntentID: newIntentID(), RequestedAt: time.Now().UTC().Truncate(time.Second)}
		if err := r.patchPurchase(ctx, s, rec); err != nil {
			return ctrl.Result{}, err
		}
	}
	// The intent is recorded: look before buying (again).
	n, err := s.conn.Client.FindNumber(ctx, obj.Spec.PhoneNumber)
	switch {
	case err == nil:
		s.conn.Inventory.Record(n)
		r.recordLive(s, n)
		return r.settlePurchase(ctx, s)
	case !twilio.IsNotFound(err):
		return r.twilioResult(obj, err)
	}
	setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionFalse, twiliov1.ReasonProgressing,
		fmt.Sprintf("Buying %s (purchase %s) with its voice routing set to %s", obj.Spec.PhoneNumber, rec.IntentID, r.VoiceURL))
	n, err = s.conn.Client.BuyNumber(ctx, obj.Spec.PhoneNumber, intentName(*rec), r.purchaseRouting(obj))
	if errors.Is(err, twilio.ErrNumberUnavailable) {
		msg := fmt.Sprintf("Twilio does not sell %s (bought by someone else, or never on sale): %v. Nothing was bought, and it is not asked again until the spec changes; `kubectl twilio available` lists numbers on sale",
			obj.Spec.PhoneNumber, err)
		r.refusedSales.Store(saleKey{obj.UID, obj.Generation}, msg)
		if derr := r.patchPurchase(ctx, s, nil); derr != nil {
			return ctrl.Result{}, derr
		}
		return r.markStalled(s, twiliov1.ReasonNumberUnavailable, msg)
	}
	if err != nil {
		// The intent stays: the next attempt looks the number up first.
		return r.twilioResult(obj, err)
	}
	s.conn.Inventory.Record(n)
	r.recordLive(s, n)
	return r.settlePurchase(ctx, s)
}

// purchaseRouting is the routing the create call sets: what a take-over
// writes over an empty routing.
func (r *TwilioPhoneNumberReconciler) purchaseRouting(obj *twiliov1.TwilioPhoneNumber) twilio.RoutingUpdate {
	fallbackURL, fallbackMethod, _ := desiredFallback(obj, &twiliov1.SavedRouting{})
	u := takeoverUpdate(twilio.Routing{}, r.VoiceURL, fallbackURL, fallbackMethod)
	if wantsCallStatus(obj) {
		status, post := r.statusURL(), "POST"
		u.StatusCallback, u.StatusCallbackMethod = &status, &post
	}
	if obj.MessagingEnabled() {
		events, post := r.eventsURL(), "POST"
		u.SmsURL, u.SmsMethod = &events, &post
	}
	return u
}

// settlePurchase finishes a purchase whose number is in the account (s.live):
// recorded as bought when it carries the intent, with its (empty) original
// saved; otherwise someone else put it there, and the intent is dropped so
// that it is taken over as an existing number. It then routes the number.
func (r *TwilioPhoneNumberReconciler) settlePurchase(ctx context.Context, s *numberScope) (ctrl.Result, error) {
	obj := s.obj
	rec := purchaseOf(r.GuardKey, obj)
	if !isIntent(s.live, rec) {
		if err := r.patchPurchase(ctx, s, nil); err != nil {
			return ctrl.Result{}, err
		}
		r.event(obj, corev1.EventTypeWarning, "PurchaseNotNeeded", "Purchase",
			"%s appeared in the account without this operator buying it (its purchase %s was not made); it is taken over as an existing number and never released",
			obj.Spec.PhoneNumber, rec.IntentID)
		return ctrl.Result{RequeueAfter: staleRetry()}, nil
	}
	if err := r.recordBought(ctx, s, rec); err != nil {
		return ctrl.Result{}, err
	}
	return r.ensureRouted(ctx, s)
}

// recordBought records that rec bought the number in s.live (the record,
// the counter, the event) and saves its empty original.
func (r *TwilioPhoneNumberReconciler) recordBought(ctx context.Context, s *numberScope, rec *purchaseRecord) error {
	obj := s.obj
	now := time.Now().UTC().Truncate(time.Second)
	rec.PhoneNumberSID, rec.PurchasedAt = s.live.SID, &now
	if err := r.patchPurchase(ctx, s, rec); err != nil {
		return err
	}
	numbersPurchased.WithLabelValues(obj.Namespace, s.acct.Name).Inc()
	r.event(obj, corev1.EventTypeNormal, "Purchased", "Purchase", "Bought %s (%s) through Twilio account %s, its voice routing set to %s in the purchase",
		obj.Spec.PhoneNumber, s.live.SID, s.conn.AccountSID, r.VoiceURL)
	return r.saveBoughtOriginal(ctx, s)
}

// saveBoughtOriginal saves the original of a number this operator bought,
// if it holds none while the number routes here: an empty routing (the
// create call set ours), so a hand-back leaves the number with no routing.
func (r *TwilioPhoneNumberReconciler) saveBoughtOriginal(ctx context.Context, s *numberScope) error {
	if !routesTo(s.live.Routing, r.VoiceURL) {
		return nil
	}
	if err := r.readFresh(ctx, s); err != nil {
		return err
	}
	if guardOf(r.GuardKey, s.obj) != nil || s.obj.Status.SavedRouting != nil {
		return nil
	}
	empty := twiliov1.SavedRouting{SMSSaved: s.obj.MessagingEnabled()}
	return r.saveOriginal(ctx, s, empty)
}

// settleFound runs for a number found in the account: a purchase whose
// record is pending (a crash or a lost answer after the create call) is
// settled before anything else; a bought number routed here with no saved
// original (a crash between the purchase record and the save) gets its
// empty original.
func (r *TwilioPhoneNumberReconciler) settleFound(ctx context.Context, s *numberScope) (done bool, res ctrl.Result, err error) {
	rec := purchaseOf(r.GuardKey, s.obj)
	switch {
	case rec == nil:
		return false, ctrl.Result{}, nil
	case !rec.bought():
		res, err = r.settlePurchase(ctx, s)
		return true, res, err
	case rec.PhoneNumberSID == s.live.SID && s.obj.Status.SavedRouting == nil && guardOf(r.GuardKey, s.obj) == nil:
		return false, ctrl.Result{}, r.saveBoughtOriginal(ctx, s)
	}
	return false, ctrl.Result{}, nil
}

// releaseOnDelete releases the number of an object being deleted with
// deletionPolicy Release when all three conditions hold. It reports whether
// it released it; otherwise it says why not (an event), and the caller
// restores as with Restore.
func (r *TwilioPhoneNumberReconciler) releaseOnDelete(ctx context.Context, s *numberScope) (released bool, err error) {
	obj := s.obj
	rec := purchaseOf(r.GuardKey, obj)
	switch {
	case !rec.bought():
		r.event(obj, corev1.EventTypeWarning, "ReleaseRefused", "Delete",
			"deletionPolicy is Release, but this operator did not buy %s, so it never releases it; its original routing is restored instead", obj.Spec.PhoneNumber)
		return false, nil
	case s.acct.Spec.Purchasing == nil || !s.acct.Spec.Purchasing.AllowRelease:
		r.event(obj, corev1.EventTypeWarning, "ReleaseRefused", "Delete",
			"deletionPolicy is Release, but TwilioAccount %q does not allow releases (spec.purchasing.allowRelease); %s stays in the account (and billed), its routing emptied",
			s.acct.Name, obj.Spec.PhoneNumber)
		return false, nil
	case s.live.SID != "" && s.live.SID != rec.PhoneNumberSID:
		r.event(obj, corev1.EventTypeWarning, "ReleaseRefused", "Delete",
			"deletionPolicy is Release, but %s in the account is %s, not %s that this operator bought; it is not released", obj.Spec.PhoneNumber, s.live.SID, rec.PhoneNumberSID)
		return false, nil
	}
	if err := s.conn.Client.ReleaseNumber(ctx, rec.PhoneNumberSID); err != nil && !twilio.IsNotFound(err) {
		return false, err
	}
	numbersReleased.WithLabelValues(obj.Namespace, s.acct.Name).Inc()
	r.event(obj, corev1.EventTypeNormal, "Released", "Delete", "Released %s (%s) from Twilio account %s (deletionPolicy Release)",
		obj.Spec.PhoneNumber, rec.PhoneNumberSID, s.conn.AccountSID)
	return true, nil
}

// markNotFoundWhy reports a number that is not in the account and is not
// bought, and why.
func markNotFoundWhy(s *numberScope, why string) {
	obj := s.obj
	setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionFalse, twiliov1.ReasonNumberNotFound,
		fmt.Sprintf("%s is not an incoming phone number of Twilio account %s: %s", obj.Spec.PhoneNumber, s.conn.AccountSID, why))
}

// settleDeleting settles a purchase still pending when its object is
// deleted: a number the create call bought (its answer lost) is recorded, so
// the deletion policy applies to it instead of leaving it bought, routed
// here and unrecorded. It reports whether the number is in the account.
func (r *TwilioPhoneNumberReconciler) settleDeleting(ctx context.Context, s *numberScope) (found bool, err error) {
	obj := s.obj
	rec := purchaseOf(r.GuardKey, obj)
	n, err := s.conn.Client.FindNumber(ctx, obj.Spec.PhoneNumber)
	if twilio.IsNotFound(err) {
		return false, r.patchPurchase(ctx, s, nil) // never bought: nothing to settle
	}
	if err != nil {
		return false, err
	}
	s.conn.Inventory.Record(n)
	r.recordLive(s, n)
	if !isIntent(n, rec) {
		return true, r.patchPurchase(ctx, s, nil)
	}
	return true, r.recordBought(ctx, s, rec)
}

// markStalled sets Ready=False with a reason that needs a human, with an
// event when it is new.
func (r *TwilioPhoneNumberReconciler) markStalled(s *numberScope, reason, msg string) (ctrl.Result, error) {
	return r.markNotAnswerable(s, reason, msg)
}

func newIntentID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
