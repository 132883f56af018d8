package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
)

// The guard of a saved original is what the API server holds for it: the
// saved-routing annotation (the copy that counts) and the finalizer, written
// together in one metadata patch. status.savedRouting and
// status.previousVoiceURL are the copy users read.
//
// Ordering, so that no crash point leaves a saved original without its guard:
//   - save:   annotation+finalizer, then status, then the Twilio write;
//   - forget: the Twilio restore, then status, then annotation+finalizer.
//
// Every patch that changes saved state carries a resourceVersion
// precondition, and each is made from a copy read from the API server itself
// (not the informer cache), so a reconcile working from a stale copy is
// refused with a conflict instead of writing over newer saved state.

// errStale says the cached copy of the object is older than the server's in
// a way that matters (a newer spec, a deletion): the reconcile stops and is
// requeued, to start again from a newer copy.
var errStale = errors.New("the cached object is older than the API server's")

// guardPlan says what repairs a partial guard. Zero value: nothing to do.
type guardPlan struct {
	// annotate writes the annotation copy (and finalizer) from this routing.
	annotate *twiliov1.SavedRouting
	// addFinalizer adds the finalizer (with the annotation as it is).
	addFinalizer bool
	// status writes status.savedRouting/previousVoiceURL from this routing.
	status *twiliov1.SavedRouting
	// unreadable is set when the annotation cannot be decoded or was not
	// written by this operator, and status holds no copy to rebuild it from:
	// it proves nothing and is ignored.
	unreadable error
}

func (p guardPlan) empty() bool {
	return p.annotate == nil && !p.addFinalizer && p.status == nil
}

// planGuard compares the three parts of the guard on obj and says how to
// make them whole again. The annotation is the copy that counts: it is
// written first and removed last, so when both copies exist and differ it
// holds what was saved before any Twilio write. When only status holds the
// original (a crash of an older version between its writes, a backup that
// dropped annotations), the annotation is rebuilt from status.
func planGuard(key []byte, obj *twiliov1.TwilioPhoneNumber) guardPlan {
	var p guardPlan
	annotated, err := savedFromAnnotation(key, obj)
	status := obj.Status.SavedRouting
	switch {
	case err != nil && status != nil:
		p.annotate = status
	case err != nil:
		p.unreadable = err
	case annotated != nil:
		p.addFinalizer = !controllerutil.ContainsFinalizer(obj, Finalizer)
		if status == nil || *status != *annotated || !samePrevious(obj.Status.PreviousVoiceURL, annotated.VoiceURL) {
			p.status = annotated
		}
	case status != nil:
		p.annotate = status
		if !samePrevious(obj.Status.PreviousVoiceURL, status.VoiceURL) {
			p.status = status
		}
	}
	return p
}

func samePrevious(prev *string, url string) bool {
	return prev != nil && *prev == url
}

// legacyAnnotation reports whether obj's annotation is the unsigned form an
// earlier version wrote (the bare routing), holding exactly saved, with the
// finalizer in place: an upgrade, not a loss.
func legacyAnnotation(obj *twiliov1.TwilioPhoneNumber, saved twiliov1.SavedRouting) bool {
	var old twiliov1.SavedRouting
	raw, ok := obj.Annotations[twiliov1.AnnotationSavedRouting]
	return ok && controllerutil.ContainsFinalizer(obj, Finalizer) &&
		json.Unmarshal([]byte(raw), &old) == nil && old == saved && raw == savedJSON(saved)
}

// guardOf returns the original a complete guard on obj holds, or nil when
// the annotation is missing or unreadable or the finalizer is missing.
func guardOf(key []byte, obj *twiliov1.TwilioPhoneNumber) *twiliov1.SavedRouting {
	saved, err := savedFromAnnotation(key, obj)
	if err != nil || saved == nil || !controllerutil.ContainsFinalizer(obj, Finalizer) {
		return nil
	}
	return saved
}

// readFresh replaces the saved state and metadata in s with the API server's
// current copy (an uncached read), keeping the conditions this reconcile has
// computed so far. It fails with errStale when the server's copy has a newer
// spec or a deletion the cached copy did not show.
func (r *TwilioPhoneNumberReconciler) readFresh(ctx context.Context, s *numberScope) error {
	cur := &twiliov1.TwilioPhoneNumber{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(s.obj), cur); err != nil {
		return fmt.Errorf("read %s/%s from the API server: %w", s.obj.Namespace, s.obj.Name, err)
	}
	if cur.UID != s.obj.UID || cur.Generation != s.obj.Generation || cur.DeletionTimestamp.IsZero() != s.obj.DeletionTimestamp.IsZero() {
		return errStale
	}
	s.base = cur.DeepCopy()
	s.obj.ObjectMeta = cur.ObjectMeta
	s.obj.Status.SavedRouting = cur.Status.SavedRouting
	s.obj.Status.PreviousVoiceURL = cur.Status.PreviousVoiceURL
	s.fresh = true
	return nil
}

// repairGuard makes a partial guard whole, from the API server's copy. A
// guard that is whole in the cached copy needs no read.
func (r *TwilioPhoneNumberReconciler) repairGuard(ctx context.Context, s *numberScope) error {
	if p := planGuard(r.GuardKey, s.obj); p.empty() {
		if p.unreadable != nil {
			log.FromContext(ctx).V(1).Info("Ignoring a saved-routing annotation this operator did not write", "reason", p.unreadable.Error())
		}
		return nil
	}
	if !s.fresh {
		if err := r.readFresh(ctx, s); err != nil {
			return err
		}
	}
	p := planGuard(r.GuardKey, s.obj)
	obj := s.obj
	if p.empty() {
		return nil
	}
	if !obj.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(obj, Finalizer) {
		return nil // going away already: a finalizer cannot be added any more
	}
	switch {
	case p.annotate != nil:
		legacy := legacyAnnotation(obj, *p.annotate)
		if err := r.patchGuard(ctx, s, p.annotate); err != nil {
			return fmt.Errorf("rebuild the saved-routing annotation from status: %w", err)
		}
		if legacy {
			// Written by a version before annotations were signed: now signed.
			log.FromContext(ctx).V(1).Info("Signed a saved-routing annotation written before signing")
			break
		}
		r.event(obj, corev1.EventTypeWarning, "GuardRestored", "Reconcile",
			"The saved-routing annotation or finalizer was missing, or not written by this operator; rebuilt them from status (%s)", describeSaved(*p.annotate))
	case p.addFinalizer:
		saved, _ := savedFromAnnotation(r.GuardKey, obj)
		if err := r.patchGuard(ctx, s, saved); err != nil {
			return fmt.Errorf("add finalizer: %w", err)
		}
	}
	if p.status != nil {
		if err := r.patchSavedStatus(ctx, s, p.status); err != nil {
			return fmt.Errorf("recover saved routing into status: %w", err)
		}
		r.event(obj, corev1.EventTypeWarning, "RecoveredOriginal", "Reconcile",
			"Status had lost the saved original routing; recovered it from annotation %s (%s)", twiliov1.AnnotationSavedRouting, describeSaved(*p.status))
	}
	return nil
}

// confirmGuard reads the object from the API server right before a Twilio
// write that depends on saved state, and returns the original the server's
// guard holds (nil when none), repairing a partial guard first.
func (r *TwilioPhoneNumberReconciler) confirmGuard(ctx context.Context, s *numberScope) (*twiliov1.SavedRouting, error) {
	if err := r.readFresh(ctx, s); err != nil {
		return nil, err
	}
	if err := r.repairGuard(ctx, s); err != nil {
		return nil, err
	}
	return guardOf(r.GuardKey, s.obj), nil
}

// saveOriginal persists orig as the number's original routing: annotation
// and finalizer first, then status. It must run on a fresh copy (readFresh)
// that holds no guard; both writes carry a resourceVersion precondition. If
// either fails, nothing may be sent to Twilio.
func (r *TwilioPhoneNumberReconciler) saveOriginal(ctx context.Context, s *numberScope, orig twiliov1.SavedRouting) error {
	if err := r.patchGuard(ctx, s, &orig); err != nil {
		return fmt.Errorf("save original routing in annotation: %w", err)
	}
	if err := r.patchSavedStatus(ctx, s, &orig); err != nil {
		return fmt.Errorf("save original routing in status: %w", err)
	}
	return nil
}

// forgetOriginal drops the saved routing after Twilio accepted the restore:
// status first, then annotation and finalizer, so a crash between the two
// leaves the annotation guarding the (already restored) original.
func (r *TwilioPhoneNumberReconciler) forgetOriginal(ctx context.Context, s *numberScope) error {
	if err := r.patchSavedStatus(ctx, s, nil); err != nil {
		return fmt.Errorf("clear saved routing in status: %w", err)
	}
	if err := r.patchGuard(ctx, s, nil); err != nil {
		return fmt.Errorf("clear saved routing annotation: %w", err)
	}
	return nil
}

// patchGuard writes the annotation copy of saved together with the
// finalizer (saved != nil), or removes both (saved == nil), in one
// metadata-only patch with a resourceVersion precondition.
func (r *TwilioPhoneNumberReconciler) patchGuard(ctx context.Context, s *numberScope, saved *twiliov1.SavedRouting) error {
	m := &twiliov1.TwilioPhoneNumber{ObjectMeta: *s.obj.ObjectMeta.DeepCopy()}
	base := m.DeepCopy()
	if saved == nil {
		delete(m.Annotations, twiliov1.AnnotationSavedRouting)
		// A purchase record keeps the finalizer while the object lives
		// (see patchPurchase): a pending purchase is settled, and a bought
		// number's deletion policy (Release) applied, when it is deleted.
		if purchaseOf(r.GuardKey, s.obj) == nil || !s.obj.DeletionTimestamp.IsZero() {
			controllerutil.RemoveFinalizer(m, Finalizer)
		}
	} else {
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		m.Annotations[twiliov1.AnnotationSavedRouting] = savedAnnotation(r.GuardKey, s.obj, *saved)
		controllerutil.AddFinalizer(m, Finalizer)
	}
	if equality.Semantic.DeepEqual(base.ObjectMeta, m.ObjectMeta) {
		return nil
	}
	if err := r.Patch(ctx, m, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return err
	}
	s.adoptMeta(m)
	return nil
}

// patchSavedStatus writes status.savedRouting and previousVoiceURL (saved ==
// nil clears both), with the conditions computed so far, under a
// resourceVersion precondition.
func (r *TwilioPhoneNumberReconciler) patchSavedStatus(ctx context.Context, s *numberScope, saved *twiliov1.SavedRouting) error {
	obj := s.obj
	if saved == nil {
		obj.Status.SavedRouting, obj.Status.PreviousVoiceURL = nil, nil
	} else {
		cp := *saved
		obj.Status.SavedRouting, obj.Status.PreviousVoiceURL = &cp, ptr(cp.VoiceURL)
	}
	obj.Status.Original = originalSummary(obj.Status.SavedRouting)
	obj.Status.ObservedGeneration = obj.Generation
	if equality.Semantic.DeepEqual(s.base.Status, obj.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, obj, client.MergeFromWithOptions(s.base, client.MergeFromWithOptimisticLock{})); err != nil {
		return err
	}
	s.base = obj.DeepCopy()
	return nil
}

// removeFinalizer drops the finalizer (and any annotation copy) of an object
// being deleted, under a resourceVersion precondition.
func (r *TwilioPhoneNumberReconciler) removeFinalizer(ctx context.Context, s *numberScope) error {
	if !controllerutil.ContainsFinalizer(s.obj, Finalizer) {
		return nil
	}
	if err := r.patchGuard(ctx, s, nil); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("remove finalizer: %w", err))
	}
	return nil
}

// adoptMeta takes the metadata a patch returned into the scope's copies.
func (s *numberScope) adoptMeta(m *twiliov1.TwilioPhoneNumber) {
	for _, o := range []*twiliov1.TwilioPhoneNumber{s.obj, s.base} {
		o.Annotations, o.Finalizers, o.ResourceVersion = m.Annotations, m.Finalizers, m.ResourceVersion
	}
}

// isStale reports errors that mean the reconcile worked from an old copy: a
// refused resourceVersion precondition, or errStale.
func isStale(err error) bool {
	return errors.Is(err, errStale) || apierrors.IsConflict(err)
}
